"""The tutorial's command-line walkthrough, with the AWS CLI v1 and openssl, after one `eval`.

Each command's output lands in a file named after its step, so a failure says which step broke.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import sandbox

ROOT = Path(__file__).resolve().parents[1]
AWS = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")

SCRIPT = r"""
set -o errexit -o pipefail -o nounset
eval "$(python -m helpers.sandbox start --state-dir "$SANDBOX_HOME")"
cd "$WORK"
step() { local name=$1; shift; "$@" > "out/$name" 2> "out/$name.err"; }

step caller aws sts get-caller-identity
step role aws iam create-role --role-name custom-auth-function-role \
    --assume-role-policy-document file://trust.json
role_arn=$(python -c 'import json;print(json.load(open("out/role"))["Role"]["Arn"])')
step function aws lambda create-function --function-name custom-auth-function --runtime python3.12 \
    --handler lambda_function.lambda_handler --role "$role_arn" --zip-file fileb://function.zip
aws lambda wait function-active-v2 --function-name custom-auth-function
step invoke aws lambda invoke --function-name custom-auth-function --payload '{}' --log-type Tail out/invoke.json
function_arn=$(python -c 'import json;print(json.load(open("out/function"))["FunctionArn"])')

openssl genrsa -out private-key.pem 4096 2> /dev/null
openssl rsa -check -in private-key.pem -noout
openssl rsa -in private-key.pem -pubout -out public-key.pem 2> /dev/null
openssl pkey -inform PEM -pubin -in public-key.pem -noout

step authorizer aws iot create-authorizer --authorizer-name my-new-authorizer --token-key-name tokenKeyName \
    --status ACTIVE --no-signing-disabled --authorizer-function-arn "$function_arn" \
    --token-signing-public-keys FirstKey="$(cat public-key.pem)"
authorizer_arn=$(python -c 'import json;print(json.load(open("out/authorizer"))["authorizerArn"])')
step permission aws lambda add-permission --function-name custom-auth-function --principal iot.amazonaws.com \
    --action lambda:InvokeFunction --statement-id Id-1234 --source-arn "$authorizer_arn"
if aws lambda add-permission --function-name custom-auth-function --principal iot.amazonaws.com \
    --action lambda:InvokeFunction --statement-id Id-1234 --source-arn "$authorizer_arn" 2> out/conflict.err; then
  echo "a duplicate statement id was accepted" >&2; exit 1
fi
signature=$(echo -n tokenKeyValue | openssl dgst -sha256 -sign private-key.pem | openssl base64 -A)
step test_invoke aws iot test-invoke-authorizer --authorizer-name my-new-authorizer --token tokenKeyValue \
    --token-signature "$signature"
step test_invoke_http aws iot test-invoke-authorizer --authorizer-name my-new-authorizer --token tokenKeyValue \
    --token-signature "$signature" --http-context '{"headers":{},"queryString":"?actionToken=allow"}'
step endpoint aws iot describe-endpoint --output text --endpoint-type iot:Data-ATS
step list aws iot list-authorizers
if aws iot delete-authorizer --authorizer-name my-new-authorizer 2> out/delete_active.err; then
  echo "an ACTIVE authorizer was deleted" >&2; exit 1
fi
step deactivate aws iot update-authorizer --status INACTIVE --authorizer-name my-new-authorizer
step delete aws iot delete-authorizer --authorizer-name my-new-authorizer
step list_after aws iot list-authorizers
"""


@pytest.mark.skipif(AWS is None, reason="the AWS CLI v1 (requirements.txt) is not installed")
def test_tutorial_walkthrough_with_the_aws_cli(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "trust.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    shutil.make_archive(str(work / "function"), "zip", ROOT / "functions" / "custom_auth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(SANDBOX_HOME=str(home), WORK=str(work), HOME=str(tmp_path),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
               PYTHONPATH=str(ROOT))
    try:
        run = subprocess.run(["bash", "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300, stdin=subprocess.DEVNULL)
        out = work / "out"
        errors = {p.name: p.read_text() for p in out.glob("*.err") if p.read_text().strip()}
        assert run.returncode == 0, f"{run.stderr}\n{errors}"
    finally:
        sandbox.stop(home)

    def doc(name):
        return json.loads((out / name).read_text())

    assert doc("caller")["Account"] == sandbox.ACCOUNT_ID
    invoke = doc("invoke")
    assert invoke["StatusCode"] == 200 and "FunctionError" not in invoke
    assert "START RequestId" in __import__("base64").b64decode(invoke["LogResult"]).decode()
    assert json.loads((out / "invoke.json").read_text())["policyDocuments"]  # the handler's answer
    assert doc("authorizer")["authorizerArn"].endswith(":authorizer/my-new-authorizer")
    statement = json.loads(doc("permission")["Statement"])
    assert statement["Principal"] == {"Service": "iot.amazonaws.com"}
    assert "ResourceConflictException" in (out / "conflict.err").read_text()
    denied = doc("test_invoke")
    assert denied["isAuthenticated"] is True
    assert json.loads(denied["policyDocuments"][0])["Statement"][0]["Effect"] == "Deny"
    allowed = doc("test_invoke_http")
    assert json.loads(allowed["policyDocuments"][0])["Statement"][0]["Effect"] == "Allow"
    assert (out / "endpoint").read_text().strip().startswith("localhost:")
    assert [a["authorizerName"] for a in doc("list")["authorizers"]] == ["my-new-authorizer"]
    assert "INACTIVE" in (out / "delete_active.err").read_text()
    assert doc("list_after")["authorizers"] == []
