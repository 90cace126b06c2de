r"""HTTP idempotency: the ``Idempotency-Key`` header in front of an entity, with Starlette.

A small ASGI service that honours the ``Idempotency-Key`` request header as the IETF httpapi
draft "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header)
describes it. Each key is one ``IdempotencyKey`` actor. The request whose ``start`` creates
it owns the key and runs the operation (``POST /payments`` charges a fake provider), then
completes the actor with the response (status, body, headers) as its result. Every other
request with the key is a duplicate start, a message to that actor, and ``on_duplicate``
decides what it gets:

- same key, same request, the first still in flight: 409 Conflict (the policy *reject*);
- same key, same request, after the response: the stored response (same status, body and
  ``Location``) with ``Idempotent-Replayed: true``, without running the operation;
- same key, another method, path or body: 422 Unprocessable Content;
- same key after the owner failed (no response was stored): this request runs it again, as
  the key's next generation (``ctx.supersede()``).

A request without the header gets 400, and so does a malformed one. Errors are
``application/problem+json`` (RFC 9457) whose ``type`` links to the documentation.

- **The header** is an RFC 8941 Item whose value must be an sf-string:
  ``Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`` (parameters are allowed and
  ignored). Unquoted ids made of ``A-Z a-z 0-9 - _ . ~ + / = :`` are accepted too (see
  ``parse_idempotency_key``). A key has 1 to 255 characters.
- **The fingerprint** of a request is the SHA-256 of its method, path and body. The body is
  hashed in canonical form (the validated request re-encoded), so a retry that re-serializes
  the same JSON differently is still the same request. Only the hash is stored.
- **Scope**: keys are per client. A request with an ``Authorization`` header is scoped by a
  hash of it (a real service would use the authenticated account id), so two clients never
  meet each other's keys or responses; requests without it share one anonymous scope, where
  unguessable keys (UUIDs) are what keeps clients apart. The actor key is
  ``<scope>/<Idempotency-Key>``.
- **Expiry**: a response is kept for ``RETENTION`` (24 hours) after it completed, then the
  actor is purged and the key runs again. A key whose owner never reported back (its process
  died mid-operation) is released after ``IN_FLIGHT_LIMIT``, by a durable timer.

Run the demo (serves on a free port, makes the requests, prints one line per step)::

    python examples/http_idempotency.py

or only serve, and try it with curl::

    python examples/http_idempotency.py --serve --port 8000 --store keys.db
    curl -i http://127.0.0.1:8000/payments -H 'Content-Type: application/json' \
        -H 'Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"' \
        -d '{"amount": 1999, "currency": "eur"}'
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import msgspec
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actors import (
    ActorsError,
    Context,
    Duplicate,
    Entity,
    HandlerFailed,
    Overloaded,
    Runtime,
    RuntimeClosed,
    Status,
    StorageError,
    handler,
)

log = structlog.get_logger()

RETENTION = timedelta(hours=24)  # the published expiry policy: 24 h after the response
IN_FLIGHT_LIMIT = timedelta(minutes=10)  # longer than any charge may take
DOCS = "https://developer.example.com/idempotency"  # where the problem types are explained
MAX_KEY_LENGTH = 255

# -- the Idempotency-Key header ----------------------------------------------------------------

# RFC 8941 (Structured Field Values), section 3.3: an Item is a bare item with parameters.
_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'
_BARE_ITEM = (
    rf"(?:{_STRING}|-?\d{{1,12}}\.\d{{1,3}}|-?\d{{1,15}}"  # string, decimal, integer
    r"|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*|:[A-Za-z0-9+/=]*:|\?[01])"  # token, bytes, bool
)
_PARAMETER = rf";\x20*[a-z*][a-z0-9_.*-]*(?:={_BARE_ITEM})?"
_STRING_ITEM = re.compile(rf"(?P<string>{_STRING})(?:{_PARAMETER})*")
# Ids as clients generate them (UUID, ULID, nanoid, base64): no quote, space, comma or
# semicolon, so an unquoted one can never be mistaken for a structured value.
_UNQUOTED = re.compile(r"[A-Za-z0-9\-_.~+/=:]+")


class Problem(Exception):
    """An error response (RFC 9457 problem details), raised by the request handlers."""

    def __init__(
        self, status: int, kind: str, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.kind = kind  # the fragment of the documentation's address that explains it
        self.title = title
        self.detail = detail
        self.headers = headers or {}


def parse_idempotency_key(lines: list[str]) -> str | None:
    """The key in a request's ``Idempotency-Key`` field lines; ``None`` if there are none.

    The draft makes the value an sf-string, so ``"abc"`` is the key ``abc``. An unquoted id
    (``Idempotency-Key: 8e03978e-...``) is accepted as well, as the same key as its quoted
    form: many deployed clients send keys that way (the header predates the draft), a UUID
    is not even a valid sf-token (it may start with a digit), and refusing them would break
    those clients for no gain, since such a value cannot be read in two ways.

    Raises:
        Problem: 400, the field is repeated, or its value is neither form, or the key is
            empty or longer than ``MAX_KEY_LENGTH``.
    """
    if not lines:
        return None
    if len(lines) > 1:
        raise _malformed(f"send the header once, not {len(lines)} times")
    value = lines[0].strip(" \t")
    if quoted := _STRING_ITEM.fullmatch(value):
        key = re.sub(r'\\(["\\])', r"\1", quoted["string"][1:-1])
    elif _UNQUOTED.fullmatch(value):
        key = value
    else:
        raise _malformed(f"got {value[:80]!r}")
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise _malformed(f"got a key of {len(key)} characters")
    return key


def _malformed(what: str) -> Problem:
    return Problem(
        400,
        "malformed-key",
        "Idempotency-Key is malformed",
        "The Idempotency-Key header must be one quoted string (RFC 8941) of 1 to "
        f'{MAX_KEY_LENGTH} characters, such as "8e03978e-40d5-43e8-bc93-6894a57f9324"; {what}.',
    )


def scope_of(request: Request) -> str:
    """Whose keys these are: a hash of the credentials, or the shared anonymous scope."""
    credentials = request.headers.get("authorization")
    if credentials is None:
        return "anonymous"
    return "client-" + hashlib.sha256(credentials.encode()).hexdigest()[:32]


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests with one key the same request: method, path and body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big") + part)  # length-prefixed: no ambiguity
    return digest.hexdigest()


# -- the entity: one actor per key ----------------------------------------------------------


@dataclass
class Claim:
    """A request's claim on its key: what the request is, and which request it is."""

    fingerprint: str
    attempt: str  # unique per HTTP request: only the owner may finish or abandon the key


