"""The device side end to end: HTTPS publish with custom auth → decision → real MQTT delivery."""
from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


ROOT = Path(__file__).resolve().parents[1]
TUTORIAL_HANDLER = (ROOT / "functions" / "custom_auth" / "lambda_function.py").read_text()

# One configurable handler: it records every event it gets, then behaves as MODE says.
PROBE = '''
import json, os, time
def lambda_handler(event, context):
    with open(os.environ["EVENTS_FILE"], "a") as fh:
        fh.write(json.dumps(event) + "\\n")
    mode = os.environ.get("MODE", "policy")
    if mode == "raise":
        raise RuntimeError("authorizer exploded")
    if mode == "hang":
        time.sleep(30)
    if mode == "exit":
        os._exit(3)
    if mode == "malformed":
        return {"isAuthenticated": "yes", "principalId": "x", "policyDocuments": []}
    principal = "user@example.com" if mode == "symbols" else "probe"
    return {"isAuthenticated": mode != "unauthenticated", "principalId": principal,
            "policyDocuments": json.loads(os.environ["POLICY"]),
            "disconnectAfterInSeconds": 3600, "refreshAfterInSeconds": 600}
'''


def sign(key, token: str) -> str:
    return base64.b64encode(key.sign(token.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def policy(*statements) -> str:
    return json.dumps([{"Version": "2012-10-17", "Statement": list(statements)}])


def statement(effect: str, resource: str, action: str = "iot:Publish") -> dict:
    return {"Effect": effect, "Action": action, "Resource": resource}


@pytest.fixture(scope="module")
def data(settings, iot_logging):
    return {"base": f"https://{settings.data_endpoint}", "verify": str(settings.ca_bundle),
            "topic_arn": f"arn:aws:iot:{settings.region}:{settings.account_id}:topic/"}


@pytest.fixture(scope="module")
def tutorial(deployer, rsa_key):
    """The workbook's own handler behind a signing authorizer, as in the tutorial."""
    fn = deployer.function(TUTORIAL_HANDLER)
    name, arn = deployer.authorizer(fn, rsa_key[1])
    return name


class Probe:
    def __init__(self, deployer, tmp: Path, public_pem, *, mode="policy", policy_json=None, timeout=3,
                 permit=True, caching=False, status="ACTIVE"):
        self.events_file = tmp / f"events-{uuid.uuid4().hex[:6]}.jsonl"
        self.events_file.touch()
        env = {"EVENTS_FILE": str(self.events_file), "MODE": mode,
               "POLICY": policy_json or policy(statement("Allow", "arn:aws:iot:*:*:*"))}
        self.function_arn = deployer.function(PROBE, timeout=timeout, environment=env)
        self.name, self.arn = deployer.authorizer(self.function_arn, public_pem, permit=permit, caching=caching,
                                                  status=status)

        self.iot = deployer.iot

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.events_file.read_text().splitlines()]

    def delete(self) -> None:
        """AWS allows only a few authorizers per account: deactivate and delete this one."""
        self.iot.update_authorizer(authorizerName=self.name, status="INACTIVE")
        self.iot.delete_authorizer(authorizerName=self.name)


@pytest.fixture
def probe(deployer, rsa_key, tmp_path):
    made: list[Probe] = []  # deleted at the end (or by the test itself)

    def make(**kw) -> Probe:
        made.append(Probe(deployer, tmp_path, kw.pop("public_pem", rsa_key[1]), **kw))
        return made[-1]

    yield make
    for p in made:
        try:
            p.delete()
        except deployer.iot.exceptions.ResourceNotFoundException:
            pass  # the test deleted it already


def publish(data, topic, body=b'{"temperature": 40}', *, authorizer, token="tokenKeyValue", signature=None,
            query="", session=None, headers=None):
    h = {"x-amz-customauthorizer-name": authorizer, "tokenKeyName": token}
    if signature is not None:
        h["x-amz-customauthorizer-signature"] = signature
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None}
    sender = session or requests
    return sender.post(f"{data['base']}/topics/{topic}?qos=1{query}", data=body, headers=h, verify=data["verify"],
                       timeout=30)


def unique_topic() -> str:
    return f"test/cust-auth/{uuid.uuid4().hex[:8]}"


def assert_forbidden(resp):
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["message"] == "Forbidden" and uuid.UUID(body["traceId"])


def after_sentinel(sub, data, tutorial, rsa_key) -> list[bytes]:
    """Publish an allowed message to the subscription's topic and wait for it: the payloads that reached the
    subscriber by then, in order. Whatever was refused before it had its chance to arrive first."""
    ok = publish(data, sub.topic_filter, b"sentinel", authorizer=tutorial,
                 signature=sign(rsa_key[0], "tokenKeyValue"), query="&actionToken=allow")
    assert ok.status_code == 200, ok.text
    return [m.payload for m in sub.wait_for(1, timeout=10)]


