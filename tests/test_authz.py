"""Tests for helpers.sandbox.authz: keys, signatures, events, responses, policy evaluation."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from helpers.sandbox.authz import (
    InvalidAuthorizerResponse, InvalidPublicKey, build_event, client_arn, evaluate,
    parse_authorizer_response, topic_arn, topicfilter_arn, validate_public_key,
    verify_token_signature,
)

REGION, ACCOUNT = "us-west-2", "123456789012"


# ----------------------------------------------------------------- fixtures

def _public_pem(key) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _sign(key, token: str) -> str:
    return base64.b64encode(key.sign(token.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


@pytest.fixture(scope="module")
def key_a():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key_b():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pub_a(key_a):
    return _public_pem(key_a)


@pytest.fixture(scope="module")
def pub_b(key_b):
    return _public_pem(key_b)


# ---------------------------------------------------------------- signatures

def test_valid_signature_returns_key_name(key_a, pub_a):
    assert verify_token_signature("allow", _sign(key_a, "allow"), {"k1": pub_a}) == "k1"


def test_tampered_token_fails(key_a, pub_a):
    assert verify_token_signature("allow!", _sign(key_a, "allow"), {"k1": pub_a}) is None


def test_tampered_signature_fails(key_a, pub_a):
    raw = bytearray(base64.b64decode(_sign(key_a, "allow")))
    raw[10] ^= 0x01
    assert verify_token_signature("allow", base64.b64encode(bytes(raw)).decode(), {"k1": pub_a}) is None


def test_signature_from_another_key_fails(key_b, pub_a):
    assert verify_token_signature("allow", _sign(key_b, "allow"), {"k1": pub_a}) is None


def test_second_key_in_map_verifies(key_b, pub_a, pub_b):
    assert verify_token_signature("allow", _sign(key_b, "allow"), {"first": pub_a, "second": pub_b}) == "second"


@pytest.mark.parametrize("bad", ["", "not base64!", "abc$def", "A", None, 12345])
def test_malformed_or_empty_signature_returns_none(key_a, pub_a, bad):
    assert verify_token_signature("allow", bad, {"k1": pub_a}) is None


def test_newline_wrapped_or_urlsafe_signature_is_rejected(key_a, pub_a):
    sig = _sign(key_a, "allow")
    wrapped = sig[:64] + "\n" + sig[64:]
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(sig)).decode()
    assert verify_token_signature("allow", wrapped, {"k1": pub_a}) is None
    if urlsafe != sig:  # only differs when the signature contains + or /
        assert verify_token_signature("allow", urlsafe, {"k1": pub_a}) is None


def test_missing_padding_is_tolerated(key_a, pub_a):
    token = next(t for t in (f"tok{i}" for i in range(50)) if _sign(key_a, t).endswith("="))
    assert verify_token_signature(token, _sign(key_a, token).rstrip("="), {"k1": pub_a}) == "k1"


def test_garbage_keys_and_non_utf8_tokens_never_raise(key_a, pub_a):
    sig = _sign(key_a, "allow")
    assert verify_token_signature("allow", sig, {"junk": "not a key", "a": pub_a}) == "a"
    assert verify_token_signature("\ud800", sig, {"a": pub_a}) is None
    assert verify_token_signature("allow", sig, {}) is None
    assert verify_token_signature(None, sig, {"a": pub_a}) is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_openssl_command_line_signature_verifies(key_a, pub_a, tmp_path):
    """The tutorial's `echo -n TOKEN | openssl dgst -sha256 -sign key.pem | openssl base64 -A`."""
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key_a.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.TraditionalOpenSSL,
                                             serialization.NoEncryption()))
    signed = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_file)],
                            input=b"tokenKeyValue", capture_output=True, check=True).stdout
    b64 = subprocess.run(["openssl", "base64", "-A"], input=signed, capture_output=True,
                         check=True).stdout.decode().strip()
    assert verify_token_signature("tokenKeyValue", b64, {"tutorial": pub_a}) == "tutorial"
    assert verify_token_signature("tokenKeyValue2", b64, {"tutorial": pub_a}) is None


# ---------------------------------------------------------------- public keys

def test_valid_2048_key_accepted(pub_a):
    validate_public_key(pub_a)


def test_valid_4096_key_accepted():
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    validate_public_key(_public_pem(key))


