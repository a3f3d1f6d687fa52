"""Server-side AWS Signature Version 4 verification: one algorithm, two carriers.

Every request to the sandbox must be signed with credentials the sandbox issued,
exactly as AWS requires, so a client pointed at the wrong endpoint or holding
the wrong keys fails loudly instead of half-working. The algorithm is AWS's
(https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html):
canonical request → string to sign → HMAC chain over date, region, service,
``aws4_request``. :func:`verify` reads the signature from the ``Authorization``
header, :func:`verify_presigned` from the query string (a presigned URL); both
hand the same :class:`_Signed` description to one checker, :func:`_check`.

What is checked, in AWS's order and with AWS's messages
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-troubleshooting.html):

1. the credential scope: region (when the caller fixes one), service (likewise),
   terminator ``aws4_request``, and its date equal to the date of ``X-Amz-Date``
   ("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of
   date from HTTP: ...", https://docs.aws.amazon.com/general/latest/gr/sigv4-date-handling.html);
2. the time: within 15 minutes of now ("Signature expired: ... is now earlier
   than ... (... - 15 min.)", "Signature not yet current: ... is still later than
   ... (... + 15 min.)"), or for a presigned URL within ``X-Amz-Expires``;
3. the access key: known to the sandbox, and its security token: required and
   equal for temporary credentials (``ASIA...``), refused for long-term ones,
   ``ExpiredTokenException`` once the temporary credentials have expired;
4. the signature, over the payload's real SHA-256: an ``x-amz-content-sha256``
   header is never trusted in place of the body (``UNSIGNED-PAYLOAD`` only where
   the caller allows it, as S3 does; the sandbox serves no S3, so nowhere).

Credentials are looked up in a :class:`CredentialStore` (``core.Context.credentials``
in a running sandbox) or, for tests, a plain ``{access_key_id: secret}`` dict.

Usage (a request signed by botocore, checked here):

>>> from botocore.auth import SigV4Auth
>>> from botocore.awsrequest import AWSRequest
>>> from botocore.credentials import Credentials
>>> r = AWSRequest("GET", "https://127.0.0.1:4443/authorizers/?pageSize=5", headers={})
>>> SigV4Auth(Credentials("AK", "SK"), "iot", "us-west-2").add_auth(r)
>>> scope = verify("GET", "/authorizers/", "pageSize=5",
...                {k.lower(): v for k, v in r.headers.items()} | {"host": "127.0.0.1:4443"},
...                b"", credentials={"AK": "SK"})
>>> scope.service, scope.region
('iot', 'us-west-2')
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from .core import AwsError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=15)  # AWS rejects requests signed more than 15 minutes off
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: SigV4's longest presigned-URL lifetime: "X-Amz-Expires ... maximum value is 604800 seconds (7 days)".
MAX_PRESIGN_EXPIRES = 604800

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})\s*$")
_STAMP = "%Y%m%dT%H%M%SZ"


# --- credentials ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Credential:
    """One key pair the sandbox accepts, and whose it is.

    ``session_token``/``expires_at`` (epoch seconds) are set for temporary
    credentials only; ``arn`` and ``user_id`` are what GetCallerIdentity answers.
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    arn: str = ""
    user_id: str = ""

    @property
    def temporary(self) -> bool:
        return self.session_token is not None


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_temporary_key_id() -> str:
    """``ASIA`` + 16 characters, the shape of STS's temporary access key ids."""
    return "ASIA" + _random(string.ascii_uppercase + string.digits, 16)


class CredentialStore:
    """The credentials one sandbox accepts: its home's long-term pair and the temporary ones it issued.

    Thread-safe. Temporary credentials live in memory: they belong to Lambda
    workers, which do not outlive the sandbox process either.

    >>> store = CredentialStore(Credential("SANDBOXAAAAAAAAAAAAA", "s", arn="arn:aws:iam::1:user/u"))
    >>> temp = store.issue_temporary("arn:aws:sts::1:assumed-role/r/f", "AROAX:f", 3600)
    >>> store.lookup(temp.access_key_id).temporary, store.lookup("SANDBOXAAAAAAAAAAAAA").temporary
    (True, False)
    """

    def __init__(self, long_term: Credential | None = None):
        self._lock = threading.Lock()
        self._by_key: dict[str, Credential] = {}
        if long_term is not None:
            self._by_key[long_term.access_key_id] = long_term

    def lookup(self, access_key_id: str) -> Credential | None:
        with self._lock:
            return self._by_key.get(access_key_id)

    def add(self, credential: Credential) -> None:
        with self._lock:
            self._by_key[credential.access_key_id] = credential

    def issue_temporary(self, arn: str, user_id: str, duration_seconds: float) -> Credential:
        """New temporary credentials for ``arn`` (an assumed-role ARN), valid for ``duration_seconds``."""
        credential = Credential(new_temporary_key_id(), secrets.token_urlsafe(30),
                                session_token=secrets.token_urlsafe(96), expires_at=time.time() + duration_seconds,
                                arn=arn, user_id=user_id)
        with self._lock:
            now = time.time()
            for key in [k for k, c in self._by_key.items() if c.expires_at is not None and c.expires_at < now - 3600]:
                del self._by_key[key]  # long expired: forget them
            self._by_key[credential.access_key_id] = credential
        return credential

    def revoke(self, access_key_id: str) -> None:
        with self._lock:
            self._by_key.pop(access_key_id, None)


