"""examples/http_idempotency.py end to end: the Idempotency-Key header over a real socket.

Each test serves the example's Starlette app with uvicorn on a free port of 127.0.0.1, in a
task group of the test's own process, and talks to it with ``httpx.AsyncClient``. Nothing
waits on real time: a request is held in flight by holding the fake provider (an anyio event
the test sets), and retention and the in-flight limit pass on the runtime's VirtualClock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from actors import Runtime, Status
from actors.testing import VirtualClock
from examples.http_idempotency import (
    DOCS,
    IN_FLIGHT_LIMIT,
    MAX_KEY_LENGTH,
    RETENTION,
    Claim,
    FakeProvider,
    IdempotencyKey,
    PaymentRequest,
    StoredResponse,
    create_app,
    fingerprint,
    server_for,
)
from tests.conftest import TEST_TIME_LIMIT

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
UUID = "8e03978e-40d5-43e8-bc93-6894a57f9324"
KEY = {"Idempotency-Key": f'"{UUID}"'}
ACTOR = f"anonymous/{UUID}"  # the actor key of KEY, for a request without credentials
PAYMENT = {"amount": 1999, "currency": "eur"}
CHARGE_1 = {"id": "ch_0001", "amount": 1999, "currency": "eur", "status": "succeeded"}


@dataclass
class Service:
    """The example app, served; what a test talks to and looks at."""

    http: httpx.AsyncClient
    provider: FakeProvider
    rt: Runtime
    clock: VirtualClock

    async def pay(
        self, payment: dict[str, Any] = PAYMENT, headers: Any = None, **kwargs: Any
    ) -> httpx.Response:
        """POST /payments with ``payment`` as JSON and ``headers`` (default: KEY)."""
        sent = KEY if headers is None else headers
        return await self.http.post("/payments", json=payment, headers=sent, **kwargs)

    async def keys(self) -> int:
        """How many Idempotency-Key actors the store holds."""
        return await self.rt.count(IdempotencyKey)

    @asynccontextmanager
    async def first_in_flight(self) -> AsyncIterator[list[httpx.Response]]:
        """The first ``pay()`` held at the provider while the block runs.

        Yields the list its response goes to, once the block has ended and it is released.
        """
        release = self.provider.hold()
        first: list[httpx.Response] = []

        async def first_request() -> None:
            first.append(await self.pay())

        async with anyio.create_task_group() as tg:
            tg.start_soon(first_request)
            await self.provider.reached.wait()  # the owner is at the provider
            yield first
            release.set()


@asynccontextmanager
async def serving(url: str) -> AsyncIterator[Service]:
    """The example app on a runtime with a virtual clock, served by uvicorn on a free port."""
    clock = VirtualClock(T0)
    with anyio.fail_after(TEST_TIME_LIMIT):
        async with Runtime.open(url, entities=[IdempotencyKey], clock=clock) as rt:
            provider = FakeProvider()
            server = server_for(create_app(rt, provider))  # a uvicorn.Server, port 0
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                await server.ready.wait()  # set by its startup(), once it listens
                try:
                    base_url = f"http://127.0.0.1:{server.port}"
                    # No client timeout: the fail_after above is the one time bound of a test.
                    async with httpx.AsyncClient(base_url=base_url, timeout=None) as http:
                        yield Service(http, provider, rt, clock)
                finally:
                    server.should_exit = True


def assert_problem(response: httpx.Response, status: int, kind: str, title: str) -> None:
    """An RFC 9457 problem: its media type, status, title, and a link to the documentation."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"{DOCS}#{kind}"
    assert (body["status"], body["title"]) == (status, title)
    assert body["detail"]
    assert "idempotent-replayed" not in response.headers


def assert_charge(response: httpx.Response, charge: dict[str, Any], *, replayed: bool) -> None:
    assert response.status_code == 201
    assert response.json() == charge
    assert response.headers["content-type"] == "application/json"
    assert response.headers["location"] == f"/payments/{charge['id']}"
    assert response.headers.get("idempotent-replayed") == ("true" if replayed else None)


async def test_the_first_request_runs_the_charge_and_completes_its_key_with_the_response(
    file_url: str,
) -> None:
    """The owner runs the operation once; the actor's result is its status, body, headers."""
    async with serving(file_url) as svc:
        first = await svc.pay()
        assert_charge(first, CHARGE_1, replayed=False)
        assert (svc.provider.calls, svc.provider.keys) == (1, [ACTOR])
        key = svc.rt.ref(IdempotencyKey, ACTOR)
        assert await key.status() is Status.COMPLETED
        assert await key.result() == StoredResponse(
            status=201,
            headers={"content-type": "application/json", "location": "/payments/ch_0001"},
            body=first.text,
        )


