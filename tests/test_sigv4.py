"""SigV4 verification against signatures made by botocore itself."""
from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from helpers.sandbox import sigv4

CREDS = {"SANDBOXKEY": "sandbox-secret"}


def signed(method="POST", url="https://127.0.0.1:4443/authorizer/a", body=b"{}", service="iot",
           key="SANDBOXKEY", secret="sandbox-secret", headers=None):
    req = AWSRequest(method, url, data=body, headers=headers or {"Content-Type": "application/json"})
    SigV4Auth(Credentials(key, secret), service, "us-west-2").add_auth(req)
    parts = urlsplit(url)
    hdrs = {k.lower(): v for k, v in req.headers.items()}
    hdrs["host"] = parts.netloc
    return method, parts.path, parts.query, hdrs, body


def test_valid_signature_gives_scope():
    scope = sigv4.verify(*signed(), credentials=CREDS)
    assert (scope.service, scope.region, scope.access_key) == ("iot", "us-west-2", "SANDBOXKEY")


def test_encoded_path_and_query_as_botocore_sends_them():
    url = ("https://127.0.0.1:4443/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A123456789012"
           "%3Afunction%3Af/policy?Qualifier=%24LATEST&b=a%2Fb%20c")
    assert sigv4.verify(*signed("GET", url, b"", "lambda"), credentials=CREDS).service == "lambda"


def test_tampered_body_is_signature_mismatch():
    method, path, query, headers, _ = signed()
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(method, path, query, headers, b'{"x": 1}', credentials=CREDS)
    assert info.value.code == "InvalidSignatureException" and info.value.status == 403
    assert info.value.for_protocol("query").code == "SignatureDoesNotMatch"


def test_wrong_secret_and_unknown_key():
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(*signed(secret="other"), credentials=CREDS)
    assert info.value.kind == "mismatch"
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(*signed(key="AKIDNOTKNOWN"), credentials=CREDS)
    assert info.value.code == "UnrecognizedClientException"
    assert info.value.for_protocol("query").code == "InvalidClientTokenId"


def test_missing_and_malformed_authorization():
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify("GET", "/", "", {"host": "x"}, b"", credentials=CREDS)
    assert info.value.code == "MissingAuthenticationTokenException"
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify("GET", "/", "", {"host": "x", "authorization": "Bearer abc"}, b"", credentials=CREDS)
    assert info.value.code == "IncompleteSignatureException"


def test_host_header_is_part_of_the_signature():
    method, path, query, headers, body = signed()
    headers["host"] = "127.0.0.1:9999"
    with pytest.raises(sigv4.SignatureError):
        sigv4.verify(method, path, query, headers, body, credentials=CREDS)


def test_expired_signature():
    args = signed()
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20)
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(*args, credentials=CREDS, now=later)
    assert "Signature expired" in info.value.message
