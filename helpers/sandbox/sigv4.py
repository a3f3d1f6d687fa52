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