async def test_a_late_duplicate_gets_the_stored_response_and_runs_nothing(
    file_url: str,
) -> None:
    """After completion, within retention, the stored response is replayed (guarantee 5)."""
    async with serving(file_url) as svc:
        first = await svc.pay()
        again = await svc.pay()
        # The same JSON, serialized otherwise: the fingerprint is of the canonical body.
        reordered = await svc.http.post(
            "/payments", content=b'{ "currency": "eur", "amount": 1999 }', headers=KEY
        )
        for late in (again, reordered):
            assert_charge(late, CHARGE_1, replayed=True)
            assert late.content == first.content
        assert svc.provider.calls == 1
        assert await svc.keys() == 1


async def test_a_duplicate_while_the_first_is_in_flight_gets_409_and_the_first_completes(
    file_url: str,
) -> None:
    """A concurrent duplicate is a message to the owner, whose policy rejects it."""
    async with serving(file_url) as svc:
        async with svc.first_in_flight() as first:
            duplicate = await svc.pay()
            assert_problem(
                duplicate,
                409,
                "request-in-flight",
                "A request is outstanding for this Idempotency-Key",
            )
            assert duplicate.headers["retry-after"] == "1"
            assert svc.provider.calls == 1
            assert await svc.rt.ref(IdempotencyKey, ACTOR).status() is Status.ACTIVE
        assert_charge(first[0], CHARGE_1, replayed=False)
        assert_charge(await svc.pay(), CHARGE_1, replayed=True)
        assert svc.provider.calls == 1


async def test_the_same_key_with_another_payload_gets_422_in_flight_and_after(
    file_url: str,
) -> None:
    """Reusing a key for a different request is refused, whatever the owner's state."""
    async with serving(file_url) as svc:
        async with svc.first_in_flight() as first:
            in_flight = await svc.pay({"amount": 5, "currency": "eur"})
            assert_problem(in_flight, 422, "key-reused", "Idempotency-Key is already used")
        assert_charge(first[0], CHARGE_1, replayed=False)
        after = await svc.pay({"amount": 1999, "currency": "usd"})
        assert_problem(after, 422, "key-reused", "Idempotency-Key is already used")
        assert svc.provider.calls == 1
        assert_charge(await svc.pay(), CHARGE_1, replayed=True)  # the record is unchanged


async def test_a_request_without_the_header_gets_400_and_runs_nothing(file_url: str) -> None:
    """The header is required on POST /payments; without it nothing is stored or run."""
    async with serving(file_url) as svc:
        missing = await svc.pay(headers={})
        assert_problem(missing, 400, "missing-key", "Idempotency-Key is missing")
        assert "Idempotency-Key header" in missing.json()["detail"]
        assert (svc.provider.calls, await svc.keys()) == (0, 0)


@pytest.mark.parametrize(
    "value",
    [
        '"unterminated',
        '"a" "b"',
        '"a", "b"',  # a list, not an item
        r'"bad\escape"',
        '""',
        '"' + "k" * (MAX_KEY_LENGTH + 1) + '"',
        '"k"; Upper=1',  # parameter keys are lowercase
        '"k";',
        "?1",  # an sf-boolean, not a string
        "two words",
        "a;b",
    ],
)
async def test_a_malformed_header_gets_400_and_runs_nothing(file_url: str, value: str) -> None:
    """The value must be one sf-string (or an unquoted id) of 1 to 255 characters."""
    async with serving(file_url) as svc:
        response = await svc.pay(headers={"Idempotency-Key": value})
        assert_problem(response, 400, "malformed-key", "Idempotency-Key is malformed")
        assert (svc.provider.calls, await svc.keys()) == (0, 0)


async def test_a_repeated_header_gets_400(file_url: str) -> None:
    """Clients must not send the field more than once; which one to use would be a guess."""
    async with serving(file_url) as svc:
        twice = [("Idempotency-Key", '"a"'), ("Idempotency-Key", '"a"')]
        response = await svc.pay(headers=twice)
        assert_problem(response, 400, "malformed-key", "Idempotency-Key is malformed")
        assert "once" in response.json()["detail"]
        assert svc.provider.calls == 0


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (f'"{UUID}"', UUID),
        (f'"{UUID}";client=7;retry', UUID),  # parameters are ignored
        (f'"{UUID}"; v=?1; w="x\\"y"; z=1.5', UUID),
        (UUID, UUID),  # unquoted: the same key as its quoted form
        (r'"quote\" and backslash\\"', 'quote" and backslash\\'),
        ('"' + "k" * MAX_KEY_LENGTH + '"', "k" * MAX_KEY_LENGTH),
    ],
)
async def test_well_formed_header_values_name_their_key(
    file_url: str, value: str, key: str
) -> None:
    """Quoted strings are unescaped and their parameters ignored; unquoted ids are taken."""
    async with serving(file_url) as svc:
        assert_charge(await svc.pay(headers={"Idempotency-Key": value}), CHARGE_1, replayed=False)
        assert svc.provider.keys == [f"anonymous/{key}"]


