"""The key-value store (Redis) as the simulator sees it: keys, sets, channels, timing.

Every operation costs one round trip (``latency_ms``). Uploads and downloads also move
their bytes through a :class:`~faasplan.simulator.network.FairShareNetwork`, so
concurrent transfers share the server's bandwidth and each endpoint's bandwidth; the
bytes flow as soon as the operation is issued and the round trip is paid at the end
(request and acknowledgement folded together). A stored key is visible to others once
its bytes are in; its writer hears back one round trip later. A track or a notification
sent behind a store, in the same pipeline, shares the store's round trip
(:meth:`Storage.track_now`, :meth:`Storage.notify_now`).

Streaming: while a streamed upload is under way, a reader that asks for the key with
``stream=True`` follows the writer and finishes one round trip after the upload's bytes
are in. The follower's copy is not charged to the shared bandwidth (it reads chunks the
server relays anyway); a reader arriving after the upload ended does a normal download.
"""

from __future__ import annotations

from typing import Any

import simpy
from mypy_extensions import mypyc_attr
from simpy.events import NORMAL, Event

from faasplan.simulator.clock import Done, clock_of
from faasplan.simulator.errors import SimulationError
from faasplan.simulator.network import Endpoint, FairShareNetwork
from faasplan.worker.effects import Payload


class TransferRecord:
    """One upload or download: requested, data available, finished (ms), bytes, streamed.

    While the transfer is under way it also holds the event to fire (or the callback to
    call) and the payload.
    """

    __slots__ = ("done", "end", "event", "issued", "key", "nbytes", "payload", "ready",
                 "stream", "streamed")

    def __init__(self, issued: float) -> None:
        self.issued = issued
        self.ready = issued
        self.end = issued
        self.nbytes = 0
        self.streamed = False
        self.stream = False
        self.key = ""
        self.event: Event | None = None
        self.done: Done | None = None
        self.payload: Payload | None = None

    @property
    def ms(self) -> float:
        """Transfer time, not counting the wait for the key to exist."""
        return self.end - self.ready


