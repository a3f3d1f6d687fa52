"""Custom-authorizer decision core: key checks, token signatures, events, responses, policies.

Shared by the control plane (``TestInvokeAuthorizer``) and the HTTPS/MQTT device
gateway (data plane). Pure functions only: no I/O, no server, no clock.

The steps of one custom-auth request, in AWS's order
(https://docs.aws.amazon.com/iot/latest/developerguide/custom-authorizer.html):

1. :func:`validate_public_key` - what ``CreateAuthorizer`` accepts as a
   token-signing key (PEM RSA public key of at least 2048 bits).
2. :func:`verify_token_signature` - RSASSA-PKCS1-v1_5 + SHA-256 over the token,
   checked *before* the Lambda is invoked.
3. :func:`build_event` - the JSON event the authorizer Lambda receives.
4. :func:`parse_authorizer_response` - validates what the Lambda returned.
5. :func:`evaluate` - IAM-style evaluation of the returned policies for one
   action (``iot:Connect``, ``iot:Publish``, ...) on one resource ARN.

Where AWS says each: keys in https://docs.aws.amazon.com/iot/latest/developerguide/config-custom-auth.html,
signatures in https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html, the event and the
response in https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth-lambda.html, policy evaluation
in https://docs.aws.amazon.com/iot/latest/developerguide/iot-policies.html.

Usage:

>>> policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
...           "Action": "iot:Publish", "Resource": topic_arn("us-west-2", "123456789012", "a/*")}]}
>>> result = parse_authorizer_response({"isAuthenticated": True, "principalId": "dev1",
...                                     "policyDocuments": [policy]})
>>> result.policy_documents[0][:40]
'{"Version":"2012-10-17","Statement":[{"E'
>>> evaluate(result.policies, "iot:Publish", topic_arn("us-west-2", "123456789012", "a/b")).reason
'allowed by statement 1 of policy 1'
>>> evaluate(result.policies, "iot:Subscribe", topicfilter_arn("us-west-2", "123456789012", "a/b")).allowed
False

Behaviour choices where AWS documents nothing are marked "Choice:" below.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

MIN_KEY_BITS = 2048
MAX_POLICY_DOCUMENTS = 10
MAX_POLICY_CHARS = 2048
MIN_SECONDS, MAX_SECONDS = 300, 86400
PRINCIPAL_ID_RE = re.compile(r"[a-zA-Z0-9]{1,128}")
#: AWS's ``TokenSignature`` pattern (botocore iot model), padding made optional (see
#: :func:`decode_signature`).
SIGNATURE_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class AuthzError(Exception):
    """Base class; ``str(err)`` is the human reason."""


class InvalidPublicKey(AuthzError):
    """A token-signing public key that AWS IoT would not accept."""


class InvalidAuthorizerResponse(AuthzError):
    """The authorizer Lambda's response is not a valid custom-auth response."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- keys

def validate_public_key(pem: str) -> None:
    """Raise :class:`InvalidPublicKey` unless ``pem`` is a PEM RSA public key of >= 2048 bits.

    Accepts ``-----BEGIN PUBLIC KEY-----`` (SubjectPublicKeyInfo, what
    ``openssl rsa -pubout`` writes) and ``-----BEGIN RSA PUBLIC KEY-----`` (PKCS#1).
    """
    if not isinstance(pem, str) or not pem.strip():
        raise InvalidPublicKey("The token signing public key is empty: paste the whole PEM text, "
                               "from -----BEGIN PUBLIC KEY----- to -----END PUBLIC KEY-----.")
    if "PRIVATE KEY-----" in pem:
        raise InvalidPublicKey(
            "This is a PRIVATE key. Never send or share the private key: keep it on the device/signer "
            "and give AWS IoT only the public key (openssl rsa -in private.pem -pubout -out public.pem).")
    if pem.lstrip().startswith(("ssh-rsa ", "ssh-ed25519 ", "ecdsa-sha2-")):
        raise InvalidPublicKey(
            "This is an OpenSSH public key, not a PEM public key. Convert it with "
            "ssh-keygen -f key.pub -e -m PKCS8, or export it with openssl rsa -pubout.")
    if "-----BEGIN CERTIFICATE-----" in pem:
        raise InvalidPublicKey(
            "This is an X.509 certificate, not a public key. Extract its key with "
            "openssl x509 -in cert.pem -pubkey -noout.")
    if "-----BEGIN PUBLIC KEY-----" not in pem and "-----BEGIN RSA PUBLIC KEY-----" not in pem:
        raise InvalidPublicKey(
            "The token signing public key is not PEM: it must start with -----BEGIN PUBLIC KEY----- "
            "and end with -----END PUBLIC KEY----- (include both lines).")
    try:
        key = serialization.load_pem_public_key(pem.strip().encode("utf-8"))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidPublicKey(
            "The token signing public key could not be read: the PEM text is damaged or incomplete "
            f"({_short(exc)}). Copy it again exactly, including the BEGIN/END lines, without adding or "
            "removing any characters.") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidPublicKey(
            f"The token signing public key is {_key_kind(key)}, but AWS IoT custom authorizers only accept "
            f"RSA public keys of at least {MIN_KEY_BITS} bits (openssl genrsa -out key.pem {MIN_KEY_BITS}).")
    if key.key_size < MIN_KEY_BITS:
        raise InvalidPublicKey(
            f"The token signing public key is a {key.key_size}-bit RSA key; the minimum is "
            f"{MIN_KEY_BITS} bits. Generate a new pair with openssl genrsa -out key.pem {MIN_KEY_BITS} "
            "(the tutorial uses 4096).")


