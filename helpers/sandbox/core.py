"""The sandbox's shared vocabulary: constants, requests, responses, AWS errors, routing.

Every service module (``helpers/sandbox/services/*.py``) is written against these
few types, so that the HTTPS server, the services and the tests agree on one
shape:

- :class:`Request` is what the server hands a service after the SigV4 check;
- :class:`Response` is what a service hands back;
- :class:`AwsError` is raised anywhere to answer with AWS's error for the
  service's wire protocol (the server serializes it; see ``error_response``);
- :class:`Router` maps ``METHOD /path/{param}`` templates (as written in the
  botocore models' ``requestUri``) to handler functions, for rest-json services;
  :class:`ActionRouter` maps operation names to handler functions, for the json and
  query protocols, which name the operation in the request (``X-Amz-Target``,
  ``Action=``) rather than in its path;
- :class:`ServiceModule` is the contract every service module meets.

Usage:

>>> router = Router()
>>> @router.route("GET", "/authorizer/{authorizerName}")
... def describe(req, ctx, authorizerName):
...     return Response.json({"name": authorizerName})
>>> req = Request("GET", "/authorizer/my%2Dauth", "", {}, b"", service="iot")
>>> router.dispatch(req, ctx=None).body
b'{"name": "my-auth"}'
>>> AwsError("ResourceNotFoundException", "nope", 404).status
404
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote

from helpers.targets import SANDBOX_KEY_PREFIX

# --- Fixed identity of the sandbox (documented in helpers/sandbox/README.md) ---
#: AWS's own documentation example account id: never a real account.
ACCOUNT_ID = "123456789012"
#: The tutorial's region: the sandbox's default (what Settings export, and the data endpoint's ``localhost``).
REGION = "us-west-2"


def _aws_regions() -> tuple[str, ...]:
    from botocore.loaders import Loader
    partitions = Loader().load_data("endpoints")["partitions"]
    return tuple(sorted(r for p in partitions if p["partition"] == "aws" for r in p["regions"]))


#: The commercial AWS regions (botocore's endpoint data): a credential scope must name one of them.
REGIONS = _aws_regions()
#: Generated access key ids look like this (``SANDBOX`` + 13 of [A-Z0-9], 20 characters like AWS's),
#: so tools can tell a sandbox key from an AWS one. Each home has its own (``app.home_credentials``).
ACCESS_KEY_ID_RE = re.compile(rf"^{SANDBOX_KEY_PREFIX}[A-Z0-9]{{13}}$")


def new_request_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Request:
    """One HTTP request, after TLS and SigV4.

    ``path`` is the raw, still percent-encoded path without the query string;
    ``raw_query`` is the query string without its ``?``; ``headers`` has
    lower-case names.
    """

    method: str
    path: str
    raw_query: str
    headers: dict[str, str]
    body: bytes
    service: str = ""
    region: str = REGION
    request_id: str = field(default_factory=new_request_id)
    #: SNI host name the client sent (None when it sent none, e.g. for an IP).
    server_name: str | None = None
    #: (host, port) of the client.
    client_address: tuple[str, int] = ("127.0.0.1", 0)
    #: Identifies the TCP/TLS connection the request came on (keep-alive aware).
    connection_id: str = ""
    #: Who signed it (a ``sigv4.Credential``), set by the API endpoint after the SigV4 check.
    credential: Any = None

    @cached_property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.raw_query, keep_blank_values=True)

    def query_value(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> dict[str, Any]:
        """The body as a JSON object ({} when empty); a bad body is AWS's SerializationException."""
        if not self.body.strip():
            return {}
        try:
            doc = json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AwsError("SerializationException", f"Could not parse request body into json: {exc}", 400) from None
        if not isinstance(doc, dict):
            raise AwsError("SerializationException", "Request body must be a JSON object", 400)
        return doc

    def form(self) -> dict[str, str]:
        """Parameters of an AWS query-protocol request (form body, or the query string for GET)."""
        source = self.body.decode("utf-8", "replace") if self.body else self.raw_query
        return {k: v[-1] for k, v in parse_qs(source, keep_blank_values=True).items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: For protocol upgrades (status 101, e.g. MQTT over WebSocket): awaited after the response head is sent,
    #: with the connection's asyncio reader and writer and the bytes already read past the request
    #: (``http11.Upgrade``); it owns the connection until it returns.
    upgrade: Callable[[Any, Any, bytes], Awaitable[None]] | None = None

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None,
             content_type: str = "application/json") -> "Response":
        h = {"Content-Type": content_type}
        h.update(headers or {})
        return cls(status, json.dumps(obj).encode(), h)

    @classmethod
    def xml(cls, text: str, status: int = 200) -> "Response":
        return cls(status, text.encode(), {"Content-Type": "text/xml"})

    @classmethod
    def empty(cls, status: int = 200) -> "Response":
        return cls(status, b"", {})


