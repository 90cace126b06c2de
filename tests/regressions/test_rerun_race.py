"""Two concurrent duplicate starts of a failed actor whose policy re-runs failed runs.

The first run of an ``AllowDuplicateFailedOnly`` actor fails; then two duplicate starts of
its key arrive at once. The duplicates are handled one after the other: one re-runs the
actor (generation 2, reply ``Started`` for generation 2); the other reaches the now-active
generation 2 (rejected by the policy) rather than the ended generation 1. No caller gets
``ActorNotFound`` and exactly one re-run happens.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from actors import ActorNotFound, Status
from examples.idempotency_policies import AllowDuplicateFailedOnly, Started, first_run
from tests.conftest import running


async def test_concurrent_duplicates_of_a_failed_actor_rerun_it_exactly_once(
    tmp_path: Path,
) -> None:
    """G2: duplicates are handled one at a time, so only one of them sees the failed run."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    policy = AllowDuplicateFailedOnly
    async with running(url, policy, limit=20) as rt:
        await first_run(rt, policy, "k", Status.FAILED)
        results: dict[int, object] = {}

        async def dup(n: int) -> None:
            h = await rt.start(policy, "k", f"dup-{n}")
            try:
                results[n] = await h.reply()
            except Exception as exc:
                results[n] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(dup, 1)
            tg.start_soon(dup, 2)
        record = await rt._store.load_actor(rt.ref(policy, "k")._id)
        assert record is not None, results
        assert not any(isinstance(r, ActorNotFound) for r in results.values()), (results, record)
        # exactly one re-run
        started = [r for r in results.values() if isinstance(r, Started)]
        assert len(started) == 1, (results, record)
