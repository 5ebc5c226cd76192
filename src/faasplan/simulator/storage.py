"""The key-value store (Redis) as the simulator sees it: keys, sets, channels, timing.

Every operation costs one round trip (``latency_ms``); uploads and downloads also move
their bytes through a :class:`~faasplan.simulator.network.FairShareNetwork`, so concurrent
transfers share the server's bandwidth and each endpoint's bandwidth.

Streaming: while a streamed upload is under way, a reader that asks for the key with
``stream=True`` follows the writer and finishes one round trip after the upload ends. The
follower's copy is not charged to the shared bandwidth (it reads chunks the server is
relaying anyway); a reader arriving after the upload ended does a normal download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import simpy
from simpy.events import Event

from faasplan.simulator.errors import SimulationError
from faasplan.simulator.network import Endpoint, FairShareNetwork
from faasplan.worker import Payload


class TransferRecord:
    """Timing of one upload or download: requested, data available, finished (ms)."""

    __slots__ = ("end", "issued", "nbytes", "ready", "streamed")

    def __init__(self, issued: float) -> None:
        self.issued = issued
        self.ready = issued
        self.end = issued
        self.nbytes = 0
        self.streamed = False

    @property
    def ms(self) -> float:
        """Transfer time, not counting the wait for the key to exist."""
        return self.end - self.ready


@dataclass
class _Waiter:
    endpoint: Endpoint
    stream: bool
    event: Event
    record: TransferRecord


@dataclass
class _Stream:
    followers: list[tuple[Event, TransferRecord]] = field(default_factory=list)


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
    """

    def __init__(self, env: simpy.Environment, network: FairShareNetwork,
                 latency_ms: float) -> None:
        if latency_ms < 0:
            raise ValueError(f"storage latency must be >= 0 ms, got {latency_ms}")
        self.env = env
        self.network = network
        self.latency_ms = latency_ms
        self.data: dict[str, Payload] = {}
        self.stored_at: dict[str, float] = {}
        self.sets: dict[str, set[str]] = {}
        self.notified: dict[str, float] = {}
        self._waiting: dict[str, list[_Waiter]] = {}
        self._streams: dict[str, _Stream] = {}
        self._listeners: dict[str, list[Event]] = {}

    # -- data -----------------------------------------------------------------------------
    def fetch(self, key: str, endpoint: Endpoint, record: TransferRecord, *,
              wait: bool = False, stream: bool = False, task: str | None = None) -> Event:
        """Download ``key`` -> event with the :class:`Payload`.

        ``wait``: block until the key is stored (or, with ``stream``, until a streamed
        upload of it starts). Without ``wait`` a missing key is an error.
        """
        event = Event(self.env)
        payload = self.data.get(key)
        if payload is not None:
            self._download(payload, endpoint, event, record)
        elif stream and key in self._streams:
            self._follow(self._streams[key], event, record)
        elif wait:
            self._waiting.setdefault(key, []).append(_Waiter(endpoint, stream, event, record))
        else:
            raise SimulationError(
                f"fetch of {key!r} for task {task!r} at t={self.env.now:.3f} ms, but the key "
                f"was never stored; the worker logic only fetches without waiting inputs it "
                f"knows exist, so the plan and the worker logic disagree")
        return event

    def store(self, key: str, payload: Payload, endpoint: Endpoint, record: TransferRecord,
              *, stream: bool = False) -> Event:
        """Upload ``payload`` under ``key`` -> event (value ``None``) when it is stored."""
        event = Event(self.env)
        record.nbytes = payload.nbytes

        def begin() -> None:
            record.ready = self.env.now
            if stream:
                self._start_stream(key)
            self.network.transfer(payload.nbytes, endpoint, lambda: self._stored(
                key, payload, event, record))

        self._after_round_trip(begin)
        return event

    def _download(self, payload: Payload, endpoint: Endpoint, event: Event,
                  record: TransferRecord) -> None:
        record.ready = self.env.now
        record.nbytes = payload.nbytes

        def done() -> None:
            record.end = self.env.now
            event.succeed(payload)

        self._after_round_trip(lambda: self.network.transfer(payload.nbytes, endpoint, done))

    def _start_stream(self, key: str) -> None:
        s = self._streams[key] = _Stream()
        waiters = self._waiting.get(key)
        if not waiters:
            return
        keep = []
        for w in waiters:
            if w.stream:
                self._follow(s, w.event, w.record)
            else:
                keep.append(w)
        if keep:
            self._waiting[key] = keep
        else:
            del self._waiting[key]

    def _follow(self, s: _Stream, event: Event, record: TransferRecord) -> None:
        record.ready = self.env.now
        record.streamed = True
        s.followers.append((event, record))

    def _stored(self, key: str, payload: Payload, event: Event, record: TransferRecord) -> None:
        now = self.env.now
        record.end = now
        self.data[key] = payload
        self.stored_at[key] = now
        event.succeed(None)
        s = self._streams.pop(key, None)
        if s is not None:
            for ev, rec in s.followers:
                rec.nbytes = payload.nbytes
                self._after_round_trip(_finisher(self.env, ev, rec, payload))
        for w in self._waiting.pop(key, ()):
            self._download(payload, w.endpoint, w.event, w.record)

    # -- sets and channels ------------------------------------------------------------------
    def track(self, task: str, upstream: str, expected: int) -> Event:
        """Add ``upstream`` to ``task``'s set -> event with "the set just reached expected".

        Applied atomically when issued (operations reach the server in issue order); the
        answer arrives one round trip later.
        """
        members = self.sets.setdefault(task, set())
        before = len(members)
        members.add(upstream)
        ready = len(members) == expected and len(members) != before
        return self.env.timeout(self.latency_ms, ready)

    def notify(self, channel: str) -> Event:
        """Signal ``channel``; listeners wake when the signal reaches the server."""
        event = Event(self.env)

        def arrive() -> None:
            self.notified.setdefault(channel, self.env.now)
            for ev in self._listeners.pop(channel, ()):
                ev.succeed(None)
            event.succeed(None)

        self._after_round_trip(arrive)
        return event

    def wait_for(self, channel: str) -> Event | None:
        """Event fired when ``channel`` is notified, or ``None`` if it already was."""
        if channel in self.notified:
            return None
        event = Event(self.env)
        self._listeners.setdefault(channel, []).append(event)
        return event

    def blocked(self) -> dict[str, list[str]]:
        """What is still waited for: keys never stored and channels never notified."""
        return {"keys": sorted(self._waiting), "channels": sorted(self._listeners)}

    def _after_round_trip(self, action: Callable[[], None]) -> None:
        if self.latency_ms <= 0:
            action()
            return
        timeout = self.env.timeout(self.latency_ms)
        timeout.callbacks.append(lambda _: action())


def _finisher(env: simpy.Environment, event: Event, record: TransferRecord, payload: Payload
              ) -> Callable[[], None]:
    def finish() -> None:
        record.end = env.now
        event.succeed(payload)
    return finish