def _lookup(credentials: Any, access_key: str) -> Credential | None:
    if hasattr(credentials, "lookup"):
        return credentials.lookup(access_key)
    value = (credentials or {}).get(access_key)
    if value is None or isinstance(value, Credential):
        return value
    return Credential(access_key, value)


def known_key(credentials: Any, access_key: str) -> bool:
    """Whether ``access_key`` is one the sandbox would check a signature against (not whether it is valid)."""
    return _lookup(credentials, access_key) is not None


# --- errors ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    access_key: str
    date: str
    region: str
    service: str
    #: The credential that signed the request (None only in parse_authorization's answer).
    credential: Credential | None = field(default=None, compare=False, repr=False)


class SignatureError(AwsError):
    """A SigV4 failure; ``kind`` picks the per-protocol AWS error code."""

    CODES = {  # kind: (rest-json/json code, query code, message)
        "missing": ("MissingAuthenticationTokenException", "MissingAuthenticationToken",
                    "Missing Authentication Token"),
        "incomplete": ("IncompleteSignatureException", "IncompleteSignature", "{detail}"),
        "unknown-key": ("UnrecognizedClientException", "InvalidClientTokenId",
                        "The security token included in the request is invalid."),
        "expired-token": ("ExpiredTokenException", "ExpiredToken",
                          "The security token included in the request is expired"),
        "mismatch": ("InvalidSignatureException", "SignatureDoesNotMatch",
                     "The request signature we calculated does not match the signature you provided. "
                     "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."),
        "scope": ("InvalidSignatureException", "SignatureDoesNotMatch", "{detail}"),
        "expired": ("InvalidSignatureException", "SignatureDoesNotMatch", "{detail}"),
    }

    def __init__(self, kind: str, detail: str = "", service: str = ""):
        code, self.query_code, message = self.CODES[kind]
        super().__init__(code, message.format(detail=detail), 403)
        self.kind = kind
        self.service = service

    def for_protocol(self, protocol: str) -> AwsError:
        if protocol == "query":
            return AwsError(self.query_code, self.message, self.status)
        return self


# --- the two carriers -----------------------------------------------------------------------

@dataclass
class _Signed:
    """What a request claims, whichever way it carries its signature."""

    method: str
    raw_path: str
    canonical_query: str
    headers: dict[str, str]
    credential: str          # ACCESS_KEY/DATE/REGION/SERVICE/aws4_request
    signed_headers: list[str]
    signature: str
    amz_date: str
    security_token: str | None
    payload_hash: str
    expires: int | None = None   # presigned URLs only
    where: str = "Authorization header"


def _authorization(headers: dict[str, str]) -> tuple[str, list[str], str]:
    """(raw credential, signed header names, signature) of an ``Authorization`` header, or SignatureError."""
    auth = headers.get("authorization")
    if not auth:
        raise SignatureError("missing")
    m = _AUTH_RE.match(auth.strip())
    if not m:
        raise SignatureError("incomplete", f"Authorization header is not a valid {ALGORITHM} header: "
                             "expected 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...'")
    if len(m.group("cred").split("/")) != 5:
        raise SignatureError("incomplete", "Credential should be scoped to a valid date, region, service and "
                             "'aws4_request' (ACCESS_KEY/DATE/REGION/SERVICE/aws4_request)")
    return m.group("cred"), m.group("signed").split(";"), m.group("sig")


def parse_authorization(headers: dict[str, str]) -> tuple[Scope, list[str], str]:
    """(scope, signed header names, signature) of an ``Authorization`` header, or SignatureError."""
    credential, signed, signature = _authorization(headers)
    return Scope(*credential.split("/")[:4]), signed, signature


