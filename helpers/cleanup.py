"""Notebook 10's plumbing: delete exactly what the workbook recorded, in a safe order.

Every notebook records what it creates (``wb.record(kind, id)``, kept in the state
file). :func:`cleanup` deletes those resources and nothing else, newest first
within each kind, and the kinds in the order AWS needs:

0. ``iot-logging`` (the logging options found before notebook 08 changed them): put back
   (``helpers.iot_logging.restore``), before the logging role goes;
1. ``iot-authorizer`` (its name): cleared as the default authorizer if it is the
   default, set INACTIVE (an ACTIVE authorizer cannot be deleted), then deleted;
2. ``lambda-permission`` (``FUNCTION_NAME/STATEMENT_ID``): removed from the function's policy;
3. ``lambda-function`` (its name): deleted;
4. ``iam-role-policy`` (``ROLE_NAME/POLICY_ARN``): detached from the role;
5. ``iam-role`` (its name): deleted (IAM refuses while policies are attached);
6. ``key-pair`` (its folder): the two key files deleted (``helpers.keys.key_paths``).

Notebook 09's MQTT devices add no kind of their own: they connect with clean sessions (nothing
is kept for them after they disconnect), publish nothing retained, and reuse notebook 08's
``iot-logging`` record and logging role (recorded by ``helpers.iot_logging.logging_role``, the
same call), so the kinds above cover them and :func:`find_orphans` already looks for that role.

It is safe to run again, and after a partial run: a resource that no longer
exists (``ResourceNotFoundException``, ``NoSuchEntity``, missing files) is
reported as "already gone" and forgotten; any other error is reported as
"failed: ..." and stays recorded, so the next run retries it. A kind the workbook
does not know is reported as failed and kept, never guessed at.

Usage:

>>> import tempfile, pathlib
>>> from helpers.state import WorkbookState
>>> tmp = tempfile.TemporaryDirectory()
>>> class Offline:  # dry runs make no AWS call, so no client is needed
...     state = WorkbookState.load(pathlib.Path(tmp.name) / "state.json")
>>> wb = Offline()
>>> wb.state.record_resource("iam-role", "custom-auth-function-role-abc123")
>>> wb.state.record_resource("lambda-function", "custom-auth-function-abc123")
>>> print(format_steps(cleanup(wb, dry_run=True)))
KIND             RESOURCE                          ACTION           OUTCOME
lambda-function  custom-auth-function-abc123       delete function  would delete
iam-role         custom-auth-function-role-abc123  delete role      would delete
>>> tmp.cleanup()
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import botocore.exceptions

from helpers import REPO_ROOT
from helpers.keys import key_paths
from helpers.state import NAME_PREFIXES, SUFFIX_RE
from helpers.tables import text_table
from helpers.workbook import error_code

#: Deletion order: each kind only after everything that depends on it.
ORDER = ("iot-logging", "iot-authorizer", "lambda-permission", "lambda-function", "iam-role-policy", "iam-role", "key-pair")
#: Error codes meaning "this does not exist (any more)".
GONE_CODES = ("ResourceNotFoundException", "NoSuchEntity")
ALREADY_GONE = "already gone"
DELETED = "deleted"
WOULD_DELETE = "would delete"


@dataclass
class Step:
    """One resource and what clean-up did to it: ``outcome`` is "deleted", "already gone" or "failed: ..."."""

    kind: str
    resource_id: str
    action: str
    outcome: str


class _Gone(Exception):
    """Raised by a deleter when the resource was not there."""


def _split(resource_id: str, what: str) -> tuple[str, str]:
    first, sep, rest = resource_id.partition("/")
    if not sep or not first or not rest:
        raise ValueError(f"the record {resource_id!r} is not {what}")
    return first, rest


def _delete_authorizer(wb, name: str) -> None:
    iot = wb.client("iot")
    try:
        default = iot.describe_default_authorizer().get("authorizerDescription", {}).get("authorizerName")
    except botocore.exceptions.ClientError as error:
        if error_code(error) not in GONE_CODES:  # ResourceNotFoundException here means "no default is set"
            raise
        default = None
    if default == name:
        iot.clear_default_authorizer()
    iot.update_authorizer(authorizerName=name, status="INACTIVE")
    iot.delete_authorizer(authorizerName=name)


def _delete_permission(wb, resource_id: str) -> None:
    function, statement_id = _split(resource_id, "FUNCTION_NAME/STATEMENT_ID")
    wb.client("lambda").remove_permission(FunctionName=function, StatementId=statement_id)


def _delete_function(wb, name: str) -> None:
    wb.client("lambda").delete_function(FunctionName=name)


def _detach_policy(wb, resource_id: str) -> None:
    role, policy_arn = _split(resource_id, "ROLE_NAME/POLICY_ARN")
    wb.client("iam").detach_role_policy(RoleName=role, PolicyArn=policy_arn)


def _delete_role(wb, name: str) -> None:
    wb.client("iam").delete_role(RoleName=name)


def _delete_key_files(wb, directory: str) -> None:
    present = [path for path in key_paths(Path(directory)) if path.exists()]
    if not present:
        raise _Gone()
    for path in present:
        path.unlink(missing_ok=True)


def _restore_logging(wb, previous: str) -> None:
    from helpers import iot_logging

    iot_logging.restore(wb, previous)


#: kind → (what is done, how)
ACTIONS: dict[str, tuple[str, Callable[[Any, str], None]]] = {
    "iot-logging": ("restore logging options", _restore_logging),
    "iot-authorizer": ("deactivate, delete", _delete_authorizer),
    "lambda-permission": ("remove permission", _delete_permission),
    "lambda-function": ("delete function", _delete_function),
    "iam-role-policy": ("detach policy", _detach_policy),
    "iam-role": ("delete role", _delete_role),
    "key-pair": ("delete key files", _delete_key_files),
}


def _ordered(resources: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Known kinds in ORDER (newest first within a kind), then unknown kinds, newest first."""
    newest_first = list(reversed(resources))
    rank = {kind: i for i, kind in enumerate(ORDER)}
    return sorted(newest_first, key=lambda entry: rank.get(entry[0], len(ORDER)))  # sorted() is stable