@dataclass
class StoredResponse:
    """An HTTP response as the actor keeps it: replayed to late duplicates."""

    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Finished:
    attempt: str
    response: StoredResponse


@dataclass
class Abandoned:
    attempt: str
    reason: str


@dataclass
class KeyState:
    fingerprint: str = ""
    attempt: str = ""


class KeyReused(Exception):
    """The key was used before for another request (HTTP 422)."""


class RequestInFlight(Exception):
    """The request that owns the key is still running (HTTP 409)."""


class NotTheOwner(Exception):
    """A request tried to finish a key that another request owns now."""


class IdempotencyKey(Entity):
    """One Idempotency-Key of one client: who owns it, then the response to replay."""

    name = "idempotency_key"
    retention = RETENTION
    state: KeyState
    result: StoredResponse

    @handler(start=True)
    async def claim(self, ctx: Context, claim: Claim) -> StoredResponse | None:
        """The first request owns the key; ``None`` tells it to run the operation."""
        self.state = KeyState(fingerprint=claim.fingerprint, attempt=claim.attempt)
        # Dropped when the actor ends. If the owner's process dies before it reports, this
        # fails the key, so that a retry runs it again instead of getting 409 forever.
        ctx.schedule(IdempotencyKey.expire, after=IN_FLIGHT_LIMIT)
        return None

    @handler
    async def finish(self, ctx: Context, done: Finished) -> None:
        self._check_owner(done.attempt)
        ctx.complete(done.response)  # kept for RETENTION: what late duplicates get

    @handler
    async def abandon(self, ctx: Context, gave_up: Abandoned) -> None:
        self._check_owner(gave_up.attempt)
        ctx.fail(gave_up.reason)

    @handler
    async def expire(self, ctx: Context) -> None:
        ctx.fail(f"the request that owned the key did not finish within {IN_FLIGHT_LIMIT}")

    async def on_duplicate(self, ctx: Context, dup: Duplicate[Claim]) -> Any:
        if dup.payload.fingerprint != self.state.fingerprint:
            raise KeyReused(f"{ctx.key} was first used for another request")
        if ctx.status is Status.ACTIVE:
            raise RequestInFlight(f"{ctx.key} is owned by a request still in flight")
        if ctx.status is Status.COMPLETED:
            return ctx.reply_on_completion()  # the stored response, without running anything
        # Failed (abandoned, expired): no response was stored, so this request runs it, as
        # generation n+1; its reply is that generation's claim reply (None: run it).
        return ctx.supersede()

    def _check_owner(self, attempt: str) -> None:
        if attempt != self.state.attempt:
            raise NotTheOwner(f"attempt {attempt} does not own the key")


