"""Safe re-runs: the plumbing that lets a notebook's create cell run a second time.

A learner runs a cell twice (a kernel restart, a "Run All", a second session). The first run
created the role, function, authorizer or permission; the second run's create call gets AWS's
"already exists" error. The notebooks keep the create call itself in the cell, exactly as boto3
takes it, and let this module say what a re-run means:

- :func:`reuse_if_exists` around the create call: AWS's "already exists" answer means the resource
  from the earlier run is kept (the cell reads it back next); every other error still stops the cell.
- :func:`differences`: which fields of what AWS describes differ from what the cell wants, so the
  cell calls the update only when something changed (a new key pair, another function ARN).
- :func:`policy_statement` / :func:`source_arn_of`: read one statement of a Lambda function's
  resource-based policy (``GetPolicy`` answers the policy as a JSON string, or 404 when it has none).

The error codes are AWS's: IAM ``EntityAlreadyExists`` (CreateRole), IoT
``ResourceAlreadyExistsException`` (CreateAuthorizer), Lambda ``ResourceConflictException``
(CreateFunction "Function already exist", AddPermission "The statement id ... already exists").
Lambda also answers ``ResourceConflictException`` for "The operation cannot be performed at this
time" (an update in progress); that one is *not* a re-run and is raised, hence the message check.

Usage:

>>> differences({"status": "ACTIVE", "keys": {"k": "PEM\\n"}}, {"status": "ACTIVE", "keys": {"k": "PEM"}})
[]
>>> differences({"status": "INACTIVE", "arn": "a"}, {"status": "ACTIVE", "arn": "a"})
['status']
>>> source_arn_of({"Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:iot:r:1:authorizer/a"}}})
'arn:aws:iot:r:1:authorizer/a'
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import botocore.exceptions

from helpers.workbook import error_code

#: AWS's error codes for "a resource with this name/id exists already".
ALREADY_EXISTS_CODES = ("EntityAlreadyExists", "ResourceAlreadyExistsException", "ResourceConflictException")

__all__ = ["ALREADY_EXISTS_CODES", "Outcome", "differences", "policy_statement", "reuse_if_exists", "source_arn_of"]


@dataclass
class Outcome:
    """What the create call inside :func:`reuse_if_exists` did: ``created`` is False on a re-run."""

    created: bool = True
    message: str = ""


def _already_exists(exc: BaseException) -> bool:
    return error_code(exc) in ALREADY_EXISTS_CODES and "exist" in str(exc.response["Error"].get("Message", "")).lower()


@contextmanager
def reuse_if_exists() -> Iterator[Outcome]:
    """Run a create call; if AWS answers that the resource already exists, keep the existing one.

    ``outcome.created`` says which happened; ``outcome.message`` holds AWS's message on a re-run.
    Any other error (a bad parameter, no permission, an update in progress) is raised unchanged.
    """
    outcome = Outcome()
    try:
        yield outcome
    except botocore.exceptions.ClientError as exc:
        if not _already_exists(exc):
            raise
        outcome.created = False
        outcome.message = exc.response["Error"].get("Message", "")


def _same(current: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(current, dict) and set(current) == set(wanted) and all(
            _same(current[key], value) for key, value in wanted.items())
    if isinstance(wanted, str) and isinstance(current, str):
        return current.strip() == wanted.strip()  # PEM keys come back with or without a final newline
    return current == wanted


def differences(current: dict, wanted: dict) -> list[str]:
    """The keys of ``wanted`` whose value in ``current`` differs (strings compared without outer whitespace)."""
    return [key for key, value in wanted.items() if not _same(current.get(key), value)]


def policy_statement(awslambda, function_name: str, sid: str) -> dict | None:
    """The statement with this ``Sid`` in the function's resource-based policy, or None (no policy counts as none)."""
    try:
        # CLI: aws lambda get-policy --function-name FUNCTION
        policy = json.loads(awslambda.get_policy(FunctionName=function_name)["Policy"])
    except awslambda.exceptions.ResourceNotFoundException:
        return None
    return next((statement for statement in policy["Statement"] if statement.get("Sid") == sid), None)


def source_arn_of(statement: dict | None) -> str | None:
    """The ``AWS:SourceArn`` an ``ArnLike`` condition limits the statement to (None without one)."""
    return ((statement or {}).get("Condition", {}).get("ArnLike", {}) or {}).get("AWS:SourceArn")