def assert_still_serving(data, tutorial, rsa_key, settings):
    topic = unique_topic()
    with settings.watch(topic) as sub:
        ok = publish(data, topic, b"alive", authorizer=tutorial, signature=sign(rsa_key[0], "tokenKeyValue"),
                     query="&actionToken=allow")
        assert ok.status_code == 200, ok.text
        assert [m.payload for m in sub.wait_for(1, timeout=10)] == [b"alive"]


# --- the tutorial's request ----------------------------------------------------------------------------

def test_allow_delivers_exact_bytes(data, tutorial, rsa_key, settings):
    topic = unique_topic()
    payload = b'{ "data_mode": "test", "vibration": 200, "temperature": 40 }\n\x00\xff'
    with settings.watch(topic) as sub:
        resp = publish(data, topic, payload, authorizer=tutorial, signature=sign(rsa_key[0], "tokenKeyValue"),
                       query="&actionToken=allow")
        assert resp.status_code == 200, resp.text
        assert resp.json()["message"] == "OK" and uuid.UUID(resp.json()["traceId"])
        got = sub.wait_for(1, timeout=10)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(topic, payload, 1)]


def test_allow_with_curl(data, tutorial, rsa_key, settings):
    topic = unique_topic()
    with settings.watch(topic) as sub:
        out = subprocess.run(
            ["curl", "--silent", "--show-error", "--cacert", data["verify"], "--request", "POST",
             f"{data['base']}/topics/{topic}?qos=0&actionToken=allow",
             "--header", f"x-amz-customauthorizer-name: {tutorial}",
             "--header", "tokenKeyName: tokenKeyValue",
             "--header", f"x-amz-customauthorizer-signature: {sign(rsa_key[0], 'tokenKeyValue')}",
             "--data-binary", '{"temperature": 40}', "--write-out", "\n%{http_code}"],
            capture_output=True, text=True, timeout=60)
        body, status = out.stdout.rsplit("\n", 1)
        assert status == "200", out.stderr
        assert json.loads(body)["message"] == "OK"
        assert [m.payload for m in sub.wait_for(1, timeout=10)] == [b'{"temperature": 40}']


def test_tampered_signature_is_forbidden_without_invoking(data, probe, tutorial, rsa_key, settings):
    p = probe()
    topic = unique_topic()
    good = sign(rsa_key[0], "tokenKeyValue")
    tampered = good[:40] + ("A" if good[40] != "A" else "B") + good[41:]
    with settings.watch(topic) as sub:
        resp = publish(data, topic, authorizer=p.name, signature=tampered)
        assert_forbidden(resp)
        assert after_sentinel(sub, data, tutorial, rsa_key) == [b"sentinel"]
    assert p.events() == []  # the function never ran
    entry = latest_iot_log(settings, resp.json()["traceId"])
    assert entry["status"] == "Failure" and entry["reason"] == "AUTHENTICATION_FAILURE"
    assert entry["sandbox"]["signatureVerified"] is False and entry["sandbox"]["lambdaInvoked"] is False


def test_deny_is_forbidden_and_nothing_arrives(data, tutorial, rsa_key, settings):
    topic = unique_topic()
    with settings.watch(topic) as sub:
        resp = publish(data, topic, authorizer=tutorial, signature=sign(rsa_key[0], "tokenKeyValue"),
                       query="&actionToken=deny")
        assert_forbidden(resp)
        assert after_sentinel(sub, data, tutorial, rsa_key) == [b"sentinel"]
    entry = latest_iot_log(settings, resp.json()["traceId"])
    assert entry["reason"] == "AUTHORIZATION_FAILURE" and entry["sandbox"]["decidedBy"]["effect"] == "Deny"


def latest_iot_log(settings, trace_id: str) -> dict:
    logs = settings.client("logs")
    events = logs.filter_log_events(logGroupName="AWSIotLogsV2", filterPattern=f'"{trace_id}"')["events"]
    assert len(events) == 1, events
    return json.loads(events[0]["message"])


# --- the event the function receives ---------------------------------------------------------------------

def test_event_is_the_documented_http_event(data, probe, rsa_key, settings):
    p = probe()
    resp = publish(data, unique_topic(), authorizer=p.name, signature=sign(rsa_key[0], "tokenKeyValue"),
                   query="&actionToken=allow")
    assert resp.status_code == 200, resp.text
    (event,) = p.events()
    assert event["token"] == "tokenKeyValue" and event["signatureVerified"] is True
    assert set(event["protocols"]) == {"tls", "http"}
    assert event["protocolData"]["tls"]["serverName"] == "localhost"
    assert event["protocolData"]["http"]["queryString"] == "?qos=1&actionToken=allow"
    assert event["protocolData"]["http"]["headers"]["tokenkeyname"] == "tokenKeyValue"
    assert uuid.UUID(event["connectionMetadata"]["id"])
    assert "mqtt" not in event["protocolData"]