def test_pkcs1_rsa_public_key_accepted(key_a):
    pem = key_a.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.PKCS1).decode()
    assert pem.startswith("-----BEGIN RSA PUBLIC KEY-----")
    validate_public_key(pem)


def test_single_line_body_accepted(key_a):
    der = key_a.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    validate_public_key(f"-----BEGIN PUBLIC KEY-----\n{base64.b64encode(der).decode()}\n-----END PUBLIC KEY-----")


def test_1024_bit_key_too_small():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InvalidPublicKey, match="1024-bit") as err:
        validate_public_key(_public_pem(key))
    assert "2048" in str(err.value)


def test_ec_key_rejected():
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidPublicKey, match="EC key") as err:
        validate_public_key(_public_pem(key))
    assert "RSA" in str(err.value)


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_private_key_pasted(key_a, fmt):
    pem = key_a.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
    with pytest.raises(InvalidPublicKey) as err:
        validate_public_key(pem)
    message = str(err.value)
    assert "PRIVATE key" in message and "Never send" in message
    assert pem.splitlines()[1] not in message  # never echo key material


@pytest.mark.parametrize("garbage", ["", "   ", "hello world", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"])
def test_garbage_is_not_pem(garbage):
    with pytest.raises(InvalidPublicKey, match="PEM|empty"):
        validate_public_key(garbage)


def test_pem_with_stray_edit_is_damaged(pub_a):
    lines = pub_a.splitlines()
    lines[2] = lines[2][:10] + lines[2][11:]  # one character removed
    with pytest.raises(InvalidPublicKey, match="damaged or incomplete"):
        validate_public_key("\n".join(lines))


def test_pem_missing_footer_is_damaged(pub_a):
    with pytest.raises(InvalidPublicKey, match="damaged or incomplete"):
        validate_public_key(pub_a.replace("-----END PUBLIC KEY-----", ""))


def test_certificate_and_ssh_key_get_specific_messages():
    with pytest.raises(InvalidPublicKey, match="certificate"):
        validate_public_key("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(InvalidPublicKey, match="OpenSSH"):
        validate_public_key("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ user@host")


# ---------------------------------------------------------------------- events

def test_event_without_context_has_no_protocol_data():
    event = build_event(token="allow", signature_verified=True)
    assert event["token"] == "allow" and event["signatureVerified"] is True
    assert "protocolData" not in event
    assert event["protocols"] == []
    assert str(uuid.UUID(event["connectionMetadata"]["id"])) == event["connectionMetadata"]["id"]


def test_event_token_omitted_when_none_and_connection_id_kept():
    event = build_event(token=None, signature_verified=False, connection_id="abc")
    assert "token" not in event and event["signatureVerified"] is False
    assert event["connectionMetadata"] == {"id": "abc"}


def test_connection_ids_are_fresh_uuids():
    a = build_event(token="t", signature_verified=False)["connectionMetadata"]["id"]
    b = build_event(token="t", signature_verified=False)["connectionMetadata"]["id"]
    assert a != b and uuid.UUID(a).version == 4


def test_http_event_shape_and_query_prefix():
    event = build_event(token="t", signature_verified=True, tls_server_name="x-ats.iot.us-west-2.amazonaws.com",
                        http={"headers": {"tokenKeyName": "t"}, "queryString": "actionToken=allow"})
    assert event["protocols"] == ["tls", "http"]
    assert event["protocolData"] == {
        "tls": {"serverName": "x-ats.iot.us-west-2.amazonaws.com"},
        "http": {"headers": {"tokenKeyName": "t"}, "queryString": "?actionToken=allow"},
    }
    already = build_event(token="t", signature_verified=True, http={"queryString": "?a=b"})
    assert already["protocolData"]["http"]["queryString"] == "?a=b"
    empty = build_event(token="t", signature_verified=True, http={"headers": {}, "queryString": ""})
    assert "queryString" not in empty["protocolData"]["http"]


def test_mqtt_event_password_base64_and_client_id():
    event = build_event(token=None, signature_verified=False,
                        mqtt={"username": "u?x=1", "password": b"test", "clientId": "dev1"})
    assert event["protocols"] == ["tls", "mqtt"]
    assert "tls" not in event["protocolData"]
    assert event["protocolData"]["mqtt"] == {"username": "u?x=1", "password": "dGVzdA==", "clientId": "dev1"}
    passthrough = build_event(token=None, signature_verified=False, mqtt={"username": "u", "password": "dGVzdA=="})
    assert passthrough["protocolData"]["mqtt"] == {"username": "u", "password": "dGVzdA=="}


def test_tls_only_event():
    event = build_event(token="t", signature_verified=True, tls_server_name="sni.example")
    assert event["protocols"] == ["tls"]
    assert event["protocolData"] == {"tls": {"serverName": "sni.example"}}


def test_event_is_json_serialisable():
    event = build_event(token="t", signature_verified=True, http={"headers": {"a": "b"}},
                        mqtt={"username": "u", "password": bytearray(b"\x00\xff")})
    assert json.loads(json.dumps(event))["protocolData"]["mqtt"]["password"] == "AP8="


# -------------------------------------------------------------------- responses

POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": "iot:Publish", "Effect": "Allow", "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/customauthtesting"}]}


def _resp(**over):
    body = {"isAuthenticated": True, "principalId": "xxxxxxxx", "disconnectAfterInSeconds": 86400,
            "refreshAfterInSeconds": 300, "policyDocuments": [POLICY]}
    body.update(over)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def _reason(payload) -> str:
    with pytest.raises(InvalidAuthorizerResponse) as err:
        parse_authorizer_response(payload)
    assert err.value.reason == str(err.value)
    return err.value.reason


def test_documented_example_response_parses():
    result = parse_authorizer_response(_resp())
    assert result.is_authenticated is True and result.principal_id == "xxxxxxxx"
    assert result.refresh_after_seconds == 300 and result.disconnect_after_seconds == 86400
    assert result.policies == [POLICY]
    assert result.policy_documents == [json.dumps(POLICY, separators=(",", ":"))]


def test_json_string_and_double_encoded_and_bytes_responses():
    text = json.dumps(_resp())
    for payload in (text, text.encode(), json.dumps(text)):
        assert parse_authorizer_response(payload).policies == [POLICY]


def test_object_and_string_policy_docs_normalised_to_same_compact_string():
    pretty = json.dumps(POLICY, indent=4)
    result = parse_authorizer_response(_resp(policyDocuments=[POLICY, pretty]))
    assert result.policy_documents[0] == result.policy_documents[1]
    assert " " not in result.policy_documents[1] and "\n" not in result.policy_documents[1]
    assert result.policies[1] == POLICY


def test_optional_seconds_may_be_absent():
    result = parse_authorizer_response(_resp(refreshAfterInSeconds=_DROP, disconnectAfterInSeconds=_DROP))
    assert result.refresh_after_seconds is None and result.disconnect_after_seconds is None


def test_lambda_error_document_is_invalid():
    reason = _reason({"errorMessage": "boom", "errorType": "TypeError", "stackTrace": []})
    assert "function error" in reason and "TypeError" in reason and "boom" in reason
    timeout = _reason({"errorMessage": "Task timed out after 5.00 seconds"})
    assert "timed out" in timeout


@pytest.mark.parametrize("payload", ["not json", b"\xff\xfe", "[1,2]", "null", json.dumps("just a string")])
def test_non_object_responses(payload):
    assert "JSON" in _reason(payload)


def test_is_authenticated_required():
    assert "isAuthenticated" in _reason(_resp(isAuthenticated=_DROP))


def test_is_authenticated_must_be_boolean():
    reason = _reason(_resp(isAuthenticated="true"))
    assert "isAuthenticated" in reason and "boolean" in reason


def test_principal_id_required():
    assert "principalId" in _reason(_resp(principalId=_DROP))


def test_principal_id_must_be_string():
    assert "principalId" in _reason(_resp(principalId=12345))


@pytest.mark.parametrize("bad, hint", [("", "empty"), ("a" * 129, "129 characters"),
                                       ("user-1", "letters and digits"), ("user_1", "letters and digits")])
def test_principal_id_pattern_and_length(bad, hint):
    reason = _reason(_resp(principalId=bad))
    assert "principalId" in reason and hint in reason and "[a-zA-Z0-9]+" in reason


def test_principal_id_128_chars_ok():
    assert parse_authorizer_response(_resp(principalId="a" * 128)).principal_id == "a" * 128


def test_policy_documents_required():
    assert "policyDocuments" in _reason(_resp(policyDocuments=_DROP))


def test_policy_documents_must_be_list():
    assert "policyDocuments" in _reason(_resp(policyDocuments=POLICY))


def test_at_most_ten_policy_documents():
    assert len(parse_authorizer_response(_resp(policyDocuments=[POLICY] * 10)).policies) == 10
    reason = _reason(_resp(policyDocuments=[POLICY] * 11))
    assert "policyDocuments" in reason and "11" in reason and "10" in reason


def _policy_with_topic_len(n: int) -> dict:
    base = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
                                                    "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/"}]}
    pad = 2048 - len(json.dumps(base, separators=(",", ":")))
    base["Statement"][0]["Resource"] += "t" * (pad + n)
    return base


