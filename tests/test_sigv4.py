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


# --- AWS's checks, one implementation for both carriers -------------------------------------------------

import hashlib  # noqa: E402
import hmac  # noqa: E402

SCOPE_DATE_MESSAGE = "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP"


def hand_signed(amz_date="20240506T070809Z", scope_date="20240506", key="SANDBOXKEY", secret="sandbox-secret",
                body=b"{}", extra_headers=None, payload_hash=None, service="iot", region="us-west-2"):
    """A request signed by hand, so its scope date and payload hash can be chosen (what an attacker can do)."""
    headers = {"host": "127.0.0.1:4443", "x-amz-date": amz_date, **(extra_headers or {})}
    signed_names = sorted(headers)
    canonical = "\n".join(["POST", "/authorizer/a", "", "".join(f"{h}:{headers[h]}\n" for h in signed_names),
                           ";".join(signed_names), payload_hash or hashlib.sha256(body).hexdigest()])
    scope = f"{scope_date}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    k = ("AWS4" + secret).encode()
    for part in (scope_date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={';'.join(signed_names)}, "
                                f"Signature={signature}")
    return "POST", "/authorizer/a", "", headers, body


AT = dt.datetime(2024, 5, 6, 7, 10, tzinfo=dt.timezone.utc)


def test_hand_signed_request_verifies():
    assert sigv4.verify(*hand_signed(), credentials=CREDS, now=AT).service == "iot"


def test_swapped_body_under_an_unsigned_content_sha256_header_is_refused():
    """The header is a claim about the body; the body's own hash is what is signed."""
    method, path, query, headers, body = signed(body=b'{"RoleName": "good"}')
    headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()  # unsigned, the old body's hash
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(method, path, query, headers, b'{"RoleName": "attacker"}', credentials=CREDS)
    assert info.value.code == "InvalidSignatureException"


def test_signed_content_sha256_header_that_lies_about_the_body_is_refused():
    old = b'{"RoleName": "good"}'
    args = hand_signed(body=b'{"RoleName": "attacker"}', payload_hash=hashlib.sha256(old).hexdigest(),
                       extra_headers={"x-amz-content-sha256": hashlib.sha256(old).hexdigest()})
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(*args, credentials=CREDS, now=AT)
    assert info.value.kind == "mismatch"


def test_unsigned_payload_only_where_allowed():
    args = hand_signed(payload_hash="UNSIGNED-PAYLOAD", extra_headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    with pytest.raises(sigv4.SignatureError):
        sigv4.verify(*args, credentials=CREDS, now=AT)
    assert sigv4.verify(*args, credentials=CREDS, now=AT, allow_unsigned_payload=True)


def test_scope_date_must_equal_the_date_of_x_amz_date():
    args = hand_signed(amz_date="20240506T000500Z", scope_date="20240505")
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(*args, credentials=CREDS, now=dt.datetime(2024, 5, 6, 0, 6, tzinfo=dt.timezone.utc))
    assert info.value.code == "InvalidSignatureException"
    assert info.value.message == (f"{SCOPE_DATE_MESSAGE}: '20240505' != '20240506', from '20240506T000500Z'.")


def test_future_signature_is_not_yet_current_and_old_one_expired_in_aws_words():
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(*hand_signed(), credentials=CREDS, now=AT - dt.timedelta(minutes=30))
    assert info.value.message == ("Signature not yet current: 20240506T070809Z is still later than "
                                  "20240506T065500Z (20240506T064000Z + 15 min.)")
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(*hand_signed(), credentials=CREDS, now=AT + dt.timedelta(minutes=30))
    assert info.value.message == ("Signature expired: 20240506T070809Z is now earlier than "
                                  "20240506T072500Z (20240506T074000Z - 15 min.)")
    assert info.value.for_protocol("query").code == "SignatureDoesNotMatch"


def test_service_and_region_of_the_scope_when_fixed():
    with pytest.raises(sigv4.SignatureError, match="Credential should be scoped to a valid region, not 'eu-west-1'"):
        sigv4.verify(*hand_signed(region="eu-west-1"), credentials=CREDS, now=AT, region="us-west-2")
    with pytest.raises(sigv4.SignatureError, match="Credential should be scoped to correct service: 'lambda'"):
        sigv4.verify(*hand_signed(), credentials=CREDS, now=AT, service="lambda")


def test_long_term_key_with_a_security_token_is_refused():
    args = signed()
    method, path, query, headers, body = args
    req = AWSRequest(method, "https://127.0.0.1:4443/authorizer/a", data=body,
                     headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("SANDBOXKEY", "sandbox-secret", "bogus-token"), "iot", "us-west-2").add_auth(req)
    headers = {k.lower(): v for k, v in req.headers.items()} | {"host": "127.0.0.1:4443"}
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(method, path, query, headers, body, credentials=CREDS)
    assert info.value.code == "UnrecognizedClientException"
    assert info.value.message == "The security token included in the request is invalid."


def _signed_with(credential, token):
    req = AWSRequest("POST", "https://127.0.0.1:4443/authorizer/a", data=b"{}", headers={})
    SigV4Auth(Credentials(credential.access_key_id, credential.secret_access_key, token), "iot",
              "us-west-2").add_auth(req)
    return "POST", "/authorizer/a", "", {k.lower(): v for k, v in req.headers.items()} | {"host": "127.0.0.1:4443"}, b"{}"


def test_temporary_credentials_need_their_own_token_and_expire():
    store = sigv4.CredentialStore()
    temp = store.issue_temporary("arn:aws:sts::123456789012:assumed-role/r/f", "AROAEXAMPLE:f", 3600)
    assert temp.access_key_id.startswith("ASIA") and len(temp.access_key_id) == 20
    scope = sigv4.verify(*_signed_with(temp, temp.session_token), credentials=store)
    assert scope.credential.arn.endswith("assumed-role/r/f")
    for token in (None, "another-token"):
        with pytest.raises(sigv4.SignatureError) as info:
            sigv4.verify(*_signed_with(temp, token), credentials=store)
        assert info.value.code == "UnrecognizedClientException"
    expired = store.issue_temporary("arn:aws:sts::123456789012:assumed-role/r/f", "AROAEXAMPLE:f", -1)
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(*_signed_with(expired, expired.session_token), credentials=store)
    assert (info.value.code, info.value.for_protocol("query").code) == ("ExpiredTokenException", "ExpiredToken")


def test_presigned_urls_get_the_same_checks():
    """Scope date and not-yet-current, checked by the one implementation for query signing too."""
    from helpers import mqtt
    url = mqtt.presigned_url("h:1", "us-west-2", ("SANDBOXKEY", "sandbox-secret"), now=AT, expires=60)
    query = urlsplit(url).query
    kw = dict(method="GET", raw_path="/mqtt", headers={"host": "h:1"}, credentials=CREDS,
              service="iotdevicegateway")
    assert sigv4.verify_presigned(raw_query=query, now=AT, **kw)
    with pytest.raises(sigv4.SignatureError, match=SCOPE_DATE_MESSAGE):
        sigv4.verify_presigned(raw_query=query.replace("%2F20240506%2F", "%2F20240505%2F"), now=AT, **kw)
    with pytest.raises(sigv4.SignatureError, match="Signature not yet current"):
        sigv4.verify_presigned(raw_query=query, now=AT - dt.timedelta(minutes=20), **kw)