class AwsError(Exception):
    """An error AWS would answer with: its code (the exception botocore raises), message and status.

    ``extra`` members are added to the JSON error body (e.g. ``resourceId`` for
    IoT's ResourceAlreadyExistsException, ``Type`` for Lambda errors).
    """

    def __init__(self, code: str, message: str, status: int = 400, **extra: Any):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra


def error_response(err: AwsError, protocol: str, request_id: str) -> Response:
    """Serialize an AwsError the way the service's protocol does, so botocore raises ``err.code``."""
    headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": err.code}
    if protocol == "query":
        kind = "Receiver" if err.status >= 500 else "Sender"
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>{kind}</Type><Code>{xml_escape(err.code)}</Code>"
            f"<Message>{xml_escape(err.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return Response(err.status, body.encode(), {"Content-Type": "text/xml", "x-amzn-RequestId": request_id})
    if protocol == "json":
        doc = {"__type": err.code, "message": err.message, **err.extra}
        return Response.json(doc, err.status, headers, content_type="application/x-amz-json-1.1")
    # rest-json
    doc = {"message": err.message, **err.extra}
    if "Type" in err.extra:  # Lambda's errors carry Type and capitalised Message too
        doc["Message"] = err.message
    return Response.json(doc, err.status, headers)


def xml_escape(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


#: A service's handler for one operation: ``handler(req, ctx, **path_params) -> Response``. Path parameters
#: (rest-json only) arrive percent-decoded, as keyword arguments named as in the URI template; handlers of
#: json and query operations take just ``(req, ctx)`` and read their input with ``req.json()`` / ``req.form()``.
Handler = Callable[..., Response]


class Router:
    """Maps botocore-style URI templates to handlers: ``{name}`` is one segment, ``{name+}`` the rest.

    Path parameters are passed to the handler percent-decoded, as keyword arguments.
    """

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, template: str) -> Callable[[Handler], Handler]:
        def pattern_for(t: str) -> re.Pattern[str]:
            out, pos = "", 0
            for m in re.finditer(r"\{(\w+)(\+?)\}", t):
                out += re.escape(t[pos:m.start()])
                out += f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
                pos = m.end()
            out += re.escape(t[pos:])
            return re.compile(out + "$")

        def register(fn: Handler) -> Handler:
            self._routes.append((method.upper(), pattern_for(template), fn))
            return fn

        return register

    def dispatch(self, req: Request, ctx: Any) -> Response:
        path_allowed = False
        for method, pattern, fn in self._routes:
            m = pattern.match(req.path)
            if not m:
                continue
            path_allowed = True
            if method == req.method:
                return fn(req, ctx, **{k: unquote(v) for k, v in m.groupdict().items()})
        if path_allowed:
            raise AwsError("MethodNotAllowedException", f"The method {req.method} is not allowed on {req.path}", 405)
        raise AwsError("UnknownOperationException", f"No {req.service} operation is served at {req.method} {req.path}", 404)

    @property
    def routes(self) -> list[tuple[str, Handler, tuple[str, ...]]]:
        """``(METHOD pattern, handler, path parameter names)`` for every route, in the order registered."""
        return [(f"{method} {pattern.pattern}", fn, tuple(pattern.groupindex)) for method, pattern, fn in self._routes]


def query_action(req: Request) -> str:
    """The operation a query-protocol request names: its form's ``Action`` ("" when it names none)."""
    return req.form().get("Action", "")