def test_policy_document_size_limit_counts_compact_form():
    at_limit = _policy_with_topic_len(0)
    assert len(parse_authorizer_response(_resp(policyDocuments=[json.dumps(at_limit, indent=8)]))
               .policy_documents[0]) == 2048
    reason = _reason(_resp(policyDocuments=[_policy_with_topic_len(1)]))
    assert "policyDocuments[0]" in reason and "2049" in reason and "2048" in reason


@pytest.mark.parametrize("field", ["refreshAfterInSeconds", "disconnectAfterInSeconds"])
@pytest.mark.parametrize("value", [299, 86401, 0, -5])
def test_seconds_out_of_range(field, value):
    reason = _reason(_resp(**{field: value}))
    assert field in reason and str(value) in reason and "300" in reason and "86400" in reason


@pytest.mark.parametrize("field", ["refreshAfterInSeconds", "disconnectAfterInSeconds"])
@pytest.mark.parametrize("value", ["300", 300.5, True])
def test_seconds_must_be_integers(field, value):
    assert field in _reason(_resp(**{field: value}))


def test_seconds_bounds_inclusive_and_integral_float():
    result = parse_authorizer_response(_resp(refreshAfterInSeconds=86400, disconnectAfterInSeconds=300.0))
    assert result.refresh_after_seconds == 86400 and result.disconnect_after_seconds == 300
    assert isinstance(result.disconnect_after_seconds, int)