def _run(wb, kind: str, resource_id: str) -> Step:
    if kind not in ACTIONS:
        return Step(kind, resource_id, "none",
                    f"failed: the workbook does not know how to delete a {kind!r}; delete it by hand, then run "
                    f"wb.state.forget_resource({kind!r}, {resource_id!r})")
    action, delete = ACTIONS[kind]
    try:
        delete(wb, resource_id)
    except _Gone:
        outcome = ALREADY_GONE
    except botocore.exceptions.ClientError as error:
        if error_code(error) not in GONE_CODES:
            return Step(kind, resource_id, action, f"failed: {error_code(error)}: {_message(error)}")
        outcome = ALREADY_GONE
    except (botocore.exceptions.BotoCoreError, OSError, ValueError) as error:
        return Step(kind, resource_id, action, f"failed: {error}")
    else:
        outcome = DELETED
    wb.state.forget_resource(kind, resource_id)
    return Step(kind, resource_id, action, outcome)


def _message(error: botocore.exceptions.ClientError) -> str:
    return error.response.get("Error", {}).get("Message") or str(error)


def cleanup(wb, *, dry_run: bool = False) -> list[Step]:
    """Delete every resource recorded in ``wb.state``, safest order first; one :class:`Step` each.

    With ``dry_run=True`` nothing is called or changed: each step's outcome is "would delete".
    """
    steps = []
    for kind, resource_id in _ordered(wb.state.resources()):
        if dry_run:
            action = ACTIONS.get(kind, ("none",))[0]
            steps.append(Step(kind, resource_id, action, WOULD_DELETE if kind in ACTIONS else
                              f"unknown kind {kind!r}: would be left alone"))
        else:
            steps.append(_run(wb, kind, resource_id))
    return steps


def _shown(step: Step) -> str:
    """The resource id as the learner knows it: key folders relative to the repository when inside it."""
    if step.kind == "key-pair":
        path = Path(step.resource_id).resolve()
        if path.is_relative_to(REPO_ROOT):
            return str(path.relative_to(REPO_ROOT))
    return step.resource_id


def format_steps(steps: list[Step]) -> str:
    """A plain-text table: a header line, then one line per step."""
    if not steps:
        return "Nothing recorded: there is nothing to delete."
    return text_table([("KIND", "RESOURCE", "ACTION", "OUTCOME")] +
                      [(s.kind, _shown(s), s.action, s.outcome) for s in steps])


# --- resources the record lost: found by tag, name prefix and the keys folder ----------------------------

PREFIXES = {"iot-authorizer": NAME_PREFIXES["authorizer"], "lambda-function": NAME_PREFIXES["function"]}


@dataclass
class Orphans:
    """Workbook resources that exist but are not in the state file (``resources``: ``(kind, id)`` pairs).

    ``suffixes`` maps each earlier suffix found to why it is this learner's; ``others`` counts workbook-named
    resources that are not provably this learner's (another learner's, in a shared account): left alone.
    """

    resources: list[tuple[str, str]]
    suffixes: dict[str, str]
    others: int = 0

    def summary(self) -> str:
        if not self.resources:
            line = "No unrecorded workbook resources found."
        else:
            kinds = sorted({kind for kind, _ in self.resources})
            line = (f"Found {len(self.resources)} workbook resource(s) the state file does not list ("
                    f"{', '.join(kinds)}; suffix {', '.join(sorted(self.suffixes))}: "
                    f"{'; '.join(sorted(set(self.suffixes.values())))}). Notebook 10 deletes them.")
        if self.others:
            line += (f" {self.others} other workbook-named resource(s) are not provably yours (another "
                     "learner's?) and are left alone.")
        return line


