"""helpers.cleanup against a real sandbox: exactly the recorded resources go, in a safe order, idempotently."""
from __future__ import annotations

import json

import botocore.exceptions
import pytest

from helpers import cleanup, keys
from helpers.workbook import FUNCTION_DIR, zip_function
from tests.conftest import TRUST_LAMBDA

POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"



def make_role(wb, name: str, record: bool = True) -> str:
    arn = wb.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_LAMBDA)["Role"]["Arn"]
    wb.client("iam").attach_role_policy(RoleName=name, PolicyArn=POLICY_ARN)
    if record:
        wb.record("iam-role", name)
        wb.record("iam-role-policy", f"{name}/{POLICY_ARN}")
    return arn


def make_function(wb, name: str, role_arn: str, record: bool = True) -> str:
    awslambda = wb.client("lambda")
    arn = awslambda.create_function(FunctionName=name, Runtime="python3.12", Role=role_arn,
                                    Handler="lambda_function.lambda_handler",
                                    Code={"ZipFile": zip_function(FUNCTION_DIR)})["FunctionArn"]
    awslambda.get_waiter("function_active_v2").wait(FunctionName=name)
    if record:
        wb.record("lambda-function", name)
    return arn


def make_authorizer(wb, name: str, function_arn: str, public_pem: str, statement_id: str, record: bool = True):
    arn = wb.client("iot").create_authorizer(
        authorizerName=name, authorizerFunctionArn=function_arn, tokenKeyName="tokenKeyName",
        tokenSigningPublicKeys={"FirstKey": public_pem}, status="ACTIVE", signingDisabled=False)["authorizerArn"]
    if record:
        wb.record("iot-authorizer", name)
    function_name = function_arn.rsplit(":", 1)[1]
    wb.client("lambda").add_permission(FunctionName=function_name, StatementId=statement_id,
                                       Action="lambda:InvokeFunction", Principal="iot.amazonaws.com", SourceArn=arn)
    if record:
        wb.record("lambda-permission", f"{function_name}/{statement_id}")
    return arn


def build_everything(wb):
    """What notebooks 01-05 create, recorded in their order, the authorizer ACTIVE and the default."""
    names = wb.names
    role_arn = make_role(wb, names.role)
    function_arn = make_function(wb, names.function, role_arn)
    pair = keys.generate_key_pair(wb.keys_dir, bits=2048)
    wb.record("key-pair", str(wb.keys_dir))
    make_authorizer(wb, names.authorizer, function_arn, pair.public_key_pem, names.statement_id)
    wb.client("iot").set_default_authorizer(authorizerName=names.authorizer)
    return pair


def error_code(call, **kwargs) -> str | None:
    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    return None


def gone(wb) -> dict[str, str | None]:
    names = wb.names
    return {
        "authorizer": error_code(wb.client("iot").describe_authorizer, authorizerName=names.authorizer),
        "function": error_code(wb.client("lambda").get_function, FunctionName=names.function),
        "role": error_code(wb.client("iam").get_role, RoleName=names.role),
    }


def test_cleanup_deletes_everything_recorded_in_a_safe_order(wb):
    pair = build_everything(wb)
    steps = cleanup.cleanup(wb)
    assert [(s.kind, s.outcome) for s in steps] == [
        ("iot-authorizer", "deleted"), ("lambda-permission", "deleted"), ("lambda-function", "deleted"),
        ("iam-role-policy", "deleted"), ("iam-role", "deleted"), ("key-pair", "deleted")]
    assert gone(wb) == {"authorizer": "ResourceNotFoundException", "function": "ResourceNotFoundException",
                        "role": "NoSuchEntity"}
    assert error_code(wb.client("iot").describe_default_authorizer) == "ResourceNotFoundException"
    assert not pair.private_key_path.exists() and not pair.public_key_path.exists()
    assert wb.state.resources() == []
    table = cleanup.format_steps(steps)
    assert len(table.splitlines()) == 1 + len(steps) and wb.names.authorizer in table

    again = cleanup.cleanup(wb)  # nothing left recorded: nothing to do, nothing raised
    assert again == [] and "Nothing recorded" in cleanup.format_steps(again)


