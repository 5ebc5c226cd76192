"""The key-value store (Redis) as the simulator sees it: keys, sets, channels, timing.

Every operation costs one round trip (``latency_ms``). Uploads and downloads also move
their bytes through a :class:`~faasplan.simulator.network.FairShareNetwork`, so
concurrent transfers share the server's bandwidth and each endpoint's bandwidth; the
bytes flow as soon as the operation is issued and the round trip is paid at the end
(request and acknowledgement folded together). A stored key is visible to others once
its bytes are in; its writer hears back one round trip later.

Streaming: while a streamed upload is under way, a reader that asks for the key with
``stream=True`` follows the writer and finishes one round trip after the upload's bytes
are in. The follower's copy is not charged to the shared bandwidth (it reads chunks the
server relays anyway); a reader arriving after the upload ended does a normal download.
"""

from __future__ import annotations

from typing import Any

import simpy
from simpy.events import NORMAL, Event

from faasplan.simulator.errors import SimulationError
from faasplan.simulator.network import Endpoint, FairShareNetwork
from faasplan.worker import Payload


class TransferRecord:
    """One upload or download: requested, data available, finished (ms), bytes, streamed.

    While the transfer is under way it also holds the event to fire and the payload.
    """

    __slots__ = ("end", "event", "issued", "key", "nbytes", "payload", "ready", "stream",
                 "streamed")

    def __init__(self, issued: float) -> None:
        self.issued = issued
        self.ready = issued
        self.end = issued
        self.nbytes = 0
        self.streamed = False
        self.stream = False
        self.key = ""
        self.event: Event | None = None
        self.payload: Payload | None = None

    @property
    def ms(self) -> float:
        """Transfer time, not counting the wait for the key to exist."""
        return self.end - self.ready


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
        self.network = network
        self.latency_ms = latency_ms
        self._answer_ms = latency_ms + transfer_overhead_ms
        self.data: dict[str, Payload] = {}
        self.stored_at: dict[str, float] = {}
        self.sets: dict[str, set[str]] = {}
        self.notified: dict[str, float] = {}
        self._waiting: dict[str, list[tuple[Endpoint, TransferRecord]]] = {}
        self._streams: dict[str, list[TransferRecord]] = {}
        self._listeners: dict[str, list[Event]] = {}

    # -- data -----------------------------------------------------------------------------
    def fetch(self, key: str, endpoint: Endpoint, record: TransferRecord, *,
              wait: bool = False, stream: bool = False, task: str | None = None) -> Event:
        """Download ``key`` -> event with the :class:`Payload`.

        ``wait``: block until the key is stored (or, with ``stream``, until a streamed
        upload of it starts). Without ``wait`` a missing key is an error.
        """
        event = record.event = Event(self.env)
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
                f"fetch of {key!r} for task {task!r} at t={self.env.now:.3f} ms, but the key "
                f"was never stored; the worker logic only fetches without waiting inputs it "
                f"knows exist, so the plan and the worker logic disagree")
        return event

    def store(self, key: str, payload: Payload, endpoint: Endpoint, record: TransferRecord,
              *, stream: bool = False) -> Event:
        """Upload ``payload`` under ``key`` -> event (value ``None``) when acknowledged."""
        event = record.event = Event(self.env)
        record.key = key
        record.payload = payload
        record.nbytes = payload.nbytes
        if stream:
            self._start_stream(key)
        self.network.transfer(payload.nbytes, endpoint, self._stored, record)
        return event

    def _download(self, payload: Payload, endpoint: Endpoint, record: TransferRecord) -> None:
        record.ready = self.env.now
        record.nbytes = payload.nbytes
        record.payload = payload
        self.network.transfer(payload.nbytes, endpoint, self._downloaded, record)

    def _downloaded(self, record: TransferRecord) -> None:
        self._answer(record, record.payload)

    def _answer(self, record: TransferRecord, value: Any) -> None:
        """Fire the record's event one round trip from now (like a Timeout, value set)."""
        event = record.event
        assert event is not None
        delay = self._answer_ms
        record.end = self.env.now + delay
        record.event = None  # the record outlives the run (traces are pickled)
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
        record.ready = self.env.now
        record.streamed = True
        self._streams[key].append(record)

    def _stored(self, record: TransferRecord) -> None:
        key = record.key
        payload = record.payload
        assert payload is not None
        self.data[key] = payload
        self.stored_at[key] = self.env.now
        self._answer(record, None)
        for rec in self._streams.pop(key, ()):
            rec.nbytes = payload.nbytes
            self._answer(rec, payload)
        for endpoint, rec in self._waiting.pop(key, ()):
            self._download(payload, endpoint, rec)

    # -- sets and channels ------------------------------------------------------------------
    def track(self, task: str, upstream: str, expected: int) -> Event:
        """Add ``upstream`` to ``task``'s set -> event with "the set just reached expected".

        Applied atomically when issued (operations reach the server in issue order); the
        answer arrives one round trip later.
        """
        members = self.sets.get(task)
        if members is None:
            members = self.sets[task] = set()
        before = len(members)
        members.add(upstream)
        ready = len(members) == expected and len(members) != before
        return self.env.timeout(self.latency_ms, ready)

    def notify(self, channel: str) -> Event:
        """Signal ``channel``; it counts as notified, and listeners wake, a round trip later."""
        lat = self.latency_ms
        self.notified.setdefault(channel, self.env.now + lat)
        for ev in self._listeners.pop(channel, ()):
            ev._ok = True
            ev._value = None
            self.env.schedule(ev, NORMAL, lat)
        return self.env.timeout(lat)

    def wait_for(self, channel: str) -> Event | None:
        """Event fired when ``channel`` is notified, or ``None`` if it already was."""
        at = self.notified.get(channel)
        now = self.env.now
        if at is not None:
            return None if at <= now else self.env.timeout(at - now)
        event = Event(self.env)
        self._listeners.setdefault(channel, []).append(event)
        return event

    def blocked(self) -> dict[str, list[str]]:
        """What is still waited for: keys never stored and channels never notified."""
        return {"keys": sorted(self._waiting), "channels": sorted(self._listeners)}
