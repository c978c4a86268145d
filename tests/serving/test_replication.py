"""The replicas' writer without Ray: its change log, long polls, and the two-phase reload (every living
replica prepared, else none swaps; the answer once every one has swapped)."""

import asyncio
import time

import pandas as pd

from mosaicrec.serving.replication import Writer
from tests.conftest import planted
from tests.serving.test_service import _store


def _writer(tmp_path) -> Writer:
    return Writer(str(_store(tmp_path, planted(n_users=8, n_items=8, per_user=2))))


def test_the_log_answers_a_long_poll_as_soon_as_a_change_is_published(tmp_path):
    writer = _writer(tmp_path)

    async def scenario():
        start = (await writer.register("a"))["version"]
        assert await writer.wait(start, 0.05, "a") == []  # nothing yet: the poll times out empty
        poll = asyncio.create_task(writer.wait(start, 5.0, "a"))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        await writer.publish("b", "events", pd.DataFrame({"user_id": ["u"]}))
        changes = await poll
        return changes, time.perf_counter() - t0

    changes, waited = asyncio.run(scenario())
    assert [(c.version, c.origin, c.kind) for c in changes] == [(1, "b", "events")] and waited < 1.0
    writer.store.close()


def test_a_reload_commits_when_every_living_replica_is_ready_and_aborts_on_a_failure(tmp_path):
    writer = _writer(tmp_path)

    async def scenario():
        for name in ("a", "b", "dead"):
            await writer.register(name)
        writer.seen["dead"] -= 60  # registered, then stopped polling without leaving

        async def replica(name: str, error: str | None):
            prepared = None
            while True:
                await asyncio.sleep(0.01)  # a real follower's poll goes over the network: let the writer run
                for change in await writer.wait(0, 0.05, name):
                    ended = {c.payload: c.kind for c in writer.log if c.kind in ("commit", "abort")}
                    if change.kind == "prepare" and change.version not in ended and prepared is None:
                        prepared = change.version
                        await writer.prepared(change.version, name, error)
                    elif prepared is not None and ended.get(prepared) == "abort":
                        return
                    elif prepared is not None and ended.get(prepared) == "commit":
                        await writer.installed(prepared, name)  # swapped: the reload may answer
                        return

        ok = await asyncio.gather(writer.reload("a", "m2", timeout=5), replica("a", None), replica("b", None))
        bad = await asyncio.gather(writer.reload("a", "m3", timeout=5), replica("a", None),
                                   replica("b", "cannot load m3"))
        return ok[0], bad[0]

    ok, bad = asyncio.run(scenario())
    assert ok["ok"] and ok["replicas"] == ok["installed"] == 2 and writer.model_dir == "m2"  # both swapped
    assert not bad["ok"] and "cannot load m3" in bad["error"]
    assert [c.kind for c in writer.log] == ["prepare", "commit", "prepare", "abort"]
    writer.store.close()