def test_resources_deleted_elsewhere_are_already_gone_and_forgotten(wb):
    build_everything(wb)
    recorded = wb.state.resources()
    assert cleanup.cleanup(wb)[-1].outcome == "deleted"
    for kind, resource_id in recorded:  # as if the state file still had them (e.g. a restored backup)
        wb.record(kind, resource_id)
    steps = cleanup.cleanup(wb)
    assert [s.outcome for s in steps] == ["already gone"] * 6
    assert wb.state.resources() == []


def test_unrecorded_resources_with_similar_names_survive(wb):
    names = wb.names
    build_everything(wb)
    role_arn = make_role(wb, names.role + "-copy", record=False)
    function_arn = make_function(wb, names.function + "-copy", role_arn, record=False)
    make_authorizer(wb, names.authorizer + "-copy", function_arn, keys.load_key_pair(wb.keys_dir).public_key_pem,
                    names.statement_id + "-copy", record=False)
    other_pair = keys.generate_key_pair(wb.keys_dir, name="other", bits=2048)

    assert all(s.outcome == "deleted" for s in cleanup.cleanup(wb))
    iot, awslambda, iam = wb.client("iot"), wb.client("lambda"), wb.client("iam")
    assert iot.describe_authorizer(authorizerName=names.authorizer + "-copy")["authorizerDescription"]["status"] == "ACTIVE"
    policy = json.loads(awslambda.get_policy(FunctionName=names.function + "-copy")["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == [names.statement_id + "-copy"]
    assert iam.get_role(RoleName=names.role + "-copy")["Role"]["Arn"] == role_arn
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=names.role + "-copy")["AttachedPolicies"]] \
        == [POLICY_ARN]
    assert other_pair.private_key_path.exists() and other_pair.public_key_path.exists()
    # tidy up the survivors (AWS allows only a few authorizers per account)
    iot.update_authorizer(authorizerName=names.authorizer + "-copy", status="INACTIVE")
    iot.delete_authorizer(authorizerName=names.authorizer + "-copy")


def test_partial_records_after_an_interrupted_run(wb):
    names = wb.names
    role_arn = wb.client("iam").create_role(RoleName=names.role, AssumeRolePolicyDocument=TRUST_LAMBDA)["Role"]["Arn"]
    wb.record("iam-role", names.role)
    make_function(wb, names.function, role_arn)  # notebook 01 stopped here
    steps = cleanup.cleanup(wb)
    assert [(s.kind, s.outcome) for s in steps] == [("lambda-function", "deleted"), ("iam-role", "deleted")]
    assert gone(wb) == {"authorizer": "ResourceNotFoundException", "function": "ResourceNotFoundException",
                        "role": "NoSuchEntity"}


def test_a_failure_is_reported_kept_and_retried(wb):
    names = wb.names
    make_role(wb, names.role, record=False)
    wb.record("iam-role", names.role)  # the policy attachment was never recorded, so IAM refuses
    (step,) = cleanup.cleanup(wb)
    assert step.outcome.startswith("failed: DeleteConflict:") and "detach" in step.outcome
    assert wb.state.resources() == [("iam-role", names.role)]  # kept for the next run

    wb.client("iam").detach_role_policy(RoleName=names.role, PolicyArn=POLICY_ARN)
    (step,) = cleanup.cleanup(wb)
    assert step.outcome == "deleted" and wb.state.resources() == []


def test_unknown_kinds_and_malformed_records_are_left_alone(wb):
    wb.record("iot-thing", "my-thing")
    wb.record("lambda-permission", "no-statement-id")
    steps = cleanup.cleanup(wb)
    assert [s.kind for s in steps] == ["lambda-permission", "iot-thing"]
    assert "FUNCTION_NAME/STATEMENT_ID" in steps[0].outcome and steps[0].outcome.startswith("failed: ")
    assert "does not know how to delete" in steps[1].outcome and "forget_resource" in steps[1].outcome
    assert len(wb.state.resources()) == 2


def test_dry_run_deletes_nothing(wb):
    pair = build_everything(wb)
    recorded = wb.state.resources()
    steps = cleanup.cleanup(wb, dry_run=True)
    assert [s.outcome for s in steps] == ["would delete"] * 6
    assert [s.kind for s in steps] == [kind for kind in cleanup.ORDER if kind != "iot-logging"]
    assert gone(wb) == {"authorizer": None, "function": None, "role": None}
    assert wb.client("iot").describe_default_authorizer()["authorizerDescription"]["authorizerName"] == wb.names.authorizer
    assert pair.private_key_path.exists() and wb.state.resources() == recorded
    assert all(s.outcome == "deleted" for s in cleanup.cleanup(wb))