class ActionRouter:
    """Maps operation names to handlers, for protocols that name the operation in the request, not its path.

    ``operation_of(req)`` reads the name (json: ``X-Amz-Target: Prefix.Operation``; query: the form's
    ``Action``); ``unknown(req, name)`` is the AwsError for a name no handler serves (each service words
    it as AWS does). Handlers are registered with the same decorator shape as :class:`Router`'s, and
    called as ``handler(req, ctx)``.

    >>> router = ActionRouter(lambda req: req.form().get("Action", ""),
    ...                       lambda req, name: AwsError("InvalidAction", f"no {name}", 400))
    >>> @router.route("GetCallerIdentity")
    ... def who(req, ctx):
    ...     return Response.xml("<me/>")
    >>> router.dispatch(Request("POST", "/", "", {}, b"Action=GetCallerIdentity", service="sts"), ctx=None).body
    b'<me/>'
    >>> router.operations
    ['GetCallerIdentity']
    """

    def __init__(self, operation_of: Callable[[Request], str], unknown: Callable[[Request, str], AwsError]):
        self._operation_of = operation_of
        self._unknown = unknown
        self._handlers: dict[str, Handler] = {}

    def route(self, name: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self._handlers[name] = fn
            return fn

        return register

    @property
    def operations(self) -> list[str]:
        """The operation names served, in the order registered."""
        return list(self._handlers)

    @property
    def routes(self) -> list[tuple[str, Handler, tuple[str, ...]]]:
        """``(operation name, handler, ())`` for every operation, in the order registered (as :attr:`Router.routes`)."""
        return [(name, fn, ()) for name, fn in self._handlers.items()]

    def dispatch(self, req: Request, ctx: Any) -> Response:
        name = self._operation_of(req)
        fn = self._handlers.get(name)
        if fn is None:
            raise self._unknown(req, name)
        return fn(req, ctx)


@dataclass
class Context:
    """What a service handler may use besides the request.

    ``runtime`` is the Lambda runtime (``helpers.sandbox.runtime.LambdaRuntime``);
    ``endpoints`` maps DescribeEndpoint types (``iot:Data-ATS``...) to addresses;
    ``logs`` is the CloudWatch Logs sink, or None where logs are not served;
    ``credentials`` is the ``sigv4.CredentialStore`` of the keys this sandbox accepts
    (its home's long-term pair and the temporary credentials it issued), which both
    endpoints use to check signatures.
    """

    store: Any
    runtime: Any = None
    account_id: str = ACCOUNT_ID
    region: str = REGION
    endpoints: dict[str, str] = field(default_factory=dict)
    home: Any = None
    logs: Any = None
    credentials: Any = None
    #: IAM is global: its tables live in the default region's database, whichever region a request names.
    iam_store: Any = None
    #: ``region -> Context`` for the other regions (``RegionContexts``), shared by all of them; None: one region.
    regions: Any = None

    def in_region(self, region: str | None) -> "Context":
        """This sandbox's context for ``region`` (None: this one). Each region has its own resources."""
        if region is None or region == self.region:
            return self
        if self.regions is None:
            raise AwsError("UnrecognizedClientException", f"This sandbox context serves only {self.region}.", 403)
        return self.regions.get(region)


@runtime_checkable
class ServiceModule(Protocol):
    """What every service module (``helpers/sandbox/services/*.py``) provides: one module per AWS service.

    ``tests/test_service_contract.py`` checks every module in the package against it.
    """

    #: The service's wire protocol as botocore's model names it (``metadata.protocol``): ``"rest-json"``,
    #: ``"json"`` or ``"query"``. ``apiapp.ApiApp`` (and ``tests/harness.py``) pass it to :func:`error_response`,
    #: so an AwsError raised anywhere in the service reaches the client in the form botocore parses.
    PROTOCOL: str
    #: The credential-scope service names whose requests this module answers (``iot`` and ``execute-api``
    #: for IoT). ``apiapp.ApiApp`` routes each SigV4-checked request by its scope's service to the module
    #: that lists it.
    SIGNING_NAMES: tuple[str, ...]
    #: SQL creating the tables the service owns (``CREATE TABLE IF NOT EXISTS ...``), or ``""``.
    #: ``app.Sandbox`` runs every module's SCHEMA when it opens a region's database (``store.Store``).
    SCHEMA: str
    #: The service's operations: a :class:`Router` (rest-json: method and URI template) or an
    #: :class:`ActionRouter` (json and query: operation name), each operation one :data:`Handler`
    #: registered with ``@router.route(...)``.
    router: Router | ActionRouter

    def handle(self, req: Request, ctx: Context) -> Response:
        """Answer one request (raise :class:`AwsError` for AWS's errors). ``apiapp.ApiApp`` calls it after the
        SigV4 check, with ``req.service``, ``req.region`` and ``req.credential`` set and ``ctx`` the context
        of the request's region; ``tests/harness.py`` calls it in-process. It dispatches through ``router``,
        adding only what every operation of the service shares (a response header, a log flush)."""