# -- running an operation once per key -------------------------------------------------------

Operation = Callable[[str], Awaitable[StoredResponse]]


async def run_once(
    rt: Runtime, request: Request, key: str, body: bytes, operation: Operation
) -> Response:
    """Run ``operation`` for the first request with ``key``; answer the others by the rules.

    Args:
        rt: the runtime hosting ``IdempotencyKey``.
        request: the HTTP request.
        key: its Idempotency-Key.
        body: the request's body in canonical form, for the fingerprint.
        operation: called with the actor key (to pass on to services that take one), it
            does the work and returns the response to store.

    Raises:
        Problem: 409, 422, 500 or 503, as the module docstring says.
    """
    actor_key = f"{scope_of(request)}/{key}"
    claim = Claim(fingerprint(request.method, request.url.path, body), uuid.uuid4().hex)
    try:
        start = await rt.start(IdempotencyKey, actor_key, claim, handler=IdempotencyKey.claim)
        stored = await start.reply()
    except HandlerFailed as exc:
        if exc.error_type == KeyReused.__name__:
            raise Problem(
                422,
                "key-reused",
                "Idempotency-Key is already used",
                "This Idempotency-Key was used for a different request (method, path or "
                "body). A key must not be reused with another payload: use a new key.",
            ) from exc
        if exc.error_type == RequestInFlight.__name__:
            raise Problem(
                409,
                "request-in-flight",
                "A request is outstanding for this Idempotency-Key",
                "A request with the same Idempotency-Key and payload is still being "
                "processed. Retry later to get its response.",
                headers={"Retry-After": "1"},
            ) from exc
        raise
    except (Overloaded, StorageError, RuntimeClosed) as exc:
        raise _unavailable(exc) from exc
    if stored is not None:
        return _response(stored, {"Idempotent-Replayed": "true"})  # Stripe's header

    owner = rt.ref(IdempotencyKey, actor_key)
    try:
        response = await operation(actor_key)
    except Exception as exc:  # the request's boundary: answer, and release the key
        log.warning("operation_failed", key=actor_key, exc_info=True)
        try:
            reason = f"{type(exc).__name__}: {exc}"
            await owner.tell(IdempotencyKey.abandon, Abandoned(claim.attempt, reason))
        except ActorsError:  # the key stays in flight until IN_FLIGHT_LIMIT releases it
            log.warning("key_not_released", key=actor_key, exc_info=True)
        raise Problem(
            500,
            "operation-failed",
            "The operation failed",
            "The request could not be completed and no response was stored for its "
            "Idempotency-Key: retrying with the same key runs it again.",
        ) from exc
    try:
        await owner.ask(IdempotencyKey.finish, Finished(claim.attempt, response))
    except ActorsError:
        # The work is done, so its response goes to this client anyway; but a retry will
        # not find it (the key expired meanwhile, or the store failed) and runs it again.
        # Passing the key to the services the operation calls makes that retry harmless.
        log.warning("response_not_stored", key=actor_key, exc_info=True)
    return _response(response)