async def test_a_quoted_key_and_its_unquoted_form_are_one_key(file_url: str) -> None:
    """A client that drops the quotes on a retry still gets the first response."""
    async with serving(file_url) as svc:
        assert_charge(await svc.pay(), CHARGE_1, replayed=False)
        unquoted = await svc.pay(headers={"Idempotency-Key": UUID})
        assert_charge(unquoted, CHARGE_1, replayed=True)
        assert svc.provider.calls == 1


async def test_keys_are_scoped_per_client(file_url: str) -> None:
    """One key used by two clients names two actors; without credentials, a shared scope."""
    async with serving(file_url) as svc:
        alice = {**KEY, "Authorization": "Bearer alice-token"}
        bob = {**KEY, "Authorization": "Bearer bob-token"}
        assert_charge(await svc.pay(headers=alice), CHARGE_1, replayed=False)
        assert (await svc.pay(headers=bob)).json()["id"] == "ch_0002"
        assert (await svc.pay(headers=KEY)).json()["id"] == "ch_0003"
        assert_charge(await svc.pay(headers=alice), CHARGE_1, replayed=True)
        # Another payload is fine in another scope, and refused in the same one.
        seven = {"amount": 7, "currency": "eur"}
        carol = await svc.pay(seven, {**KEY, "Authorization": "Bearer carol-token"})
        assert carol.json() == {**seven, "id": "ch_0004", "status": "succeeded"}
        reused = await svc.pay(seven, alice)
        assert_problem(reused, 422, "key-reused", "Idempotency-Key is already used")
        assert svc.provider.calls == 4
        scopes = {key.split("/")[0] for key in svc.provider.keys}
        assert len(scopes) == 4
        assert "anonymous" in scopes
        assert not any("token" in key for key in svc.provider.keys)  # credentials not stored


async def test_after_retention_the_key_is_purged_and_runs_again(file_url: str) -> None:
    """The response is kept for RETENTION after completion, then the key runs again (6)."""
    async with serving(file_url) as svc:
        assert_charge(await svc.pay(), CHARGE_1, replayed=False)

        await svc.clock.advance(RETENTION - timedelta(milliseconds=1))
        assert_charge(await svc.pay(), CHARGE_1, replayed=True)

        await svc.clock.advance(timedelta(milliseconds=1))
        assert svc.rt.statistics().purged == 1
        assert await svc.keys() == 0
        fresh = await svc.pay()
        assert_charge(fresh, {**CHARGE_1, "id": "ch_0002"}, replayed=False)
        assert svc.provider.calls == 2


async def test_a_failed_operation_releases_its_key_and_a_retry_runs_it(file_url: str) -> None:
    """No response is stored for a failure: the retry supersedes the failed generation."""
    async with serving(file_url) as svc:
        svc.provider.fail_next = True
        failed = await svc.pay()
        assert_problem(failed, 500, "operation-failed", "The operation failed")
        assert await svc.rt.ref(IdempotencyKey, ACTOR).status() is Status.FAILED

        retry = await svc.pay()
        assert_charge(retry, {**CHARGE_1, "id": "ch_0002"}, replayed=False)
        assert_charge(await svc.pay(), {**CHARGE_1, "id": "ch_0002"}, replayed=True)
        assert svc.provider.calls == 2  # the failed call, and the retry's


async def test_a_key_whose_owner_never_reported_is_released_after_the_in_flight_limit(
    file_url: str,
) -> None:
    """A crashed owner leaves its key active; its durable timer fails it in time."""
    async with serving(file_url) as svc:
        # What a process that died mid-charge leaves behind: the same request, claimed.
        body = msgspec.json.encode(PaymentRequest(amount=1999, currency="eur"))
        lost = Claim(fingerprint("POST", "/payments", body), attempt="lost-owner")
        start = await svc.rt.start(IdempotencyKey, ACTOR, lost, handler=IdempotencyKey.claim)
        assert await start.reply() is None

        assert (await svc.pay()).status_code == 409
        await svc.clock.advance(IN_FLIGHT_LIMIT - timedelta(milliseconds=1))
        assert (await svc.pay()).status_code == 409

        await svc.clock.advance(timedelta(milliseconds=1))
        assert await start.actor.status() is Status.FAILED
        assert_charge(await svc.pay(), CHARGE_1, replayed=False)
        assert svc.provider.calls == 1


async def test_an_invalid_body_gets_400_and_does_not_use_up_the_key(file_url: str) -> None:
    """The body is validated before the key is claimed."""
    async with serving(file_url) as svc:
        invalid = await svc.pay({"amount": -1, "currency": "eur"})
        assert_problem(invalid, 400, "invalid-body", "The request body is invalid")
        assert "amount" in invalid.json()["detail"]
        assert await svc.keys() == 0
        assert_charge(await svc.pay(), CHARGE_1, replayed=False)