def test_stringified_resource_list_is_not_an_arn():
    """A Resource that is a JSON list written as one string is refused as not an ARN, with AWS's message."""
    bad = '["arn:aws:iot:eu-west-2:123456789012:client/xxxx"]'
    policy = {"Version": "2012-10-17", "Statement": [{"Action": "iot:Connect", "Effect": "Allow", "Resource": bad}]}
    reason = _reason(_resp(policyDocuments=[policy]))
    assert f"Policy document is Malformed: The resource {bad} is not in valid ARN format" in reason


@pytest.mark.parametrize("resource", ["topic/foo", "arn:aws:iot:us-west-2:123", "aws:iot:a:b:c:d", "arn::iot:r:a:x",
                                      "arn:aws:iot:r:a:"])
def test_non_arn_resources_rejected(resource):
    policy = {"Statement": {"Action": "iot:Connect", "Effect": "Allow", "Resource": [resource]}}
    assert f"The resource {resource} is not in valid ARN format" in _reason(_resp(policyDocuments=[policy]))


def test_star_resource_and_single_statement_object_accepted():
    policy = {"Statement": {"Action": ["iot:Connect", "iot:Publish"], "Effect": "Deny", "Resource": "*"}}
    assert parse_authorizer_response(_resp(policyDocuments=[policy])).policies == [policy]


@pytest.mark.parametrize("statement, field", [
    ({"Action": "iot:Publish", "Effect": "allow", "Resource": "*"}, "Effect"),
    ({"Action": "iot:Publish", "Resource": "*"}, "Effect"),
    ({"Effect": "Allow", "Resource": "*"}, "Action"),
    ({"Effect": "Allow", "Action": "iot:Publish"}, "Resource"),
    ({"Effect": "Allow", "Action": [], "Resource": "*"}, "Action"),
    ({"Effect": "Allow", "Action": 5, "Resource": "*"}, "Action"),
    ({"Effect": "Allow", "Action": "Publish", "Resource": "*"}, "action Publish"),
    ({"Effect": "Allow", "Action": "iot:Publish", "Resource": "*", "Condition": "x"}, "Condition"),
])
def test_malformed_statements(statement, field):
    reason = _reason(_resp(policyDocuments=[{"Version": "2012-10-17", "Statement": [statement]}]))
    assert reason.startswith("Policy document is Malformed") and field in reason


