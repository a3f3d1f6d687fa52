"""Every service module meets ``core.ServiceModule``: the members ApiApp and the sandbox rely on, one handler
signature (``handler(req, ctx, **path_params) -> Response``) and one router style (``@router.route(...)``)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing

import pytest

import helpers.sandbox.services
from helpers.sandbox import app, core

PROTOCOL_ROUTERS = {"rest-json": core.Router, "json": core.ActionRouter, "query": core.ActionRouter}


def service_module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(helpers.sandbox.services.__path__))


def contract_problems(module) -> list[str]:
    """What in ``module`` breaks the service-module contract (empty when nothing does)."""
    if not isinstance(module, core.ServiceModule):
        missing = [m for m in ("PROTOCOL", "SIGNING_NAMES", "SCHEMA", "router", "handle") if not hasattr(module, m)]
        return [f"lacks {', '.join(missing)}"]
    problems = []
    if module.PROTOCOL not in PROTOCOL_ROUTERS:
        problems.append(f"PROTOCOL {module.PROTOCOL!r} is not one of {sorted(PROTOCOL_ROUTERS)}")
    if not (isinstance(module.SIGNING_NAMES, tuple) and module.SIGNING_NAMES
            and all(isinstance(n, str) for n in module.SIGNING_NAMES)):
        problems.append(f"SIGNING_NAMES {module.SIGNING_NAMES!r} is not a non-empty tuple of names")
    if not isinstance(module.SCHEMA, str):
        problems.append("SCHEMA is not a string")
    if list(inspect.signature(module.handle).parameters) != ["req", "ctx"]:
        problems.append(f"handle{inspect.signature(module.handle)} is not handle(req, ctx)")
    expected_router = PROTOCOL_ROUTERS.get(module.PROTOCOL)
    if expected_router is not None and type(module.router) is not expected_router:
        problems.append(f"a {module.PROTOCOL} service routes with {expected_router.__name__}, "
                        f"not {type(module.router).__name__}")
        return problems
    if not module.router.routes:
        problems.append("its router serves no operation")
    for key, fn, path_params in module.router.routes:
        params = list(inspect.signature(fn).parameters)
        if params != ["req", "ctx", *path_params]:
            problems.append(f"{key}: {fn.__name__}{inspect.signature(fn)} is not "
                            f"{fn.__name__}(req, ctx{''.join(', ' + p for p in path_params)})")
        elif typing.get_type_hints(fn).get("return") is not core.Response:
            problems.append(f"{key}: {fn.__name__} is not annotated to return core.Response")
    return problems


def test_the_package_holds_the_five_services_and_the_sandbox_serves_each():
    assert service_module_names() == ["awslambda", "iam", "iot", "logs", "sts"]
    assert sorted(m.__name__.rsplit(".", 1)[1] for m in app.service_modules()) == service_module_names()


@pytest.mark.parametrize("name", service_module_names())
def test_service_module_meets_the_contract(name):
    module = importlib.import_module(f"helpers.sandbox.services.{name}")
    assert contract_problems(module) == []


def test_signing_names_route_to_one_module_each():
    names = [n for m in app.service_modules() for n in m.SIGNING_NAMES]
    assert len(names) == len(set(names)) and {"sts", "iam", "lambda", "iot", "logs"} <= set(names)


def fake_service(protocol="query", **members):
    module = types.ModuleType("helpers.sandbox.services.fake")
    router = core.ActionRouter(core.query_action, lambda req, name: core.AwsError("InvalidAction", name))

    @router.route("GetThing")
    def get_thing(req: core.Request, ctx: core.Context) -> core.Response:
        return core.Response.xml("<Thing/>")

    module.__dict__.update(PROTOCOL=protocol, SIGNING_NAMES=("fake",), SCHEMA="", router=router,
                           handle=lambda req, ctx: router.dispatch(req, ctx))
    module.__dict__.update(members)
    return module


def test_the_check_accepts_a_conforming_module_and_it_answers():
    module = fake_service()
    assert contract_problems(module) == []
    req = core.Request("POST", "/", "", {}, b"Action=GetThing", service="fake")
    assert module.handle(req, None).body == b"<Thing/>"


def test_the_check_refuses_a_module_without_handle():
    module = fake_service()
    del module.handle
    assert contract_problems(module) == ["lacks handle"]


def test_the_check_refuses_another_handler_signature():
    router = core.ActionRouter(core.query_action, lambda req, name: core.AwsError("InvalidAction", name))

    @router.route("CreateRole")
    def create_role(req: core.Request, ctx: core.Context, form: dict) -> core.Response:
        return core.Response.xml("")

    @router.route("DescribeLogGroups")
    def describe_log_groups(req: core.Request, ctx: core.Context) -> dict:
        return {}

    first, second = contract_problems(fake_service(router=router))
    assert first.startswith("CreateRole: create_role(") and first.endswith("is not create_role(req, ctx)")
    assert second == "DescribeLogGroups: describe_log_groups is not annotated to return core.Response"


def test_the_check_refuses_a_rest_handler_whose_parameters_are_not_the_path_parameters():
    router = core.Router()

    @router.route("GET", "/authorizer/{authorizerName}")
    def describe(req: core.Request, ctx: core.Context, name: str) -> core.Response:
        return core.Response.json({})

    problems = contract_problems(fake_service("rest-json", router=router))
    assert len(problems) == 1 and "is not describe(req, ctx, authorizerName)" in problems[0]


def test_the_check_refuses_the_wrong_router_style_and_a_bad_handle():
    assert contract_problems(fake_service("rest-json")) == [
        "a rest-json service routes with Router, not ActionRouter"]
    assert contract_problems(fake_service(handle=lambda req, ctx, form: None)) == [
        "handle(req, ctx, form) is not handle(req, ctx)"]