def _canonical_query(raw_query: str, excluded: frozenset[str] = frozenset()) -> str:
    pairs = []
    for item in raw_query.split("&") if raw_query else []:
        key, _, value = item.partition("=")
        key, value = unquote(key), unquote(value)
        if key in excluded:
            continue
        pairs.append((quote(key, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _canonical_headers(headers: dict[str, str], signed: list[str], service: str) -> str:
    lines = []
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise SignatureError("incomplete", f"The header '{name}' is listed in SignedHeaders but is missing",
                                 service)
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


def _signing_key(secret: str, scope: Scope) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (scope.date, scope.region, scope.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _payload_hash(headers: dict[str, str], body: bytes, allow_unsigned_payload: bool) -> str:
    """The payload hash the canonical request uses: always the body's own, never a header's claim."""
    claimed = headers.get("x-amz-content-sha256")
    if claimed == UNSIGNED_PAYLOAD and allow_unsigned_payload:
        return UNSIGNED_PAYLOAD
    return hashlib.sha256(body).hexdigest()


def verify(method: str, raw_path: str, raw_query: str, headers: dict[str, str], body: bytes,
           credentials: Any, now: dt.datetime | None = None, *, service: str | None = None,
           region: str | None = None, allow_unsigned_payload: bool = False) -> Scope:
    """Check a request signed in its ``Authorization`` header; return its scope, or raise SignatureError.

    ``headers`` must have lower-case names; ``credentials`` is a :class:`CredentialStore`
    (or a ``{access_key_id: secret}`` dict). ``service``/``region``, when given, must be
    the credential scope's. The returned scope's ``credential`` says who signed.
    """
    credential, signed, signature = _authorization(headers)
    request = _Signed(method, raw_path, _canonical_query(raw_query), headers, credential, signed, signature,
                      headers.get("x-amz-date", ""), headers.get("x-amz-security-token"),
                      _payload_hash(headers, body, allow_unsigned_payload))
    return _check(request, credentials, now, service=service, region=region)


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for item in raw_query.split("&") if raw_query else []:
        key, _, value = item.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def verify_presigned(method: str, raw_path: str, raw_query: str, headers: dict[str, str],
                     credentials: Any, *, service: str | None = None, region: str | None = None,
                     unsigned_params: tuple[str, ...] = ("X-Amz-Security-Token",),
                     now: dt.datetime | None = None, payload_hash: str = EMPTY_SHA256) -> Scope:
    """Check a SigV4 signature carried in the query string (a presigned URL); return its scope.

    The canonical request is SigV4's for query authentication: the query minus
    ``X-Amz-Signature`` and minus ``unsigned_params`` (AWS IoT's MQTT-over-WebSocket
    URL appends ``X-Amz-Security-Token`` after signing), the headers named by
    ``X-Amz-SignedHeaders`` (must include ``host``), and ``payload_hash`` (the
    SHA-256 of an empty payload, as AWS IoT's WebSocket signing uses). With
    ``X-Amz-Expires`` the URL is valid from ``X-Amz-Date`` (15 minutes of clock
    skew allowed) for that many seconds; without it, ``X-Amz-Date`` must be within
    15 minutes of now, as for header signing. ``service``/``region``, when given,
    must match the credential scope.

    >>> import hashlib, hmac
    >>> q = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240101%2Fus-west-2%2Fiotdevicegateway"
    ...      "%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-SignedHeaders=host")
    >>> canonical = f"GET\\n/mqtt\\n{q}\\nhost:h\\n\\nhost\\n{hashlib.sha256(b'').hexdigest()}"
    >>> sts = ("AWS4-HMAC-SHA256\\n20240101T000000Z\\n20240101/us-west-2/iotdevicegateway/aws4_request\\n"
    ...        + hashlib.sha256(canonical.encode()).hexdigest())
    >>> key = _signing_key("SK", Scope("AK", "20240101", "us-west-2", "iotdevicegateway"))
    >>> sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    >>> verify_presigned("GET", "/mqtt", q + "&X-Amz-Signature=" + sig,
    ...                  {"host": "h"}, {"AK": "SK"}, service="iotdevicegateway",
    ...                  now=dt.datetime(2024, 1, 1, 0, 5, tzinfo=dt.timezone.utc)).service
    'iotdevicegateway'
    """
    params = dict(_query_pairs(raw_query))
    if "X-Amz-Signature" not in params and "X-Amz-Credential" not in params:
        raise SignatureError("missing", service=service or "")
    for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"):
        if not params.get(name):
            raise SignatureError("incomplete", f"The presigned URL has no {name} query parameter", service or "")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise SignatureError("incomplete", f"X-Amz-Algorithm must be {ALGORITHM}", service or "")
    if len(params["X-Amz-Credential"].split("/")) != 5:
        raise SignatureError("incomplete", "X-Amz-Credential should be scoped to a valid date, region, service "
                             "and 'aws4_request' (ACCESS_KEY/DATE/REGION/SERVICE/aws4_request)", service or "")
    raw_expires = params.get("X-Amz-Expires")
    expires = None
    if raw_expires is not None:
        if not raw_expires.isdigit() or not 0 < int(raw_expires) <= MAX_PRESIGN_EXPIRES:
            raise SignatureError("incomplete", f"X-Amz-Expires must be a whole number of seconds from 1 to "
                                 f"{MAX_PRESIGN_EXPIRES} (7 days), not {raw_expires!r}", service or "")
        expires = int(raw_expires)
    request = _Signed(method, raw_path, _canonical_query(raw_query, frozenset({"X-Amz-Signature", *unsigned_params})),
                      headers, params["X-Amz-Credential"], params["X-Amz-SignedHeaders"].split(";"),
                      params["X-Amz-Signature"], params["X-Amz-Date"], params.get("X-Amz-Security-Token"),
                      payload_hash, expires, where="presigned URL")
    return _check(request, credentials, now, service=service, region=region)


# --- the one checker ------------------------------------------------------------------------

def _check(req: _Signed, credentials: Any, now: dt.datetime | None, *, service: str | None,
           region: str | None) -> Scope:
    access_key, date, scope_region, scope_service, terminator = req.credential.split("/")
    problems = []  # AWS lists every scope problem in one message
    if region is not None and scope_region != region:
        problems.append(f"Credential should be scoped to a valid region, not '{scope_region}'.")
    if service is not None and scope_service != service:
        problems.append(f"Credential should be scoped to correct service: '{service}'.")
    if terminator != "aws4_request":
        problems.append(f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'.")
    try:
        when = dt.datetime.strptime(req.amz_date, _STAMP).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        if problems:
            raise SignatureError("scope", " ".join(problems), scope_service) from None
        raise SignatureError("incomplete", f"The {req.where} requires X-Amz-Date in the form YYYYMMDD'T'HHMMSS'Z' "
                             f"(UTC), not {req.amz_date!r}", scope_service) from None
    if date != req.amz_date[:8]:
        problems.append(f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                        f"'{date}' != '{req.amz_date[:8]}', from '{req.amz_date}'.")
    if problems:
        raise SignatureError("scope", " ".join(problems), scope_service)
    scope = Scope(access_key, date, scope_region, scope_service)
    if "host" not in req.signed_headers:
        raise SignatureError("incomplete", f"'Host' must be a 'SignedHeader' in the {req.where}.", scope.service)

    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    if now < when - MAX_SKEW:
        raise SignatureError("expired", f"Signature not yet current: {req.amz_date} is still later than "
                             f"{now + MAX_SKEW:{_STAMP}} ({now:{_STAMP}} + 15 min.)", scope.service)
    if req.expires is None and now > when + MAX_SKEW:
        raise SignatureError("expired", f"Signature expired: {req.amz_date} is now earlier than "
                             f"{now - MAX_SKEW:{_STAMP}} ({now:{_STAMP}} - 15 min.)", scope.service)
    if req.expires is not None and now > when + dt.timedelta(seconds=req.expires):
        raise SignatureError("expired", f"Signature expired: {req.amz_date} is now earlier than "
                             f"{now - dt.timedelta(seconds=req.expires):{_STAMP}} ({now:{_STAMP}} - "
                             f"{req.expires} sec.)", scope.service)

    credential = _lookup(credentials, access_key)
    if credential is None:
        raise SignatureError("unknown-key", service=scope.service)
    if credential.temporary:
        if req.security_token is None or not hmac.compare_digest(req.security_token.encode(),
                                                                 credential.session_token.encode()):
            raise SignatureError("unknown-key", service=scope.service)
        if credential.expires_at is not None and time.time() > credential.expires_at:
            raise SignatureError("expired-token", service=scope.service)
    elif req.security_token is not None:  # a long-term key never comes with a session token
        raise SignatureError("unknown-key", service=scope.service)

    canonical = "\n".join([
        req.method,
        quote(req.raw_path or "/", safe="/~"),
        req.canonical_query,
        _canonical_headers(req.headers, req.signed_headers, scope.service),
        ";".join(req.signed_headers),
        req.payload_hash,
    ])
    string_to_sign = "\n".join([
        ALGORITHM, req.amz_date, f"{scope.date}/{scope.region}/{scope.service}/aws4_request",
        hashlib.sha256(canonical.encode()).hexdigest(),
    ])
    expected = hmac.new(_signing_key(credential.secret_access_key, scope), string_to_sign.encode(),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), req.signature.encode()):
        raise SignatureError("mismatch", service=scope.service)
    return Scope(access_key, date, scope_region, scope_service, credential)