@pytest.mark.parametrize("doc, field", [
    ("{not json", "not valid JSON"), (42, "policy object"), ({"Version": "2012-10-17"}, "Statement"),
    ({"Statement": []}, "Statement"), ({"Version": "2020-01-01", "Statement": []}, "Version"),
])
def test_malformed_policy_documents(doc, field):
    reason = _reason(_resp(policyDocuments=[POLICY, doc]))
    assert "policyDocuments[1]" in reason and field in reason


def test_unknown_fields_like_context_are_ignored():
    assert parse_authorizer_response(_resp(context={"a": 1})).principal_id == "xxxxxxxx"


# ------------------------------------------------------------------- evaluation

def _pol(*statements) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _allow(action, resource) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def _deny(action, resource) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


T = lambda topic: topic_arn(REGION, ACCOUNT, topic)  # noqa: E731


def test_arn_helpers():
    assert client_arn(REGION, ACCOUNT, "dev1") == "arn:aws:iot:us-west-2:123456789012:client/dev1"
    assert topicfilter_arn(REGION, ACCOUNT, "a/+/#") == "arn:aws:iot:us-west-2:123456789012:topicfilter/a/+/#"


def test_exact_match_allows():
    d = evaluate([_pol(_allow("iot:Publish", T("a/b")))], "iot:Publish", T("a/b"))
    assert d.allowed and d.effect == "Allow" and d.reason == "allowed by statement 1 of policy 1"
    assert (d.policy_index, d.statement_index) == (0, 0) and d.statement["Resource"] == T("a/b")


def test_tutorial_star_policy_allows_publish():
    policy = _pol(_allow("iot:*", f"arn:aws:iot:us-west-2:{ACCOUNT}:*"))
    assert evaluate([policy], "iot:Publish", T("test/cust-auth/topic")).allowed
    assert evaluate([policy], "iot:Connect", client_arn(REGION, ACCOUNT, "c")).allowed
    assert not evaluate([policy], "iot:Publish", topic_arn("eu-west-1", ACCOUNT, "t")).allowed


def test_allow_on_another_topic_is_implicit_deny():
    d = evaluate([_pol(_allow("iot:Publish", T("other")))], "iot:Publish", T("mine"))
    assert not d.allowed and d.effect is None and d.statement is None
    assert d.reason == f"no statement allows iot:Publish on {T('mine')}"


def test_empty_policies_deny():
    assert not evaluate([], "iot:Connect", client_arn(REGION, ACCOUNT, "c")).allowed


def test_deny_overrides_allow_in_any_order():
    allow = _pol(_allow("iot:*", "*"))
    deny = _pol(_allow("iot:Connect", "*"), _deny("iot:Publish", T("secret/*")))
    for policies, p_index in (([allow, deny], 1), ([deny, allow], 0)):
        d = evaluate(policies, "iot:Publish", T("secret/x"))
        assert not d.allowed and d.effect == "Deny"
        assert d.reason == f"explicitly denied by statement 2 of policy {p_index + 1}"
        assert (d.policy_index, d.statement_index) == (p_index, 1)
    assert evaluate([allow, deny], "iot:Publish", T("public/x")).allowed


def test_question_mark_matches_exactly_one_char():
    policies = [_pol(_allow("iot:Publish", T("room?/temp")))]
    assert evaluate(policies, "iot:Publish", T("room1/temp")).allowed
    assert not evaluate(policies, "iot:Publish", T("room12/temp")).allowed
    assert not evaluate(policies, "iot:Publish", T("room/temp")).allowed


def test_star_crosses_slashes():
    policies = [_pol(_allow("iot:Publish", T("a/*")))]
    assert evaluate(policies, "iot:Publish", T("a/b/c/d")).allowed
    assert not evaluate(policies, "iot:Publish", T("b/a/c")).allowed


def test_mqtt_wildcards_are_literal():
    policies = [_pol(_allow("iot:Subscribe", topicfilter_arn(REGION, ACCOUNT, "a/+/c")),
                     _allow("iot:Publish", T("x/#")))]
    assert evaluate(policies, "iot:Subscribe", topicfilter_arn(REGION, ACCOUNT, "a/+/c")).allowed
    assert not evaluate(policies, "iot:Subscribe", topicfilter_arn(REGION, ACCOUNT, "a/b/c")).allowed
    assert evaluate(policies, "iot:Publish", T("x/#")).allowed
    assert not evaluate(policies, "iot:Publish", T("x/y")).allowed


