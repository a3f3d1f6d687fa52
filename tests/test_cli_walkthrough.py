"""The tutorial's command-line walkthrough, with the AWS CLI v1 and openssl, after one `eval`.

Each command's output lands in a file named after its step, so a failure says which step broke.
"""
from __future__ import annotations

import json
import os
import re
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


# --- The terminal lines the READMEs and notebooks show, as written, from a fresh shell ----------------------
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
DOCS = [ROOT / "README.md", ROOT / "helpers" / "sandbox" / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "notebooks" / "src").glob("*.py"))]


def documented_lines(pattern: str) -> list[tuple[str, str]]:
    """(file, line) for every documented line that runs ``pattern`` (notebook sources: their markdown)."""
    found = []
    for path in DOCS:
        for line in path.read_text().splitlines():
            text = line[2:] if path.suffix == ".py" and line.startswith("# ") else line
            if path.suffix == ".py" and not line.startswith("#"):
                continue  # code, not prose: the notebooks run their own code
            if pattern in text:
                found.append((path.relative_to(ROOT).as_posix(), text.strip()))
    return found


def test_documented_module_commands_name_the_venvs_python():
    """A fresh shell's `python` (if there is one) lacks the pinned packages: `No module named 'wsproto'`."""
    lines = documented_lines("-m helpers.")
    assert lines, "the READMEs show the sandbox's terminal commands"
    bare = [(f, t) for f, t in lines if re.search(r"(?<![/\w.])python3? -m helpers\.(?!doctor)", t)]
    assert not bare, f"write .venv/bin/python -m helpers...: {bare}"


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="no .venv: the documented lines name .venv/bin/python")
def test_the_sandbox_readmes_terminal_lines_work_as_written(tmp_path):
    """The sandbox README's first block, verbatim, in a shell whose PATH has no venv (as a new terminal)."""
    text = (ROOT / "helpers" / "sandbox" / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    lines = [line.split("  #")[0].rstrip() for line in block.splitlines() if line.strip()]
    assert lines[0].startswith('eval "$(.venv/bin/python -m helpers.sandbox start)"')
    script = ["set -o errexit -o pipefail -o nounset"]
    for line in lines:
        if "subscribe" in line or "--follow" in line:  # they run until stopped: running after 5 s is working
            script.append(f"timeout 5 {line} > /dev/null || test $? -eq 124")
        else:
            script.append(line)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(IOT_SANDBOX_HOME=str(tmp_path / "home"), HOME=str(tmp_path),
               PATH=os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                    if not p.startswith(str(ROOT / ".venv")) and p != str(Path(sys.executable).parent)))
    try:
        run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=180, stdin=subprocess.DEVNULL)
    finally:
        sandbox.stop(tmp_path / "home")
    assert run.returncode == 0, run.stderr[-2000:]
    assert '"Account": "123456789012"' in run.stdout


def test_the_readme_says_where_the_sandbox_differs_from_the_tutorial():
    readme = (ROOT / "README.md").read_text()
    assert "the endpoint\n    has a port" in readme and '--cacert "$AWS_CA_BUNDLE"' in readme