def test_credentials_as_query_parameters_need_url_encoding(data, probe, rsa_key):
    p = probe()
    # find a token whose signature contains '+' or '/', which break when not URL-encoded
    token = next(t for t in (f"tok{i}" for i in range(200)) if "+" in sign(rsa_key[0], t))
    signature = sign(rsa_key[0], token)
    query = f"&x-amz-customauthorizer-name={p.name}&tokenKeyName={token}"
    url = f"{data['base']}/topics/{unique_topic()}?qos=0{query}"
    ok = requests.post(url + f"&x-amz-customauthorizer-signature={quote(signature, safe='')}", data=b"q",
                       verify=data["verify"], timeout=30)
    assert ok.status_code == 200, ok.text
    raw = requests.post(url + f"&x-amz-customauthorizer-signature={signature}", data=b"q", verify=data["verify"],
                        timeout=30)
    assert_forbidden(raw)


# --- every refusal, and the sandbox keeps serving ---------------------------------------------------------

REFUSALS = {
    "unknown authorizer": dict(authorizer="no-such-authorizer"),
    "missing token": dict(token=None),
    "missing signature": dict(signature=None),
    "other key": dict(signature="OTHER"),
    "malformed base64": dict(signature="not base64!!"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_credential_refusals(case, data, probe, rsa_key, tutorial, settings):
    p = probe()
    kw = dict(authorizer=p.name, token="tokenKeyValue", signature=sign(rsa_key[0], "tokenKeyValue"))
    kw.update(REFUSALS[case])
    if kw["signature"] == "OTHER":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kw["signature"] = sign(other, "tokenKeyValue")
    assert_forbidden(publish(data, unique_topic(), **kw))
    assert p.events() == []
    assert_still_serving(data, tutorial, rsa_key, settings)


def test_inactive_authorizer(data, probe, rsa_key, tutorial, settings):
    p = probe(status="INACTIVE")
    assert_forbidden(publish(data, unique_topic(), authorizer=p.name, signature=sign(rsa_key[0], "tokenKeyValue")))
    assert p.events() == []


def test_signing_disabled_needs_no_signature(data, probe, settings):
    p = probe(public_pem=None)
    resp = publish(data, unique_topic(), authorizer=p.name, token=None)
    assert resp.status_code == 200, resp.text
    (event,) = p.events()
    assert event["signatureVerified"] is False and "token" not in event


def test_missing_permission(data, probe, rsa_key, tutorial, settings):
    p = probe(permit=False)
    resp = publish(data, unique_topic(), authorizer=p.name, signature=sign(rsa_key[0], "tokenKeyValue"))
    assert_forbidden(resp)
    assert p.events() == []
    assert "add-permission" in latest_iot_log(settings, resp.json()["traceId"])["details"]


@pytest.mark.parametrize("mode", ["raise", "hang", "exit", "malformed", "symbols", "unauthenticated"])
def test_function_failures(mode, data, probe, rsa_key, tutorial, settings):
    p = probe(mode=mode, timeout=1)
    resp = publish(data, unique_topic(), authorizer=p.name, signature=sign(rsa_key[0], "tokenKeyValue"))
    assert_forbidden(resp)
    assert len(p.events()) == 1  # it was invoked once
    entry = latest_iot_log(settings, resp.json()["traceId"])
    assert entry["sandbox"]["lambdaInvoked"] is True
    assert_still_serving(data, tutorial, rsa_key, settings)


# --- policy evaluation ------------------------------------------------------------------------------------

def test_policy_cases(data, probe, rsa_key, settings):
    arn = data["topic_arn"]
    topic = unique_topic()
    cases = [
        ("allow on another topic", policy(statement("Allow", arn + "other/topic")), 403),
        ("deny overrides allow", policy(statement("Allow", arn + "*"), statement("Deny", arn + topic)), 403),
        ("wildcard match", policy(statement("Allow", arn + "test/cust-auth/*")), 200),
        ("single-char wildcard", policy(statement("Allow", arn + topic[:-1] + "?")), 200),
        ("no match", policy(statement("Allow", arn + "test/other/*")), 403),
        ("subscribe only", policy(statement("Allow", arn + "*", action="iot:Subscribe")), 403),
    ]
    for label, doc, expected in cases:
        p = probe(policy_json=doc)
        resp = publish(data, topic, authorizer=p.name, signature=sign(rsa_key[0], "tokenKeyValue"))
        assert resp.status_code == expected, (label, resp.text)
        p.delete()


def test_retain_needs_retain_publish(data, probe, rsa_key, settings):
    arn = data["topic_arn"]
    topic = unique_topic()
    publish_only = probe(policy_json=policy(statement("Allow", arn + "*")))
    resp = publish(data, topic, b"kept", authorizer=publish_only.name, signature=sign(rsa_key[0], "tokenKeyValue"),
                   query="&retain=true")
    assert_forbidden(resp)
    both = probe(policy_json=policy(statement("Allow", arn + "*", action="iot:*")))
    resp = publish(data, topic, b"kept", authorizer=both.name, signature=sign(rsa_key[0], "tokenKeyValue"),
                   query="&retain=true")
    assert resp.status_code == 200, resp.text
    with settings.watch(topic) as late:
        got = late.wait_for(1, timeout=10)
    assert [(m.payload, m.retain) for m in got] == [(b"kept", True)]


def test_malformed_requests_get_iot_data_errors(data, tutorial, rsa_key):
    sig = sign(rsa_key[0], "tokenKeyValue")
    bad_qos = requests.post(f"{data['base']}/topics/a?qos=2", data=b"x", verify=data["verify"], timeout=30,
                            headers={"x-amz-customauthorizer-name": tutorial, "tokenKeyName": "tokenKeyValue",
                                     "x-amz-customauthorizer-signature": sig})
    assert bad_qos.status_code == 400 and "qos" in bad_qos.json()["message"]
    too_big = publish(data, unique_topic(), b"x" * (128 * 1024 + 1), authorizer=tutorial, signature=sig)
    assert too_big.status_code == 413
    wildcard = publish(data, "test/%23", authorizer=tutorial, signature=sig)
    assert wildcard.status_code == 400


# --- enableCachingForHttp ---------------------------------------------------------------------------------

@pytest.mark.parametrize("caching, expected_invocations", [(True, 1), (False, 20)])
def test_caching_on_keep_alive(caching, expected_invocations, data, probe, rsa_key):
    p = probe(caching=caching)
    sig = sign(rsa_key[0], "tokenKeyValue")
    with requests.Session() as session:
        for _ in range(20):
            assert publish(data, unique_topic(), authorizer=p.name, signature=sig, session=session).status_code == 200
    assert len(p.events()) == expected_invocations


# --- a Node.js authorizer, as in AWS's tutorial (our own code) --------------------------------------------

NODE_HANDLER = r"""
// Allow only when the HTTP query string says actionToken=allow; Deny otherwise (and for test-invoke).
exports.handler = function (event, context, callback) {
  console.log('event ' + JSON.stringify(event));
  const [, , , region, account] = context.invokedFunctionArn.split(':');
  let effect = 'Deny';
  if (event.protocolData && event.protocolData.http) {
    const params = new URLSearchParams(event.protocolData.http.queryString || '');
    if ((params.get('actionToken') || '').toLowerCase() === 'allow') effect = 'Allow';
  }
  callback(null, {
    isAuthenticated: true,
    principalId: 'nodeAuthorizer',
    disconnectAfterInSeconds: 3600,
    refreshAfterInSeconds: 600,
    policyDocuments: [{Version: '2012-10-17',
      Statement: [{Action: 'iot:*', Effect: effect, Resource: `arn:aws:iot:${region}:${account}:*`}]}],
  });
};
"""


@pytest.mark.skipif(__import__("shutil").which("node") is None, reason="Node.js is not installed")
def test_node_handler_through_test_invoke_and_publish(deployer, rsa_key, data, settings):
    fn = deployer.function(NODE_HANDLER, runtime="nodejs20.x", filename="index.js", handler="index.handler")
    name, _ = deployer.authorizer(fn, rsa_key[1])
    iot = deployer.iot
    try:
        sig = sign(rsa_key[0], "tokenKeyValue")
        bare = iot.test_invoke_authorizer(authorizerName=name, token="tokenKeyValue", tokenSignature=sig)
        assert bare["principalId"] == "nodeAuthorizer"
        assert json.loads(bare["policyDocuments"][0])["Statement"][0]["Effect"] == "Deny"
        http = iot.test_invoke_authorizer(authorizerName=name, token="tokenKeyValue", tokenSignature=sig,
                                          httpContext={"headers": {}, "queryString": "?actionToken=allow"})
        statement = json.loads(http["policyDocuments"][0])["Statement"][0]
        assert statement["Effect"] == "Allow" and statement["Resource"] == "arn:aws:iot:us-west-2:123456789012:*"
        topic = unique_topic()
        with settings.watch(topic) as sub:
            ok = publish(data, topic, b"from node", authorizer=name, signature=sig, query="&actionToken=allow")
            assert ok.status_code == 200, ok.text
            assert [m.payload for m in sub.wait_for(1, timeout=10)] == [b"from node"]
    finally:
        iot.update_authorizer(authorizerName=name, status="INACTIVE")
        iot.delete_authorizer(authorizerName=name)