def _key_kind(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC key (curve {key.curve.name})"
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return "an EdDSA key"
    return f"a {type(key).__name__.removeprefix('_')} key"


def _short(exc: BaseException) -> str:
    text = str(exc).split("\n")[0].strip() or type(exc).__name__
    return text[:160]


# --------------------------------------------------------------------- signature

def decode_signature(signature_b64: str) -> bytes | None:
    """Decode a token signature; ``None`` if it is not standard base64.

    Choice: strict alphabet per AWS's ``TokenSignature`` pattern ``[A-Za-z0-9+/]+={0,2}``:
    whitespace/newlines (from ``openssl base64`` without ``-A``), URL-safe ``-``/``_`` and
    percent-encoding are rejected (the tutorial warns about exactly these). Missing ``=``
    padding is tolerated: the pattern allows it, and Java's standard decoder (AWS's
    gateway stack) accepts unpadded input.

    >>> decode_signature("AQID"), decode_signature("AQI"), decode_signature("AQ I="), decode_signature("")
    (b'\\x01\\x02\\x03', b'\\x01\\x02', None, None)
    """
    if not isinstance(signature_b64, str) or not SIGNATURE_RE.fullmatch(signature_b64):
        return None
    body = signature_b64.rstrip("=")
    if len(body) % 4 == 1:
        return None
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


@functools.lru_cache(maxsize=128)
def _rsa_public_key(pem: str) -> rsa.RSAPublicKey | None:
    """The parsed RSA key of a PEM string, or None; cached, since every device request needs it."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode("utf-8"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def verify_token_signature(token: str, signature_b64: str, public_keys: dict[str, str]) -> str | None:
    """Name of the first key (in map order) whose RSA PKCS#1 v1.5/SHA-256 signature check passes.

    Returns ``None`` if no key verifies, or on any malformed input (never raises). Keys that
    are not loadable RSA public keys are skipped.
    """
    if not isinstance(token, str) or not isinstance(public_keys, dict) or not isinstance(signature_b64, str):
        return None
    return _verify(token, signature_b64, tuple((str(k), str(v)) for k, v in public_keys.items()))


@functools.lru_cache(maxsize=4096)
def _verify(token: str, signature_b64: str, public_keys: tuple[tuple[str, str], ...]) -> str | None:
    """:func:`verify_token_signature` on hashable arguments; cached, since a device sends the same token and
    signature with every request and the answer for the same bytes never changes."""
    signature = decode_signature(signature_b64)
    if not signature:
        return None
    data = token.encode("utf-8", errors="surrogatepass")
    for name, pem in public_keys:
        key = _rsa_public_key(pem)
        if key is None:
            continue
        try:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            continue
        return name
    return None


# ------------------------------------------------------------------------- event

def build_event(*, token: str | None, signature_verified: bool, http: dict | None = None,
                mqtt: dict | None = None, tls_server_name: str | None = None,
                connection_id: str | None = None) -> dict:
    """The event the authorizer Lambda receives, as
    https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth-lambda.html documents it.

    Fields that aren't relevant are omitted ("Any fields that aren't relevant to the
    connection request aren't included"): ``token`` when None; ``protocolData`` entirely
    when no context is given (the tutorial's Lambda tests ``protocolData === undefined``).
    ``protocols`` lists, in the documented order tls/http/mqtt, the protocols whose data
    is present; ``tls`` whenever http or mqtt data is present (both run over TLS).

    ``http``: ``{"headers": {...}, "queryString": "a=b" or "?a=b"}``. Choice: the
    documented example shows a leading ``?``, so one is added when missing; an empty or
    absent query string is omitted. Header names are passed through as given.
    ``mqtt``: ``{"username", "password" (bytes, base64'd here; or a str already in
    base64), "clientId"}``; each key only when given (clientId: "Included in the event
    only when the device sends the value").

    >>> e = build_event(token="t", signature_verified=True, http={"queryString": "x=1"},
    ...                 connection_id="c")
    >>> e["protocols"], e["protocolData"]["http"]
    (['tls', 'http'], {'headers': {}, 'queryString': '?x=1'})
    """
    event: dict[str, Any] = {}
    if token is not None:
        event["token"] = token
    event["signatureVerified"] = bool(signature_verified)
    data: dict[str, Any] = {}
    if tls_server_name is not None:
        data["tls"] = {"serverName": tls_server_name}
    if http is not None:
        entry: dict[str, Any] = {"headers": dict(http.get("headers") or {})}
        query = http.get("queryString")
        if query:
            entry["queryString"] = query if query.startswith("?") else "?" + query
        data["http"] = entry
    if mqtt is not None:
        entry = {}
        if mqtt.get("username") is not None:
            entry["username"] = mqtt["username"]
        password = mqtt.get("password")
        if password is not None:
            if isinstance(password, (bytes, bytearray, memoryview)):
                password = base64.b64encode(bytes(password)).decode("ascii")
            entry["password"] = password
        if mqtt.get("clientId") is not None:
            entry["clientId"] = mqtt["clientId"]
        data["mqtt"] = entry
    protocols = [p for p in ("http", "mqtt") if p in data]
    if protocols or "tls" in data:
        protocols.insert(0, "tls")
    event["protocols"] = protocols
    if data:
        event["protocolData"] = data
    event["connectionMetadata"] = {"id": connection_id or str(uuid.uuid4())}
    return event


# ---------------------------------------------------------------------- response

@dataclass
class AuthorizerResult:
    is_authenticated: bool
    principal_id: str
    policy_documents: list[str]     # each a compact JSON string (as TestInvokeAuthorizer returns)
    policies: list[dict]            # the same, parsed
    refresh_after_seconds: int | None
    disconnect_after_seconds: int | None


def parse_authorizer_response(payload: bytes | str | dict) -> AuthorizerResult:
    """Validate a Lambda authorizer response; raise InvalidAuthorizerResponse.

    Accepted forms (https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth-lambda.html:
    "JSON serialized or non-serialized object"): a dict; JSON text of an object; JSON text
    of a *string* that itself holds the object (a Lambda that returned
    ``json.dumps(response)``). Policy documents may be objects or JSON strings. Unknown
    extra keys (e.g. the legacy ``context``) are ignored.

    Choice (size limit, AWS: "Each policy document can contain a maximum of 2,048
    characters", and does not say whether whitespace counts): the limit applies to the
    compact re-serialization (no whitespace between JSON tokens; whitespace inside strings
    counts), like the named IoT policy limit "2048 characters (excluding white space)". So
    pretty-printing a document never changes whether it fits, and object and string forms
    count the same.
    """
    obj = _load_response(payload)
    if "errorMessage" in obj and ("errorType" in obj or "isAuthenticated" not in obj):
        kind = obj.get("errorType") or "Error"
        raise InvalidAuthorizerResponse(
            f"The authorizer Lambda function failed with a function error ({kind}: "
            f"{str(obj.get('errorMessage'))[:300]}), so there is no authorizer response. "
            "Fix the function (see its logs) and make it return isAuthenticated/principalId/policyDocuments.")
    if "isAuthenticated" not in obj:
        raise InvalidAuthorizerResponse("The response has no isAuthenticated field (required, true or false).")
    if not isinstance(obj["isAuthenticated"], bool):
        raise InvalidAuthorizerResponse(
            f"isAuthenticated must be a JSON boolean (true or false), got {_show(obj['isAuthenticated'])}.")
    principal = obj.get("principalId")
    if principal is None:
        raise InvalidAuthorizerResponse("The response has no principalId field (required: 1-128 letters/digits).")
    if not isinstance(principal, str):
        raise InvalidAuthorizerResponse(f"principalId must be a string, got {_show(principal)}.")
    if not PRINCIPAL_ID_RE.fullmatch(principal):
        problem = ("is empty" if not principal else
                   f"is {len(principal)} characters long" if len(principal) > 128 else
                   "contains characters other than letters and digits")
        raise InvalidAuthorizerResponse(
            f"principalId {_show(principal)} {problem}: it must be 1-128 alphanumeric characters "
            "matching [a-zA-Z0-9]+ (no '-', '_', '.', spaces or other special characters).")
    docs = obj.get("policyDocuments")
    if docs is None:
        raise InvalidAuthorizerResponse("The response has no policyDocuments field (required: a list of "
                                        "AWS IoT policy documents).")
    if not isinstance(docs, list):
        raise InvalidAuthorizerResponse(f"policyDocuments must be a list of policy documents, got {_show(docs)}.")
    if len(docs) > MAX_POLICY_DOCUMENTS:
        raise InvalidAuthorizerResponse(
            f"policyDocuments has {len(docs)} documents; the maximum is {MAX_POLICY_DOCUMENTS}.")
    policies = [_parse_policy(doc, i) for i, doc in enumerate(docs)]
    compact = [_compact(p) for p in policies]
    for i, text in enumerate(compact):
        if len(text) > MAX_POLICY_CHARS:
            raise InvalidAuthorizerResponse(
                f"policyDocuments[{i}] is {len(text)} characters (without whitespace); each policy "
                f"document can contain at most {MAX_POLICY_CHARS} characters.")
    return AuthorizerResult(
        is_authenticated=obj["isAuthenticated"],
        principal_id=principal,
        policy_documents=compact,
        policies=policies,
        refresh_after_seconds=_seconds(obj, "refreshAfterInSeconds"),
        disconnect_after_seconds=_seconds(obj, "disconnectAfterInSeconds"),
    )


def _load_response(payload: Any) -> dict:
    obj = payload
    if isinstance(obj, (bytes, bytearray, memoryview)):
        try:
            obj = bytes(obj).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidAuthorizerResponse("The response is not UTF-8 JSON text.") from None
    for _ in range(2):  # text of an object, or text of a string holding the object
        if not isinstance(obj, str):
            break
        try:
            obj = json.loads(obj)
        except ValueError as exc:
            raise InvalidAuthorizerResponse(
                f"The response is not valid JSON ({_short(exc)}): {_show(payload)}.") from None
    if not isinstance(obj, dict):
        raise InvalidAuthorizerResponse(
            f"The response must be a JSON object with isAuthenticated, principalId and policyDocuments, "
            f"got {_show(obj)}.")
    return obj


def _seconds(obj: dict, field: str) -> int | None:
    """Choice: integral floats (300.0) are accepted, as Java/Jackson coerces them; others fail."""
    if field not in obj or obj[field] is None:
        return None
    value = obj[field]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAuthorizerResponse(
            f"{field} must be an integer number of seconds ({MIN_SECONDS}-{MAX_SECONDS}), got {_show(value)}.")
    if not MIN_SECONDS <= value <= MAX_SECONDS:
        raise InvalidAuthorizerResponse(
            f"{field} is {value}; it must be between {MIN_SECONDS} and {MAX_SECONDS} seconds.")
    return value


def _parse_policy(doc: Any, index: int) -> dict:
    where = f"policyDocuments[{index}]"
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise InvalidAuthorizerResponse(
                f"Policy document is Malformed: {where} is a string but not valid JSON ({_short(exc)}).") from None
    if not isinstance(doc, dict):
        raise InvalidAuthorizerResponse(
            f"Policy document is Malformed: {where} must be a policy object (or its JSON text), got {_show(doc)}.")
    version = doc.get("Version")
    if version is not None and version not in ("2012-10-17", "2008-10-17"):
        raise InvalidAuthorizerResponse(
            f"Policy document is Malformed: {where} Version {_show(version)} is not 2012-10-17.")
    statements = doc.get("Statement")
    if statements is None:
        raise InvalidAuthorizerResponse(f"Policy document is Malformed: {where} has no Statement.")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise InvalidAuthorizerResponse(
            f"Policy document is Malformed: {where} Statement must be a statement object or a non-empty "
            f"list of them, got {_show(doc.get('Statement'))}.")
    for s_index, st in enumerate(statements):
        _check_statement(st, f"{where} Statement[{s_index}]")
    return doc


def _check_statement(st: Any, where: str) -> None:
    if not isinstance(st, dict):
        raise InvalidAuthorizerResponse(f"Policy document is Malformed: {where} must be an object, got {_show(st)}.")
    if st.get("Effect") not in ("Allow", "Deny"):
        raise InvalidAuthorizerResponse(
            f"Policy document is Malformed: {where} Effect must be \"Allow\" or \"Deny\", got {_show(st.get('Effect'))}.")
    for positive, negative, noun in (("Action", "NotAction", "action"), ("Resource", "NotResource", "resource")):
        present = [k for k in (positive, negative) if k in st]
        if len(present) != 1:
            raise InvalidAuthorizerResponse(
                f"Policy document is Malformed: {where} must have exactly one of {positive} or {negative}.")
        values = st[present[0]]
        items = [values] if isinstance(values, str) else values
        if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
            raise InvalidAuthorizerResponse(
                f"Policy document is Malformed: {where} {present[0]} must be a string or a non-empty list of "
                f"strings, got {_show(values)}.")
        for v in items:
            if noun == "resource" and not _is_arn(v):
                raise InvalidAuthorizerResponse(
                    f"Policy document is Malformed: The resource {v} is not in valid ARN format "
                    f"({where}; expected e.g. arn:aws:iot:REGION:ACCOUNT:topic/NAME).")
            if noun == "action" and not (v == "*" or re.fullmatch(r"[A-Za-z0-9-]+:[A-Za-z0-9*?]+", v)):
                raise InvalidAuthorizerResponse(
                    f"Policy document is Malformed: The action {v} is not valid ({where}; expected "
                    "vendor:Action such as iot:Publish, iot:*, or *).")
    if "Condition" in st and not isinstance(st["Condition"], dict):
        raise InvalidAuthorizerResponse(
            f"Policy document is Malformed: {where} Condition must be an object, got {_show(st['Condition'])}.")


def _is_arn(value: str) -> bool:
    """``*`` or ``arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`` (region/account may be empty)."""
    if value == "*":
        return True
    parts = value.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and bool(parts[1]) and bool(parts[2]) and bool(parts[5])


def _compact(policy: dict) -> str:
    return json.dumps(policy, separators=(",", ":"), ensure_ascii=False)


def _show(value: Any, limit: int = 120) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False) if not isinstance(value, (bytes, bytearray)) else repr(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------- ARNs

def topic_arn(region: str, account: str, topic: str) -> str:
    """ARN of an MQTT topic (iot:Publish, iot:Receive, iot:RetainPublish).

    >>> topic_arn("us-west-2", "123456789012", "a/b")
    'arn:aws:iot:us-west-2:123456789012:topic/a/b'
    """
    return f"arn:aws:iot:{region}:{account}:topic/{topic}"


def client_arn(region: str, account: str, client_id: str) -> str:
    """ARN of an MQTT client id (iot:Connect)."""
    return f"arn:aws:iot:{region}:{account}:client/{client_id}"


def topicfilter_arn(region: str, account: str, topic_filter: str) -> str:
    """ARN of a topic filter (iot:Subscribe); ``+``/``#`` stay literal."""
    return f"arn:aws:iot:{region}:{account}:topicfilter/{topic_filter}"


# -------------------------------------------------------------------- evaluation

@dataclass
class Decision:
    allowed: bool
    reason: str          # "allowed by statement 1 of policy 1", "explicitly denied by ...", "no statement allows ..."
    effect: str | None   # "Allow" | "Deny" | None (implicit deny)
    statement: dict | None   # the statement that decided
    policy_index: int | None     # 0-based index into ``policies`` (the reason text counts from 1)
    statement_index: int | None  # 0-based index into that policy's statement list


class _Unresolved(Exception):
    """A policy variable has no value in the request context."""


_TOKEN_RE = re.compile(r"\$\{([^}]*)\}|\$\((\*|\?|\$)\)|\*|\?")
_SPECIAL = {"*": "*", "?": "?", "$": "$"}


def _pattern(text: str, variables: dict[str, str], *, substitute: bool, ignore_case: bool) -> re.Pattern[str]:
    if "$" not in text:  # no variables: the same pattern every time (most actions and resources)
        return _plain_pattern(text, ignore_case)
    return _compile_pattern(text, variables, substitute=substitute, ignore_case=ignore_case)


@functools.lru_cache(maxsize=4096)
def _plain_pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    return _compile_pattern(text, {}, substitute=False, ignore_case=ignore_case)


def _compile_pattern(text: str, variables: dict[str, str], *, substitute: bool, ignore_case: bool) -> re.Pattern[str]:
    """Compile an IAM pattern: ``*`` any run (crossing ``/``), ``?`` one char, variables literal.

    ``${*}``/``${?}``/``${$}`` (IAM syntax; the IoT guide writes ``$(*)`` etc., also
    accepted) stand for the literal characters. ``${name, 'default'}`` uses the default
    when ``name`` is missing. Choice: substituted values are literal (a client id ``*``
    or ``+`` is not a wildcard), otherwise any client could widen its own policy.
    """
    out, pos = [], 0
    for m in _TOKEN_RE.finditer(text):
        out.append(re.escape(text[pos:m.start()]))
        pos = m.end()
        token = m.group(0)
        if token == "*":
            out.append(".*")
        elif token == "?":
            out.append(".")
        elif m.group(2) is not None:
            out.append(re.escape(m.group(2)))
        elif not substitute:
            out.append(re.escape(token))
        else:
            out.append(re.escape(_resolve(m.group(1), variables)))
    out.append(re.escape(text[pos:]))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _resolve(inner: str, variables: dict[str, str]) -> str:
    name, default = inner.strip(), None
    m = re.fullmatch(r"(.*?)\s*,\s*'([^']*)'", name)
    if m:
        name, default = m.group(1), m.group(2)
    if name in _SPECIAL:
        return _SPECIAL[name]
    lowered = {k.lower(): v for k, v in variables.items()}
    if name.lower() in lowered and lowered[name.lower()] is not None:
        return str(lowered[name.lower()])
    if default is not None:
        return default
    raise _Unresolved(name)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [v for v in (value or []) if isinstance(v, str)]


def _any_match(patterns: list[str], value: str, variables: dict[str, str], *, resource: bool,
               unresolved: list[str]) -> bool:
    for p in patterns:
        try:
            rx = _pattern(p, variables, substitute=resource, ignore_case=not resource)
        except _Unresolved as exc:
            unresolved.append(str(exc))
            continue
        if rx.fullmatch(value):
            return True
    return False


_CONDITION_OPS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike", "Bool", "Null",
}


def _conditions_hold(condition: dict, variables: dict[str, str]) -> tuple[bool, str | None]:
    """(holds, problem). Supported: String*, Arn*, Bool, Null, each with ...IfExists.

    IAM semantics: operators AND, keys AND, values OR; a missing key makes positive
    operators false and negated ("Not") operators true; ``IfExists`` makes a missing
    key true. Anything else -> (False, "unsupported ...") so the statement is skipped.
    """
    lowered = {k.lower(): v for k, v in variables.items()}
    for op_full, block in condition.items():
        if not isinstance(op_full, str) or not isinstance(block, dict):
            return False, f"malformed Condition entry {_show(op_full)}"
        op = op_full.removesuffix("IfExists")
        if op not in _CONDITION_OPS:
            return False, f"unsupported condition operator {op_full}"
        for key, wanted in block.items():
            actual = lowered.get(str(key).lower())
            values = [str(v).lower() if isinstance(v, bool) else str(v)
                      for v in (wanted if isinstance(wanted, list) else [wanted])]
            if op == "Null":
                if (actual is None) != (values[0].lower() == "true"):
                    return False, None
                continue
            negated = "Not" in op
            if actual is None:
                if op_full.endswith("IfExists") or negated:
                    continue
                return False, None
            try:
                hit = any(_condition_value_matches(op, v, str(actual), variables) for v in values)
            except _Unresolved:
                hit = False
            if hit == negated:
                return False, None
    return True, None


def _condition_value_matches(op: str, wanted: str, actual: str, variables: dict[str, str]) -> bool:
    if op == "Bool":
        return wanted.lower() == actual.lower()
    if op.endswith("Like"):
        return bool(_pattern(wanted, variables, substitute=True, ignore_case=False).fullmatch(actual))
    wanted_text = _pattern_literal(wanted, variables)
    if op.endswith("IgnoreCase"):
        return wanted_text.lower() == actual.lower()
    return wanted_text == actual


def _pattern_literal(text: str, variables: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        return m.group(2) if m.group(2) is not None else _resolve(m.group(1), variables)
    return re.sub(r"\$\{([^}]*)\}|\$\((\*|\?|\$)\)", repl, text)


def evaluate(policies: list[dict], action: str, resource: str,
             variables: dict[str, str] | None = None) -> Decision:
    """IAM-style evaluation of ``action`` on ``resource`` against every statement of ``policies``.

    Default deny; any matching Allow allows; any matching Deny wins over Allows
    (https://docs.aws.amazon.com/iot/latest/developerguide/iot-policies.html). Actions match
    case-insensitively, resources case-sensitively; ``*``/``?`` are wildcards, MQTT
    ``+``/``#`` are literal. Policy variables in Resource/NotResource and Condition values
    are taken from ``variables`` (e.g. ``{"iot:ClientId": "dev1"}``).

    Choices: a resource entry whose variable cannot be resolved matches nothing (IAM: the
    element does not match); a statement whose NotResource has an unresolvable variable,
    or whose Condition uses an unsupported operator, is skipped - for Allow *and* Deny
    statements - and the reason says so. Policies given as JSON strings are parsed.
    """
    variables = dict(variables or {})
    allow: tuple[int, int, dict] | None = None
    notes: list[str] = []
    for p_index, policy in enumerate(policies):
        if isinstance(policy, str):
            try:
                policy = json.loads(policy)
            except ValueError:
                notes.append(f"policy {p_index + 1} is not valid JSON")
                continue
        statements = policy.get("Statement") if isinstance(policy, dict) else None
        if isinstance(statements, dict):
            statements = [statements]
        for s_index, st in enumerate(statements if isinstance(statements, list) else []):
            if not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny"):
                continue
            where = f"statement {s_index + 1} of policy {p_index + 1}"
            if not _statement_matches(st, action, resource, variables, where, notes):
                continue
            if st["Effect"] == "Deny":
                return Decision(False, f"explicitly denied by {where}", "Deny", st, p_index, s_index)
            if allow is None:
                allow = (p_index, s_index, st)
    if allow is not None:
        p_index, s_index, st = allow
        return Decision(True, f"allowed by statement {s_index + 1} of policy {p_index + 1}",
                        "Allow", st, p_index, s_index)
    reason = f"no statement allows {action} on {resource}"
    if notes:
        reason += " (" + "; ".join(notes) + ")"
    return Decision(False, reason, None, None, None, None)


def _statement_matches(st: dict, action: str, resource: str, variables: dict[str, str],
                       where: str, notes: list[str]) -> bool:
    unresolved: list[str] = []
    if "Action" in st:
        if not _any_match(_as_list(st["Action"]), action, variables, resource=False, unresolved=unresolved):
            return False
    elif _any_match(_as_list(st.get("NotAction")), action, variables, resource=False, unresolved=unresolved):
        return False
    if "Resource" in st:
        if not _any_match(_as_list(st["Resource"]), resource, variables, resource=True, unresolved=unresolved):
            if unresolved:
                notes.append(f"{where} skipped a resource: policy variable ${{{unresolved[0]}}} has no value")
            return False
    else:
        hit = _any_match(_as_list(st.get("NotResource")), resource, variables, resource=True, unresolved=unresolved)
        if unresolved:
            notes.append(f"{where} ignored: NotResource uses policy variable ${{{unresolved[0]}}} which has no value")
            return False
        if hit:
            return False
    condition = st.get("Condition")
    if condition:
        if not isinstance(condition, dict):
            notes.append(f"{where} ignored: malformed Condition")
            return False
        holds, problem = _conditions_hold(condition, variables)
        if problem:
            notes.append(f"{where} ignored: {problem} (the sandbox treats such a statement as not matching)")
            return False
        if not holds:
            notes.append(f"{where} did not apply: its Condition is not met")
            return False
    return True
