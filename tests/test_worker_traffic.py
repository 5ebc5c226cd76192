"""A worker's Redis round trips: decision-log events batched into few stream entries,
progress events sent with the invocation's last write, task code loaded once per run.

The run-level tests count commands on a real ``redis-server`` (``INFO commandstats``) and
read back what the client and the dashboard read.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

import cloudpickle
import numpy as np
import pytest
import redis.asyncio as aioredis

from faasplan.runtime import LocalFaaS, new_key, run
from faasplan.runtime.events import LOG_BATCH, LogStream, Outbox, event_json, events_from_json
from faasplan.runtime.keys import RunKeys
from faasplan.runtime.security import Signer
from faasplan.worker.log import Event
from faasplan.workflow import Workflow, task
from faasplan.workflow.codec import decode, encode
from faasplan.workflow.local import run_local
from faasplan.workloads import tree_reduction

pytest_plugins = ("conftest_redis",)

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def ev(i: int, kind: str = "execute") -> Event:
    return Event("flex-a", kind, f"t{i}", None, 8 * i, float(i), float(i) + 0.5, "")


# -- reading stream entries ----------------------------------------------------------------
def test_an_entry_holds_an_array_of_events_or_one_event() -> None:
    events = [ev(i) for i in range(3)]
    batch = "[" + ",".join(event_json(e) for e in events) + "]"
    assert events_from_json(batch) == events
    assert events_from_json(event_json(events[1])) == [events[1]]  # one object: one event
    with pytest.raises(ValueError):
        events_from_json("not json")
    with pytest.raises(KeyError):
        events_from_json('[{"w": "x"}]')


# -- the log stream and the outbox on a real server ------------------------------------------
def _entries(redis_server: Any, key: str) -> list[list[Event]]:
    return [events_from_json(fields[b"e"])
            for _, fields in redis_server.client().xrange(key)]


def test_a_burst_of_log_events_is_one_stream_entry(redis_server: Any) -> None:
    key = f"fp:burst-{new_key().hex()[:8]}:log"

    async def main() -> None:
        client = aioredis.from_url(redis_server.url)
        stream = LogStream(client, key, create=True, delay_s=0.05)
        for i in range(5):
            stream.put(ev(i))
        assert redis_server.client().exists(key) == 0  # waiting for more to join
        await asyncio.sleep(0.3)  # the delay passes: pushed without close()
        for i in range(5, 5 + LOG_BATCH + 1):
            stream.put(ev(i))
        await stream.close()  # at once, in entries of at most LOG_BATCH events
        await client.aclose()

    asyncio.run(main())
    entries = _entries(redis_server, key)
    assert [len(e) for e in entries] == [5, LOG_BATCH, 1]
    assert [x for e in entries for x in e] == [ev(i) for i in range(6 + LOG_BATCH)]
    redis_server.client().delete(key)


def test_take_hands_over_what_is_queued_for_the_callers_own_write(redis_server: Any) -> None:
    key = f"fp:take-{new_key().hex()[:8]}:log"

    async def main() -> list[str]:
        client = aioredis.from_url(redis_server.url)
        stream = LogStream(client, key, create=True, delay_s=0.05)
        for i in range(3):
            stream.put(ev(i))
        entries = await stream.take()
        await asyncio.sleep(0.2)  # the timer was cancelled: nothing is pushed behind us
        assert redis_server.client().exists(key) == 0
        async with client.pipeline(transaction=False) as pipe:
            stream.add_to(pipe, entries)
            await pipe.execute()
        await client.aclose()
        return entries

    assert len(asyncio.run(main())) == 1
    assert _entries(redis_server, key) == [[ev(0), ev(1), ev(2)]]
    redis_server.client().delete(key)


def test_lazy_outbox_events_wait_for_the_next_eager_one(redis_server: Any) -> None:
    keys = RunKeys(f"lazy-{new_key().hex()[:8]}")
    signer = Signer(new_key())
    sync = redis_server.client()
    sync.set(keys.manifest, b"m")  # the push script pushes only while the run is on

    async def main() -> list[bytes]:
        client = aioredis.from_url(redis_server.url)
        outbox = Outbox(client, keys, signer, "ctx")
        outbox.put(("done", "a", "w"), lazy=True)
        outbox.put(("done", "b", "w"), lazy=True)
        await asyncio.sleep(0.1)
        assert sync.llen(keys.events) == 0
        outbox.put(("sink", "b"))  # eager: takes the lazy ones along, in order
        await outbox.close()
        outbox.put(("done", "c", "w"), lazy=True)
        left = await outbox.take()
        await client.aclose()
        return left

    left = asyncio.run(main())
    pushed = [signer.loads("ctx", raw) for raw in sync.lrange(keys.events, 0, -1)]
    assert pushed == [("done", "a", "w"), ("done", "b", "w"), ("sink", "b")]
    assert [signer.loads("ctx", raw) for raw in left] == [("done", "c", "w")]
    sync.delete(keys.manifest, keys.events)


# -- decoding: task code loaded once ----------------------------------------------------------
@task
def double(x):
    return 2 * x


def test_decoding_with_a_code_cache_loads_each_function_once() -> None:
    wf = Workflow([double(double(i), task_id=f"d{i}") for i in range(3)], name="doubles")
    blob = encode(wf).blob
    loaded: dict[bytes, Any] = {}
    first, second = decode(blob, loaded_code=loaded), decode(blob, loaded_code=loaded)
    assert len(loaded) == 1  # one function, pickled by value
    fn = next(iter(loaded.values()))
    assert all(n.func.fn is fn for w in (first, second) for n in w.tasks.values())
    assert decode(blob).tasks["d0"].func.fn is not fn  # without the cache: loaded again
    assert run_local(second) == run_local(wf)


# -- a real run ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool(redis_server: Any) -> Iterator[tuple[LocalFaaS, bytes]]:
    key = new_key()
    with LocalFaaS(redis_server.url, key, max_running=2, max_processes=2,
                   keep_alive_s=300) as faas:
        yield faas, key


def _calls(info: dict[str, Any], command: str) -> int:
    stats = info.get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


def test_a_run_writes_about_one_log_entry_per_invocation(
        redis_server: Any, pool: tuple[LocalFaaS, bytes]) -> None:
    faas, key = pool
    wf = tree_reduction(leaves=32, leaf_size=4)
    run(wf, None, redis_server.url, hmac_key=key, invoker=faas, timeout_s=120)  # warm
    sync = redis_server.client()
    sync.config_resetstat()
    result = run(wf, None, redis_server.url, hmac_key=key, invoker=faas, timeout_s=120,
                 keep_data=True)
    stats = sync.info("commandstats")
    assert np.array_equal(result.result, run_local(wf))
    invocations = result.trace.invocations
    assert invocations == 32
    log_key = RunKeys(result.run_id).log
    entries = _entries(redis_server, log_key)
    events = [x for e in entries for x in e]
    # What the client's decision log holds reached the stream, each event once (the
    # client re-times its copy, so times are left out).
    def what(log: Any) -> list[tuple[Any, ...]]:
        return sorted((e.worker, e.kind, e.task or "", e.key or "") for e in log)

    assert what(events) == what(result.trace.log)
    assert sum(e.kind == "execute" for e in events) == len(wf)
    # One entry per invocation (its last, written with its end), plus the client's and a
    # few timed flushes of long invocations; it was about one per event (~7 per task).
    assert len(entries) <= invocations + 8
    assert _calls(stats, "xadd") == len(entries)
    assert len(events) > 4 * len(entries)
    sync.delete(*sync.keys(f"fp:{result.run_id}:*"))


def test_progress_still_reaches_the_client(redis_server: Any,
                                           pool: tuple[LocalFaaS, bytes]) -> None:
    faas, key = pool
    seen: list[Any] = []
    wf = tree_reduction(leaves=8, leaf_size=4)
    run(wf, None, redis_server.url, hmac_key=key, invoker=faas, timeout_s=120,
        progress=seen.append)
    assert [p.done for p in seen] == list(range(1, len(wf) + 1))
    assert seen[-1].total == len(wf)
    assert sum(seen[-1].per_worker.values()) == len(wf)
    assert {p.task for p in seen} == set(wf.topological_order)