def _response(stored: StoredResponse, extra: dict[str, str] | None = None) -> Response:
    return Response(stored.body, stored.status, headers={**stored.headers, **(extra or {})})


def _unavailable(exc: ActorsError) -> Problem:
    return Problem(
        503,
        "unavailable",
        "Service unavailable",
        f"The request was not accepted ({type(exc).__name__}); retry with the same key.",
        headers={"Retry-After": "1"},
    )


def problem_response(request: Request, exc: Exception) -> Response:
    """Render a :class:`Problem` as ``application/problem+json`` (RFC 9457)."""
    assert isinstance(exc, Problem)  # registered for Problem only
    body = {
        "type": f"{DOCS}#{exc.kind}",
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
    }
    return JSONResponse(body, exc.status, exc.headers, media_type="application/problem+json")


# -- the service: POST /payments -------------------------------------------------------------


class PaymentRequest(msgspec.Struct, forbid_unknown_fields=True):
    amount: Annotated[int, msgspec.Meta(gt=0)]  # in cents
    currency: Annotated[str, msgspec.Meta(pattern="^[a-z]{3}$")]


class Charge(msgspec.Struct):
    id: str
    amount: int
    currency: str
    status: str = "succeeded"


class ProviderError(Exception):
    """The payment provider failed; nothing was charged."""


class FakeProvider:
    """Stands in for a payment provider: counts its calls, and can hold or fail them.

    Build it inside async code (it makes anyio events).
    """

    def __init__(self) -> None:
        self.calls = 0
        self.keys: list[str] = []  # the idempotency key of each call, as the provider saw it
        self.fail_next = False
        self.reached = anyio.Event()  # set when a charge reaches the provider
        self._gate: anyio.Event | None = None

    def hold(self) -> anyio.Event:
        """Hold charges at the provider until the returned event is set."""
        self._gate = anyio.Event()
        self.reached = anyio.Event()
        return self._gate

    async def charge(self, amount: int, currency: str, *, idempotency_key: str) -> str:
        self.calls += 1
        self.keys.append(idempotency_key)
        self.reached.set()
        if self._gate is not None:
            await self._gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ProviderError("the card network is unavailable")
        return f"ch_{self.calls:04d}"


def create_app(rt: Runtime, provider: FakeProvider) -> Starlette:
    """The ASGI application: ``POST /payments`` requires an Idempotency-Key."""

    async def create_payment(request: Request) -> Response:
        key = parse_idempotency_key(request.headers.getlist("idempotency-key"))
        if key is None:
            raise Problem(
                400,
                "missing-key",
                "Idempotency-Key is missing",
                "POST /payments requires an Idempotency-Key header, unique per payment: "
                'a quoted string such as "8e03978e-40d5-43e8-bc93-6894a57f9324".',
            )
        try:  # validated before the key is claimed: a bad request uses up no key
            payment = msgspec.json.decode(await request.body(), type=PaymentRequest)
        except msgspec.DecodeError as exc:
            raise Problem(
                400,
                "invalid-body",
                "The request body is invalid",
                f'{exc}. Expected {{"amount": cents > 0, "currency": "eur"}}.',
            ) from exc

        async def charge(idempotency_key: str) -> StoredResponse:
            charge_id = await provider.charge(
                payment.amount, payment.currency, idempotency_key=idempotency_key
            )
            created = Charge(id=charge_id, amount=payment.amount, currency=payment.currency)
            return StoredResponse(
                status=201,
                headers={"content-type": "application/json", "location": f"/payments/{charge_id}"},
                body=msgspec.json.encode(created).decode(),
            )

        return await run_once(rt, request, key, msgspec.json.encode(payment), charge)

    return Starlette(
        routes=[Route("/payments", create_payment, methods=["POST"])],
        exception_handlers={Problem: problem_response},
        max_body_size=64 * 1024,
    )