# Compiled with the simulator's core (see setup.py), yet open to subclasses written in
# Python: tests and users model lossy or slow stores that way.
@mypyc_attr(allow_interpreted_subclasses=True)
class Storage:
    """Keys, dependency sets and notification channels with round-trip and transfer times.

    Parameters
    ----------
    env : simpy.Environment
        Time in ms.
    network : FairShareNetwork
        Carries the bytes of uploads and downloads.
    latency_ms : float
        Round trip of one operation.
    transfer_overhead_ms : float
        Added to every upload and download (not to set and channel operations).
    """

    def __init__(self, env: simpy.Environment, network: FairShareNetwork,
                 latency_ms: float, transfer_overhead_ms: float = 0.0) -> None:
        if latency_ms < 0 or transfer_overhead_ms < 0:
            raise ValueError(f"storage latency and transfer overhead must be >= 0 ms, got "
                             f"{latency_ms} and {transfer_overhead_ms}")
        self.env = env
        self.clock = clock_of(env)  # the time, read where compiled code reads it directly
        self.network = network
        self.latency_ms = latency_ms
        self._answer_ms = latency_ms + transfer_overhead_ms
        self.data: dict[str, Payload] = {}
        self.stored_at: dict[str, float] = {}
        self.sets: dict[str, set[str]] = {}
        self.notified: dict[str, float] = {}
        self._waiting: dict[str, list[tuple[Endpoint, TransferRecord]]] = {}
        self._streams: dict[str, list[TransferRecord]] = {}
        self._listeners: dict[str, list[Event | Done]] = {}

    # -- data -----------------------------------------------------------------------------
    def fetch(self, key: str, endpoint: Endpoint, record: TransferRecord, *,
              wait: bool = False, stream: bool = False, task: str | None = None,
              done: Done | None = None) -> Event | None:
        """Download ``key`` -> event with the :class:`Payload`.

        ``wait``: block until the key is stored (or, with ``stream``, until a streamed
        upload of it starts). Without ``wait`` a missing key is an error. ``done``: call
        ``done(payload)`` then instead (queued where the event would fire; see
        :mod:`faasplan.simulator.clock`) and return ``None``.
        """
        event = None
        if done is None:
            event = record.event = Event(self.env)
        else:
            record.done = done
        record.key = key
        payload = self.data.get(key)
        if payload is not None:
            self._download(payload, endpoint, record)
        elif stream and key in self._streams:
            self._follow(key, record)
        elif wait:
            record.stream = stream
            self._waiting.setdefault(key, []).append((endpoint, record))
        else:
            raise SimulationError(
                f"fetch of {key!r} for task {task!r} at t={self.clock.now:.3f} ms, but the key "
                f"was never stored; the worker logic only fetches without waiting inputs it "
                f"knows exist, so the plan and the worker logic disagree")
        return event

    def fetch_many(self, keys: list[str], endpoint: Endpoint, records: list[TransferRecord],
                   done: Done, *, tasks: list[str | None] | None = None) -> None:
        """Download several stored keys as one pipelined request; call ``done`` with their
        payloads, in order, when the reply is in.

        Their bytes move as one transfer and the request costs one round trip (a Redis
        ``MGET``, which is how the runtime reads several inputs that already exist). Each
        key gets its own record: issued and ready now, ended when the reply is in. A key
        that was never stored is an error, as for :meth:`fetch` without ``wait``.
        """
        data = self.data
        payloads: list[Payload] = []
        total = 0
        now = self.clock.now
        for i, key in enumerate(keys):
            payload = data.get(key)
            if payload is None:
                task = tasks[i] if tasks is not None else None
                raise SimulationError(
                    f"fetch of {key!r} for task {task!r} at t={now:.3f} ms, but the key "
                    f"was never stored; the worker logic only fetches without waiting inputs "
                    f"it knows exist, so the plan and the worker logic disagree")
            record = records[i]
            record.key = key
            record.nbytes = payload.nbytes
            payloads.append(payload)
            total += payload.nbytes
        self.network.transfer(total, endpoint, self._downloaded_many, (records, payloads, done))

    def _downloaded_many(self, arg: tuple[list[TransferRecord], list[Payload], Done]) -> None:
        records, payloads, done = arg
        clock = self.clock
        at = clock.now + self._answer_ms
        for record in records:
            record.end = at
        clock.at(at, done, payloads)

    def store(self, key: str, payload: Payload, endpoint: Endpoint, record: TransferRecord,
              *, stream: bool = False, done: Done | None = None) -> Event | None:
        """Upload ``payload`` under ``key`` -> event (value ``None``) when acknowledged
        (``done``: call ``done(None)`` then instead, and return ``None``)."""
        event = None
        if done is None:
            event = record.event = Event(self.env)
        else:
            record.done = done
        record.key = key
        record.payload = payload
        record.nbytes = payload.nbytes
        if stream:
            self._start_stream(key)
        self.network.transfer(payload.nbytes, endpoint, self._stored, record)
        return event

    def store_many(self, items: list[tuple[str, Payload]], endpoint: Endpoint,
                   record: TransferRecord) -> Event:
        """Upload several keys as one pipelined batch -> event (value ``None``) when
        acknowledged.

        Their bytes move as one transfer; every key becomes visible when the batch's last
        byte is in, and the batch costs one round trip (a Redis pipeline of ``SET`` commands,
        which is how the runtime's client stores the DAG parts and literals).
        """
        event = record.event = Event(self.env)
        record.key = items[0][0] if items else ""
        record.nbytes = sum(p.nbytes for _, p in items)
        self.network.transfer(record.nbytes, endpoint, self._stored_many, (items, record))
        return event

    def _stored_many(self, arg: tuple[list[tuple[str, Payload]], TransferRecord]) -> None:
        items, record = arg
        now = self.clock.now
        for key, payload in items:
            self.data[key] = payload
            self.stored_at[key] = now
        self._answer(record, None)
        for key, payload in items:
            for rec in self._streams.pop(key, ()):
                rec.nbytes = payload.nbytes
                self._answer(rec, payload)
            for endpoint, rec in self._waiting.pop(key, ()):
                self._download(payload, endpoint, rec)

    def _download(self, payload: Payload, endpoint: Endpoint, record: TransferRecord) -> None:
        record.ready = self.clock.now
        record.nbytes = payload.nbytes
        record.payload = payload
        self.network.transfer(payload.nbytes, endpoint, self._downloaded, record)

    def _downloaded(self, record: TransferRecord) -> None:
        done = record.done
        if done is None:
            self._answer(record, record.payload)
            return
        clock = self.clock  # :meth:`_answer`, inlined: one call per download
        record.end = at = clock.now + self._answer_ms
        record.done = None
        clock.at(at, done, record.payload)

    def _answer(self, record: TransferRecord, value: Any) -> None:
        """Fire the record's event one round trip from now (like a Timeout, value set)."""
        clock = self.clock
        delay = self._answer_ms
        record.end = at = clock.now + delay
        done = record.done
        if done is not None:
            record.done = None  # the record outlives the run (traces are pickled)
            clock.at(at, done, value)
            return
        event = record.event
        assert event is not None
        record.event = None
        event._ok = True
        event._value = value
        self.env.schedule(event, NORMAL, delay)

    def _start_stream(self, key: str) -> None:
        self._streams[key] = []
        waiters = self._waiting.get(key)
        if not waiters:
            return
        keep = []
        for endpoint, rec in waiters:
            if rec.stream:
                self._follow(key, rec)
            else:
                keep.append((endpoint, rec))
        if keep:
            self._waiting[key] = keep
        else:
            del self._waiting[key]

    def _follow(self, key: str, record: TransferRecord) -> None:
        record.ready = self.clock.now
        record.streamed = True
        self._streams[key].append(record)

    def _stored(self, record: TransferRecord) -> None:
        key = record.key
        payload = record.payload
        assert payload is not None
        self.data[key] = payload
        self.stored_at[key] = self.clock.now
        self._answer(record, None)
        for rec in self._streams.pop(key, ()):
            rec.nbytes = payload.nbytes
            self._answer(rec, payload)
        for endpoint, rec in self._waiting.pop(key, ()):
            self._download(payload, endpoint, rec)

    # -- sets and channels ------------------------------------------------------------------
    def track(self, task: str, upstream: str, expected: int, *, done: Done | None = None
              ) -> Event | None:
        """Add ``upstream`` to ``task``'s set -> event with "the set just reached expected".

        Applied atomically when issued (operations reach the server in issue order); the
        answer arrives one round trip later (``done``: passed to ``done`` then instead,
        and ``None`` returned).
        """
        ready = self.track_now(task, upstream, expected)
        if done is None:
            return self.env.timeout(self.latency_ms, ready)
        self.clock.later(self.latency_ms, done, ready)
        return None

    def track_now(self, task: str, upstream: str, expected: int) -> bool:
        """:meth:`track` whose answer is already in: it went to the server behind a store,
        in the store's round trip (see :meth:`store`). -> "the set just reached expected"."""
        members = self.sets.get(task)
        if members is None:
            members = self.sets[task] = set()
        before = len(members)
        members.add(upstream)
        return len(members) == expected and len(members) != before

    def notify(self, channel: str, *, done: Done | None = None) -> Event | None:
        """Signal ``channel``; it counts as notified, and listeners wake, a round trip later.

        -> event fired then (``done``: ``done(None)`` called then instead, ``None`` returned).
        """
        lat = self.latency_ms
        self._notified(channel, lat)
        if done is None:
            return self.env.timeout(lat)
        self.clock.later(lat, done, None)
        return None

    def notify_now(self, channel: str) -> None:
        """:meth:`notify` sent behind a store, in its round trip: the channel counts as
        notified now, when the writer hears back, and its listeners wake now."""
        self._notified(channel, 0.0)

    def _notified(self, channel: str, delay: float) -> None:
        """``channel`` counts as notified ``delay`` ms from now; its listeners wake then."""
        clock = self.clock
        self.notified.setdefault(channel, clock.now + delay)
        for listener in self._listeners.pop(channel, ()):
            if isinstance(listener, Event):
                listener._ok = True
                listener._value = None
                self.env.schedule(listener, NORMAL, delay)
            else:
                clock.later(delay, listener, None)

    def wait_for(self, channel: str, *, done: Done | None = None) -> Event | bool | None:
        """Event fired when ``channel`` is notified, or ``None`` if it already was.

        ``done``: call ``done(None)`` when it is notified and return ``True``, or return
        ``None`` without calling it if it already was.
        """
        at = self.notified.get(channel)
        env = self.env
        now = self.clock.now
        if at is not None:
            if at <= now:
                return None
            if done is None:
                return env.timeout(at - now)
            self.clock.later(at - now, done, None)
            return True
        if done is None:
            event = Event(env)
            self._listeners.setdefault(channel, []).append(event)
            return event
        self._listeners.setdefault(channel, []).append(done)
        return True

    def blocked(self) -> dict[str, list[str]]:
        """What is still waited for: keys never stored and channels never notified."""
        return {"keys": sorted(self._waiting), "channels": sorted(self._listeners)}
