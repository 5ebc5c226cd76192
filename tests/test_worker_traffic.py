"""A worker's Redis round trips: decision-log events batched into few stream entries,
progress events sent with the invocation's last write, task code loaded once per run.

The run-level tests count commands on a real ``redis-server`` (``INFO commandstats``) and
read back what the client and the dashboard read.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import cloudpickle
import numpy as np
import pytest
import redis.asyncio as aioredis

from faasplan.runtime import LocalFaaS, new_key, run
from faasplan.runtime.driver import Driver, _Write
from faasplan.runtime.events import (
    FLUSH_DELAY_S,
    LOG_BATCH,
    LogStream,
    Outbox,
    event_json,
    events_from_json,
)
from faasplan.runtime.keys import RunKeys
from faasplan.runtime.security import Signer
from faasplan.worker import Execute, Fetch, Notify, Parallel, Payload, Store, Track
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
def double(x: int) -> int:
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
    # One entry per invocation (its last, written with its end), plus the client's, plus
    # the timed flushes of invocations that log for longer than the flush delay (on a
    # loaded machine, most of them); it was about one per event (~7 per task).
    spans: dict[str, tuple[float, float]] = {}
    for e in events:
        lo, hi = spans.get(e.worker, (e.start, e.end))
        spans[e.worker] = (min(lo, e.start), max(hi, e.end))
    timed = sum(int((hi - lo) / (FLUSH_DELAY_S * 1000.0)) for lo, hi in spans.values())
    assert len(spans) == invocations + 1  # and the client
    assert len(entries) <= invocations + 1 + timed + 4
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


# -- a store and the write after it: one round trip ------------------------------------------
class _Sent(Driver):
    """A driver whose Redis calls are recorded instead of sent: the stepping logic of
    :meth:`Driver._drive` alone (pure logic; the runs above and ``test_faults`` drive the
    real thing on a real server). ``log`` lists the round trips (the keys written) and the
    other effects performed, in order."""

    def __init__(self) -> None:  # no run: only what _drive consults
        self.log: list[Any] = []
        self.events: list[Event] = []
        self._log = None
        self._ahead, self._lookahead = 0.0, 0
        self._held: dict[float, list[Event]] = {}
        self._resumed: dict[float, float] = {}

    async def _store_write(self, s: Store, main: bool) -> Any:
        if s.stream:
            self.log.append(f"streamed {s.key}")  # uploaded in chunks, nothing left
            return None
        return _Write(None, [s.key], [], lambda _r: None)

    def _track_write(self, t: Track) -> Any:
        return _Write(None, [f"track:{t.task}"], [], lambda _r: t.task == "ready")

    def _notify_write(self, n: Notify) -> Any:
        return _Write(None, [f"notify:{n.channel}"], [], lambda _r: None)

    async def _send(self, writes: list[Any]) -> list[Any]:
        self.log.append([w.keys[0] for w in writes])
        return [w.done(None) for w in writes]

    async def _perform(self, effect: Any, main: bool) -> Any:
        real: dict[type, Callable[[Any, bool], Awaitable[Any]]] = {
            Track: self._track, Notify: self._notify, Parallel: self._parallel}
        handler = real.get(type(effect))
        if handler is not None:
            return await handler(effect, main)
        self.log.append(type(effect).__name__)
        return Payload(1)


def _branch(effects: list[Any], seen: list[Any]) -> Any:
    for effect in effects:
        seen.append((yield effect))
    return "end"


def _drive(effects: list[Any]) -> tuple[list[Any], list[Any], Any]:
    driver, seen = _Sent(), []  # type: ignore[var-annotated]
    out = asyncio.run(driver._drive(_branch(effects, seen), main=True))
    return driver.log, seen, out


def test_a_store_and_the_track_or_notify_after_it_share_one_round_trip() -> None:
    log, seen, end = _drive([Store("out-a", Payload(1), task="a"), Track("ready", "a", 2),
                             Store("out-b", Payload(1)), Notify("sink-b"),
                             Store("out-c", Payload(1)),
                             Parallel((Track("x", "c", 2), Track("ready", "c", 2)))])
    assert log == [["out-a", "track:ready"], ["out-b", "notify:sink-b"],
                   ["out-c", "track:x", "track:ready"]]
    # Every effect got its own answer, in order, as if performed one by one.
    assert seen == [None, True, None, None, None, [False, True]]
    assert end == "end"


def test_a_store_before_anything_else_is_acknowledged_first() -> None:
    log, seen, end = _drive([Store("out-a", Payload(1)), Execute("b", {}),
                             Store("out-b", Payload(1)),
                             Parallel((Track("x", "b", 2), Fetch("in"))),
                             Track("ready", "b", 2), Parallel((Track("y", "b", 2),)),
                             Store("out-c", Payload(1))])
    # The store went alone, before the execution, before a parallel of other effects, and
    # (the last one, with nothing after it) before the branch ended. Tracks without a
    # store before them: one round trip each, or one for a parallel set of them.
    assert log == [["out-a"], "Execute", ["out-b"], ["track:x"], "Fetch", ["track:ready"],
                   ["track:y"], ["out-c"]]
    assert seen == [None, Payload(1), None, [False, Payload(1)], True, [False], None]
    assert end == "end"


def test_a_streamed_store_is_not_held_back() -> None:
    log, seen, _ = _drive([Store("out-a", Payload(1), stream=True), Track("ready", "a", 2)])
    assert log == ["streamed out-a", ["track:ready"]] and seen == [None, True]


def test_a_store_is_made_even_when_the_branch_fails_right_after_it() -> None:
    def failing() -> Any:
        yield Store("out-a", Payload(1))
        raise RuntimeError("worker logic failed")

    driver = _Sent()
    with pytest.raises(RuntimeError, match="worker logic failed"):
        asyncio.run(driver._drive(failing(), main=True))
    assert driver.log == [["out-a"]]


def test_the_log_times_a_store_to_its_acknowledgement() -> None:
    from faasplan.worker.log import logged

    class Slow(_Sent):
        async def _send(self, writes: list[Any]) -> list[Any]:
            await asyncio.sleep(0.03)  # the round trip
            return await super()._send(writes)

    driver = Slow()
    effects = [Store("out-a", Payload(1), task="a"), Track("ready", "a", 2),
               Store("out-b", Payload(1), task="b"), Execute("c", {})]
    branch = logged(_branch(effects, []), "flex-a", driver._emit, driver._clock)
    asyncio.run(driver._drive(branch, main=True))
    store_a, track, store_b, execute = driver.events
    assert [e.kind for e in driver.events] == ["store", "track", "store", "execute"]
    assert all(e.start > 0 and e.end >= e.start for e in driver.events)
    # Sent together: the track starts before the store's acknowledgement, both end with it.
    assert store_a.end - store_a.start >= 25 and track.start <= store_a.end <= track.end
    # A store with nothing to share its round trip: the next effect starts after it ends.
    assert store_b.end - store_b.start >= 25 and execute.start >= store_b.end


def test_a_track_or_notify_behind_a_store_writes_nothing_if_the_store_did_not(
        redis_server: Any) -> None:
    from faasplan.runtime.redisio import NOTIFY, TRACK

    sync = redis_server.client()
    sync.set("g:manifest", "m")
    sync.hset("g:attempts", mapping={"@epoch": "e1", "inv-1": "1"})
    track, notify = sync.register_script(TRACK), sync.register_script(NOTIFY)
    fence = ["g:deps", "g:owners", "g:manifest", "g:attempts"]
    args = ["up-a", 1, "inv-1", "fan", "1", "e1", 0]
    # The stored output is missing (its store was refused): nothing is recorded.
    assert track(keys=[*fence, "g:out"], args=args) == [-3]
    assert notify(keys=["g:flag", "g:manifest", "g:attempts", "g:out"],
                  args=["g:chan", "inv-1", "1", "e1", 0]) == -3
    assert not sync.exists("g:deps", "g:owners", "g:flag")
    # Once it is there, the same calls go through (and without the guard key, as before).
    sync.set("g:out", "v")
    assert track(keys=[*fence, "g:out"], args=args)[0] == 1
    assert notify(keys=["g:flag", "g:manifest", "g:attempts", "g:out"],
                  args=["g:chan", "inv-1", "1", "e1", 0]) == 1
    assert track(keys=["g:deps2", *fence[1:]], args=["up-b", 2, "inv-1", "fan2", "1", "e1",
                                                      0]) == [0]
    assert sync.scard("g:deps2") == 1
    sync.delete("g:manifest", "g:attempts", "g:deps", "g:deps2", "g:owners", "g:flag",
                "g:out")


# -- inputs known to exist: one MGET -------------------------------------------------------
@task
def part(i: int) -> list[int]:
    return list(range(i, i + 100))


@task
def total(*parts: list[int]) -> int:
    return sum(map(sum, parts))


def test_inputs_known_to_exist_are_read_with_one_mget(
        redis_server: Any, pool: tuple[LocalFaaS, bytes]) -> None:
    faas, key = pool
    # Flexible workers: whoever completes the fan-in reads the other three outputs, which
    # exist, with one MGET (and the sink's own DAG part with them, when it goes by reference).
    wf = Workflow(total(*(part(i, task_id=f"p{i}") for i in range(4)), task_id="sum"))
    sync = redis_server.client()
    sync.config_resetstat()
    result = run(wf, None, redis_server.url, hmac_key=key, invoker=faas, timeout_s=120)
    stats = sync.info("commandstats")
    assert result.result == run_local(wf)
    assert _calls(stats, "mget") == 1  # the small DAG travels inline: no parts to read
    downs, _ups = result.trace.transfers["sum"]
    assert sum(n for n, _ms, _s in downs) > 3 * 100  # three pickled lists came through it