def test_actions_case_insensitive_resources_case_sensitive():
    policies = [_pol(_allow("IOT:publish", T("Room")))]
    assert evaluate(policies, "iot:Publish", T("Room")).allowed
    assert not evaluate(policies, "iot:Publish", T("room")).allowed


def test_client_id_variable_substitution_and_missing_variable():
    policies = [_pol(_allow("iot:Publish", T("devices/${iot:ClientId}/*")))]
    assert evaluate(policies, "iot:Publish", T("devices/dev1/temp"), {"iot:ClientId": "dev1"}).allowed
    assert not evaluate(policies, "iot:Publish", T("devices/dev2/temp"), {"iot:ClientId": "dev1"}).allowed
    d = evaluate(policies, "iot:Publish", T("devices/dev1/temp"))
    assert not d.allowed and "iot:ClientId" in d.reason and "no value" in d.reason


def test_variable_values_are_literal_not_wildcards():
    policies = [_pol(_allow("iot:Publish", T("devices/${iot:ClientId}")))]
    assert not evaluate(policies, "iot:Publish", T("devices/dev1"), {"iot:ClientId": "*"}).allowed
    assert evaluate(policies, "iot:Publish", T("devices/*"), {"iot:ClientId": "*"}).allowed


def test_missing_variable_in_deny_does_not_deny():
    policies = [_pol(_allow("iot:*", "*"), _deny("iot:Publish", T("${aws:SourceIp}/*")))]
    assert evaluate(policies, "iot:Publish", T("1.2.3.4/x")).allowed
    assert not evaluate(policies, "iot:Publish", T("1.2.3.4/x"), {"aws:SourceIp": "1.2.3.4"}).allowed


def test_special_character_variables_and_default_value():
    policies = [_pol(_allow("iot:Publish", T("lit${*}star")), _allow("iot:Publish", T("q$(?)")),
                     _allow("iot:Publish", T("u/${aws:username, 'anon'}")))]
    assert evaluate(policies, "iot:Publish", T("lit*star")).allowed
    assert not evaluate(policies, "iot:Publish", T("litXstar")).allowed
    assert evaluate(policies, "iot:Publish", T("q?")).allowed
    assert not evaluate(policies, "iot:Publish", T("qx")).allowed
    assert evaluate(policies, "iot:Publish", T("u/anon")).allowed


def test_list_valued_action_and_resource():
    policies = [_pol(_allow(["iot:Connect", "iot:Publish"], [T("a"), client_arn(REGION, ACCOUNT, "c1")]))]
    assert evaluate(policies, "iot:Publish", T("a")).allowed
    assert evaluate(policies, "iot:Connect", client_arn(REGION, ACCOUNT, "c1")).allowed
    assert not evaluate(policies, "iot:Subscribe", T("a")).allowed
    assert not evaluate(policies, "iot:Publish", T("b")).allowed


def test_single_statement_object_form_and_json_string_policy():
    policy = {"Version": "2012-10-17", "Statement": _allow("iot:Publish", T("a"))}
    assert evaluate([policy], "iot:Publish", T("a")).allowed
    assert evaluate([json.dumps(policy)], "iot:Publish", T("a")).allowed


def test_not_action_and_not_resource():
    policies = [_pol({"Effect": "Allow", "NotAction": "iot:Subscribe", "NotResource": T("private/*")})]
    assert evaluate(policies, "iot:Publish", T("public")).allowed
    assert not evaluate(policies, "iot:Subscribe", T("public")).allowed
    assert not evaluate(policies, "iot:Publish", T("private/x")).allowed


def test_supported_condition():
    st = _allow("iot:Connect", "*") | {"Condition": {"StringLike": {"iot:ClientId": "dev-*"}}}
    assert evaluate([_pol(st)], "iot:Connect", "c", {"iot:ClientId": "dev-7"}).allowed
    d = evaluate([_pol(st)], "iot:Connect", "c", {"iot:ClientId": "bad"})
    assert not d.allowed and "Condition is not met" in d.reason


def test_unsupported_condition_skips_statement_and_says_so():
    st = _allow("iot:Connect", "*") | {"Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
    d = evaluate([_pol(st)], "iot:Connect", "c", {"aws:SourceIp": "10.1.1.1"})
    assert not d.allowed and "IpAddress" in d.reason and "not matching" in d.reason

