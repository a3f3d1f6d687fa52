"""Server-side AWS Signature Version 4 verification.

Every API request to the sandbox must be signed with the sandbox's credentials,
exactly as AWS requires, so a client pointed at the wrong endpoint or holding
the wrong keys fails loudly instead of half-working. The algorithm is AWS's
(https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html):
canonical request → string to sign → HMAC chain over date, region, service,
``aws4_request``. The service and region come from the credential scope; the
server routes on that service name, as multi-service emulators do.

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
from dataclasses import dataclass
from urllib.parse import quote, unquote

from .core import AwsError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=15)  # AWS rejects requests signed more than 15 minutes off

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})\s*$")


@dataclass(frozen=True)
class Scope:
    access_key: str
    date: str
    region: str
    service: str


class SignatureError(AwsError):
    """A SigV4 failure; ``kind`` picks the per-protocol AWS error code."""

    CODES = {  # kind: (rest-json/json code, query code, message)
        "missing": ("MissingAuthenticationTokenException", "MissingAuthenticationToken",
                    "Missing Authentication Token"),
        "incomplete": ("IncompleteSignatureException", "IncompleteSignature", "{detail}"),
        "unknown-key": ("UnrecognizedClientException", "InvalidClientTokenId",
                        "The security token included in the request is invalid."),
        "mismatch": ("InvalidSignatureException", "SignatureDoesNotMatch",
                     "The request signature we calculated does not match the signature you provided. "
                     "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."),
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


def parse_authorization(headers: dict[str, str]) -> tuple[Scope, list[str], str]:
    auth = headers.get("authorization")
    if not auth:
        raise SignatureError("missing")
    m = _AUTH_RE.match(auth.strip())
    if not m:
        raise SignatureError("incomplete", f"Authorization header is not a valid {ALGORITHM} header: "
                             "expected 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...'")
    parts = m.group("cred").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("incomplete", "Credential should be scoped to a valid date, region, service and "
                             "'aws4_request' (ACCESS_KEY/DATE/REGION/SERVICE/aws4_request)")
    scope = Scope(parts[0], parts[1], parts[2], parts[3])
    return scope, m.group("signed").split(";"), m.group("sig")


def _canonical_query(raw_query: str) -> str:
    pairs = []
    for item in raw_query.split("&") if raw_query else []:
        key, _, value = item.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _canonical_headers(headers: dict[str, str], signed: list[str]) -> str:
    lines = []
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise SignatureError("incomplete", f"The header '{name}' is listed in SignedHeaders but is missing")
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


def _signing_key(secret: str, scope: Scope) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (scope.date, scope.region, scope.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def verify(method: str, raw_path: str, raw_query: str, headers: dict[str, str], body: bytes,
           credentials: dict[str, str], now: dt.datetime | None = None) -> Scope:
    """Check a request's SigV4 signature; return its scope, or raise SignatureError.

    ``headers`` must have lower-case names; ``credentials`` maps access key ids to secrets.
    """
    scope, signed, signature = parse_authorization(headers)
    secret = credentials.get(scope.access_key)
    if secret is None:
        raise SignatureError("unknown-key", service=scope.service)
    if "host" not in signed:
        raise SignatureError("incomplete", "SignedHeaders must include 'host'", scope.service)
    amz_date = headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise SignatureError("incomplete", "Authorization header requires an X-Amz-Date header "
                             "in the form YYYYMMDD'T'HHMMSS'Z'", scope.service) from None
    now = now or dt.datetime.now(dt.timezone.utc)
    if abs(now - when) > MAX_SKEW:
        raise SignatureError("expired", f"Signature expired: {amz_date} is now earlier than "
                             f"{(now - MAX_SKEW):%Y%m%dT%H%M%SZ} ({now:%Y%m%dT%H%M%SZ} - 15 min.) "
                             "Check the clock of this machine.", scope.service)
    payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = "\n".join([
        method,
        quote(raw_path or "/", safe="/~"),
        _canonical_query(raw_query),
        _canonical_headers(headers, signed),
        ";".join(signed),
        payload_hash,
    ])
    string_to_sign = "\n".join([
        ALGORITHM, amz_date, f"{scope.date}/{scope.region}/{scope.service}/aws4_request",
        hashlib.sha256(canonical.encode()).hexdigest(),
    ])
    expected = hmac.new(_signing_key(secret, scope), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("mismatch", service=scope.service)
    return scope


#: SigV4's longest presigned-URL lifetime: "X-Amz-Expires ... maximum value is 604800 seconds (7 days)".
MAX_PRESIGN_EXPIRES = 604800


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for item in raw_query.split("&") if raw_query else []:
        key, _, value = item.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def verify_presigned(method: str, raw_path: str, raw_query: str, headers: dict[str, str],
                     credentials: dict[str, str], *, service: str | None = None, region: str | None = None,
                     unsigned_params: tuple[str, ...] = ("X-Amz-Security-Token",),
                     now: dt.datetime | None = None) -> Scope:
    """Check a SigV4 signature carried in the query string (a presigned URL); return its scope.

    The canonical request is SigV4's for query authentication: the query minus
    ``X-Amz-Signature`` and minus ``unsigned_params`` (AWS IoT's MQTT-over-WebSocket
    URL appends ``X-Amz-Security-Token`` after signing), the headers named by
    ``X-Amz-SignedHeaders`` (must include ``host``), and the SHA-256 of an empty
    payload. With ``X-Amz-Expires`` the URL is valid from ``X-Amz-Date`` (15
    minutes of clock skew allowed) for that many seconds; without it,
    ``X-Amz-Date`` must be within 15 minutes of now, as for header signing.
    ``service``/``region``, when given, must match the credential scope.

    >>> import hashlib, hmac
    >>> q = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240101%2Fus-west-2%2Fiotdevicegateway"
    ...      "%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-SignedHeaders=host")
    >>> canonical = f"GET\\n/mqtt\\n{q}\\nhost:h\\n\\nhost\\n{hashlib.sha256(b'').hexdigest()}"
    >>> sts = ("AWS4-HMAC-SHA256\\n20240101T000000Z\\n20240101/us-west-2/iotdevicegateway/aws4_request\\n"
    ...        + hashlib.sha256(canonical.encode()).hexdigest())
    >>> key = _signing_key("SK", Scope("AK", "20240101", "us-west-2", "iotdevicegateway"))
    >>> sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    >>> verify_presigned("GET", "/mqtt", q + "&X-Amz-Signature=" + sig + "&X-Amz-Security-Token=T%2B",
    ...                  {"host": "h"}, {"AK": "SK"}, service="iotdevicegateway",
    ...                  now=dt.datetime(2024, 1, 1, 0, 5, tzinfo=dt.timezone.utc)).service
    'iotdevicegateway'
    """
    pairs = _query_pairs(raw_query)
    params = {k: v for k, v in pairs}
    if "X-Amz-Signature" not in params and "X-Amz-Credential" not in params:
        raise SignatureError("missing", service=service or "")
    for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"):
        if not params.get(name):
            raise SignatureError("incomplete", f"The presigned URL has no {name} query parameter", service or "")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise SignatureError("incomplete", f"X-Amz-Algorithm must be {ALGORITHM}", service or "")
    parts = params["X-Amz-Credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("incomplete", "X-Amz-Credential should be scoped to a valid date, region, service "
                             "and 'aws4_request' (ACCESS_KEY/DATE/REGION/SERVICE/aws4_request)", service or "")
    scope = Scope(*parts[:4])
    if service is not None and scope.service != service:
        raise SignatureError("incomplete", f"Credential should be scoped to correct service: '{service}'", service)
    if region is not None and scope.region != region:
        raise SignatureError("incomplete", f"Credential should be scoped to a valid region: '{region}'", scope.service)
    secret = credentials.get(scope.access_key)
    if secret is None:
        raise SignatureError("unknown-key", service=scope.service)
    signed = params["X-Amz-SignedHeaders"].split(";")
    if "host" not in signed:
        raise SignatureError("incomplete", "X-Amz-SignedHeaders must include 'host'", scope.service)
    amz_date = params["X-Amz-Date"]
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise SignatureError("incomplete", "X-Amz-Date must be in the form YYYYMMDD'T'HHMMSS'Z'",
                             scope.service) from None
    if when.strftime("%Y%m%d") != scope.date:
        raise SignatureError("incomplete", f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date: "
                             f"{scope.date} != {amz_date[:8]}", scope.service)
    now = now or dt.datetime.now(dt.timezone.utc)
    raw_expires = params.get("X-Amz-Expires")
    if raw_expires is not None:
        if not raw_expires.isdigit() or not 0 < int(raw_expires) <= MAX_PRESIGN_EXPIRES:
            raise SignatureError("incomplete", f"X-Amz-Expires must be a whole number of seconds from 1 to "
                                 f"{MAX_PRESIGN_EXPIRES} (7 days), not {raw_expires!r}", scope.service)
        if now < when - MAX_SKEW:
            raise SignatureError("expired", f"The presigned URL is not valid yet: X-Amz-Date {amz_date} is more "
                                 "than 15 minutes in the future. Check the clock of this machine.", scope.service)
        if now > when + dt.timedelta(seconds=int(raw_expires)):
            raise SignatureError("expired", f"The presigned URL expired: signed at {amz_date}, valid for "
                                 f"{raw_expires} seconds. Sign a new URL.", scope.service)
    elif abs(now - when) > MAX_SKEW:
        raise SignatureError("expired", f"Signature expired: {amz_date} is not within 15 minutes of "
                             f"{now:%Y%m%dT%H%M%SZ}. Sign a new URL, and check the clock of this machine.",
                             scope.service)
    excluded = {"X-Amz-Signature", *unsigned_params}
    canonical_query = "&".join(
        f"{k}={v}" for k, v in sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~"))
                                      for k, v in pairs if k not in excluded))
    canonical = "\n".join([
        method,
        quote(raw_path or "/", safe="/~"),
        canonical_query,
        _canonical_headers(headers, signed),
        ";".join(signed),
        hashlib.sha256(b"").hexdigest(),
    ])
    string_to_sign = "\n".join([
        ALGORITHM, amz_date, f"{scope.date}/{scope.region}/{scope.service}/aws4_request",
        hashlib.sha256(canonical.encode()).hexdigest(),
    ])
    expected = hmac.new(_signing_key(secret, scope), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), params["X-Amz-Signature"].encode()):
        raise SignatureError("mismatch", service=scope.service)
    return scope