def test_a_default_authorizer_of_someone_else_is_not_cleared(wb):
    names = wb.names
    build_everything(wb)
    iot = wb.client("iot")
    function_arn = wb.client("lambda").get_function(FunctionName=names.function)["Configuration"]["FunctionArn"]
    iot.create_authorizer(authorizerName=names.authorizer + "-theirs", authorizerFunctionArn=function_arn,
                          signingDisabled=True, status="ACTIVE")
    iot.set_default_authorizer(authorizerName=names.authorizer + "-theirs")
    assert all(s.outcome == "deleted" for s in cleanup.cleanup(wb))
    assert iot.describe_default_authorizer()["authorizerDescription"]["authorizerName"] == names.authorizer + "-theirs"
    iot.clear_default_authorizer()
    iot.update_authorizer(authorizerName=names.authorizer + "-theirs", status="INACTIVE")
    iot.delete_authorizer(authorizerName=names.authorizer + "-theirs")


def test_format_steps_is_one_aligned_line_per_step():
    steps = [cleanup.Step("iot-authorizer", "my-new-authorizer-abc123", "deactivate, delete", "deleted"),
             cleanup.Step("key-pair", str(cleanup.REPO_ROOT / ".workbook" / "keys"), "delete key files",
                          "failed: PermissionError")]
    lines = cleanup.format_steps(steps).splitlines()
    assert len(lines) == 3 and lines[0].split() == ["KIND", "RESOURCE", "ACTION", "OUTCOME"]
    assert lines[2].split(None, 1)[1].startswith(".workbook/keys ")  # shown relative to the repository
    assert len({line.index(word) for line, word in zip(lines, ("ACTION", "deactivate", "delete key"))}) == 1


def test_a_lost_state_file_orphans_nothing(wb, rsa_key, capsys):
    """state.json deleted mid-workshop: the next open says so, and clean-up finds and deletes everything."""
    from helpers import cleanup as cl
    from helpers.keys import key_paths
    from helpers.workbook import TAG_KEY, open_workbook

    names, iam, awslambda, iot = wb.names, wb.client("iam"), wb.client("lambda"), wb.client("iot")
    role_arn = iam.create_role(RoleName=names.role, AssumeRolePolicyDocument=TRUST_LAMBDA)["Role"]["Arn"]
    fn_arn = awslambda.create_function(FunctionName=names.function, Runtime="python3.12", Role=role_arn,
                                       Handler="lambda_function.lambda_handler",
                                       Code={"ZipFile": zip_function(FUNCTION_DIR)},
                                       Tags=wb.tags())["FunctionArn"]
    auth_arn = iot.create_authorizer(authorizerName=names.authorizer, authorizerFunctionArn=fn_arn,
                                     tokenKeyName="k", tokenSigningPublicKeys={"k1": rsa_key[1]},
                                     tags=[{"Key": TAG_KEY, "Value": wb.state.suffix}])["authorizerArn"]
    awslambda.add_permission(FunctionName=names.function, StatementId=names.statement_id,
                             Action="lambda:InvokeFunction", Principal="iot.amazonaws.com", SourceArn=auth_arn)
    private, public = key_paths(wb.keys_dir)
    public.parent.mkdir(parents=True, exist_ok=True)
    public.write_text(rsa_key[1])
    old_suffix = wb.state.suffix
    wb.state.path.unlink()  # the learner deletes .workbook/state.json

    capsys.readouterr()
    again = open_workbook()
    assert again.state.suffix != old_suffix
    note = capsys.readouterr().out
    assert "Note: Found" in note and old_suffix in note and "10-cleanup" in note
    orphans = cl.find_orphans(again)
    kinds = sorted(kind for kind, _ in orphans.resources)
    assert kinds == ["iam-role", "iot-authorizer", "key-pair", "lambda-function", "lambda-permission"], orphans
    assert cl.adopt(again, orphans) == 5
    steps = cl.cleanup(again)
    assert all(step.outcome == "deleted" for step in steps), cl.format_steps(steps)
    assert cl.find_orphans(again).resources == []
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_authorizer(authorizerName=names.authorizer)
    assert not public.exists()