def _pem_key(pem: str) -> str:
    return "".join(line.strip() for line in pem.strip().splitlines() if "-----" not in line)


def _my_public_keys(wb) -> set[str]:
    keys = set()
    for path in key_paths(Path(wb.keys_dir))[1:]:
        try:
            keys.add(_pem_key(path.read_text()))
        except OSError:
            pass
    return keys


def _exists(call) -> bool:
    try:
        call()
    except botocore.exceptions.ClientError as error:
        if error_code(error) in GONE_CODES:
            return False
        raise
    return True


def find_orphans(wb) -> Orphans:
    """Workbook resources that exist but are not recorded (after ``state.json`` was lost or replaced).

    Found by name prefix (``my-new-authorizer-``, ``custom-auth-function-``), the tag
    ``iot-custom-auth-workbook`` (whose value is the suffix) and the keys folder: on AWS an earlier
    suffix counts as this learner's only when its authorizer holds this machine's public key (so another
    learner's resources in a shared account are never touched); on the sandbox, whose home is one
    learner's, every workbook-named resource is. From each such suffix the names of everything the
    workbook makes follow (``Names.for_suffix``), and each is asked for. Makes only read calls.
    """
    from helpers.state import Names

    iot, awslambda = wb.client("iot"), wb.client("lambda")
    current = wb.state.suffix
    recorded = set(wb.state.resources())
    mine_keys = _my_public_keys(wb)
    suffixes: dict[str, str] = {}
    others = 0
    seen_suffixes: set[str] = set()
    for page in iot.get_paginator("list_authorizers").paginate():
        for item in page.get("authorizers", []):
            name = item["authorizerName"]
            if not name.startswith(PREFIXES["iot-authorizer"]):
                continue
            suffix = name[len(PREFIXES["iot-authorizer"]):]
            if not SUFFIX_RE.fullmatch(suffix):
                continue
            seen_suffixes.add(suffix)
            if wb.target == "sandbox":
                suffixes.setdefault(suffix, "in this sandbox")
                continue
            described = iot.describe_authorizer(authorizerName=name)["authorizerDescription"]
            keys = {_pem_key(k) for k in (described.get("tokenSigningPublicKeys") or {}).values()}
            if keys & mine_keys:
                suffixes.setdefault(suffix, "its authorizer holds your public key")
            elif suffix != current:
                others += 1
    for page in awslambda.get_paginator("list_functions").paginate():
        for fn in page.get("Functions", []):
            name = fn["FunctionName"]
            if name.startswith(PREFIXES["lambda-function"]) and not name.startswith(NAME_PREFIXES["role"]):
                suffix = name[len(PREFIXES["lambda-function"]):]
                if not SUFFIX_RE.fullmatch(suffix):
                    continue
                if wb.target == "sandbox":
                    suffixes.setdefault(suffix, "in this sandbox")
                elif suffix not in suffixes and suffix not in seen_suffixes and suffix != current:
                    others += 1
    suffixes.setdefault(current, "the current suffix")
    iam = wb.client("iam")
    found: list[tuple[str, str]] = []
    for suffix in suffixes:
        names = Names.for_suffix(suffix)
        candidates = []
        if _exists(lambda: iot.describe_authorizer(authorizerName=names.authorizer)):
            candidates.append(("iot-authorizer", names.authorizer))
        if _exists(lambda: awslambda.get_function_configuration(FunctionName=names.function)):
            try:
                policy = awslambda.get_policy(FunctionName=names.function)["Policy"]
                import json as _json
                sids = {st.get("Sid") for st in _json.loads(policy).get("Statement", [])}
            except botocore.exceptions.ClientError as error:
                if error_code(error) not in GONE_CODES:
                    raise
                sids = set()
            if names.statement_id in sids:
                candidates.append(("lambda-permission", f"{names.function}/{names.statement_id}"))
            candidates.append(("lambda-function", names.function))
        for role in (names.role, names.logging_role):
            if _exists(lambda: iam.get_role(RoleName=role)):
                for attached in iam.list_attached_role_policies(RoleName=role).get("AttachedPolicies", []):
                    candidates.append(("iam-role-policy", f"{role}/{attached['PolicyArn']}"))
                candidates.append(("iam-role", role))
        found += [c for c in candidates if c not in recorded]
    if any(p.exists() for p in key_paths(Path(wb.keys_dir))) and ("key-pair", str(wb.keys_dir)) not in recorded:
        found.append(("key-pair", str(wb.keys_dir)))
    kept = {s: why for s, why in suffixes.items()
            if any(res.endswith(s) or f"-{s}/" in res for _, res in found)}
    if any(kind == "key-pair" for kind, _ in found):
        kept.setdefault(current, "the keys folder")
    return Orphans(found, kept, others)


def adopt(wb, orphans: Orphans) -> int:
    """Record ``orphans.resources`` in the state file so that :func:`cleanup` deletes them; how many."""
    for kind, resource_id in orphans.resources:
        wb.record(kind, resource_id)
    return len(orphans.resources)