# -- serving, and the demo --------------------------------------------------------------------


class Server(uvicorn.Server):
    """A uvicorn server that says when it listens (``ready``), and on which port."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()
        self.port = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.port = self.servers[0].sockets[0].getsockname()[1]
        self.ready.set()


def server_for(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Server:
    """A server for ``app`` on ``host:port`` (0: a free port) that leaves logging alone."""
    config = uvicorn.Config(
        app, host=host, port=port, http="h11", ws="none", lifespan="off", log_config=None
    )
    return Server(config)


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 meanwhile; yields its base URL."""
    server = server_for(app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await server.ready.wait()
        try:
            yield f"http://127.0.0.1:{server.port}"
        finally:
            server.should_exit = True


def _say(step: str, response: httpx.Response, what: str) -> None:
    print(f"{step:<20} -> {response.status_code} {what}")


async def demo(url: str) -> None:
    """Serve the app and make the requests of each case; print one line per step."""
    provider = FakeProvider()
    key = {"Idempotency-Key": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}
    payment = {"amount": 1999, "currency": "eur"}
    async with (
        Runtime.open(url, entities=[IdempotencyKey]) as rt,
        serving(create_app(rt, provider)) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        first: list[httpx.Response] = []

        async def first_request() -> None:
            first.append(await http.post("/payments", json=payment, headers=key))

        release = provider.hold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_request)
            await provider.reached.wait()  # the first request is at the provider
            print("first request        -> held at the provider")
            dup = await http.post("/payments", json=payment, headers=key)
            _say("concurrent duplicate", dup, dup.json()["title"])
            release.set()
        charge = first[0].json()
        where = first[0].headers["location"]
        _say("first request", first[0], f"{charge['id']} for {charge['amount']} (Location {where})")

        late = await http.post("/payments", json=payment, headers=key)
        replayed = late.headers["idempotent-replayed"]
        _say("late duplicate", late, f"{late.json()['id']}, stored response (replayed: {replayed})")
        other = await http.post("/payments", json={**payment, "amount": 5}, headers=key)
        _say("different payload", other, other.json()["title"])
        missing = await http.post("/payments", json=payment)
        _say("missing header", missing, missing.json()["title"])
        malformed = await http.post("/payments", json=payment, headers={"Idempotency-Key": '"a'})
        _say("malformed header", malformed, malformed.json()["title"])
        print(f"provider called {provider.calls} time(s)")


async def serve(url: str, port: int) -> None:
    """Serve the app on 127.0.0.1:``port`` until interrupted."""
    async with Runtime.open(url, entities=[IdempotencyKey]) as rt:
        server = server_for(create_app(rt, FakeProvider()), port=port)
        print(f"serving POST http://127.0.0.1:{port}/payments (Ctrl+C to stop)")
        await server.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help="only serve, for curl")
    parser.add_argument("--port", type=int, default=8000, help="with --serve (default 8000)")
    parser.add_argument(
        "--store",
        type=Path,
        help="the SQLite file to keep the keys in, for `actors ls` (default: a temporary one)",
    )
    args = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),  # stdout is for the results
    )
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{args.store or Path(folder) / 'http_idempotency.db'}"
        if args.serve:
            anyio.run(serve, url, args.port)
        else:
            anyio.run(demo, url)


if __name__ == "__main__":
    main()
