"""Redis connections with reconnect backoff, and the atomic scripts of the runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, NoScriptError, OutOfMemoryError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from faasplan.runtime.security import check_redis_url

T = TypeVar("T")

CONNECTION_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError,
                                                   ConnectionError)
"""Errors meaning "Redis is unreachable right now" (retried with backoff)."""

# Blocking commands in this package never block longer than this; the socket timeout
# must exceed it so a healthy blocking read is not mistaken for a dead server.
MAX_BLOCK_S = 1.0
_SOCKET_TIMEOUT_S = 15.0


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether Redis refused a command (or a script's write) for lack of memory."""
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, RedisError) and "OOM command not allowed" in str(exc))


class _Retry(Retry):
    """Retries lost connections, but not a refused authentication (retrying cannot help)."""

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Any,
                              is_retryable: Callable[[Exception], bool] | None = None,
                              with_failure_count: bool = False) -> T:
        def retryable(error: Exception) -> bool:
            if isinstance(error, AuthenticationError):
                return False
            return is_retryable is None or is_retryable(error)

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


def connect(url: str, *, retries: int = 10) -> aioredis.Redis:
    """An asyncio Redis client for ``url`` that retries lost connections with backoff.

    About six seconds of backoff in total (20 ms doubling, capped at 1 s) cover a server
    restart; longer outages surface as ``redis.exceptions.ConnectionError``. A refused
    authentication (no or a wrong password) is raised at once.
    """
    check_redis_url(url)
    return aioredis.Redis.from_url(
        url, decode_responses=False, socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=5.0,
        retry=_Retry(ExponentialBackoff(cap=1.0, base=0.02), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30)


# Fencing. Every write of a worker carries its invocation's attempt number and the run's
# epoch; the scripts check both against the run's ``attempts`` hash (its ``@epoch`` field
# is the epoch of the run that owns the id): a worker paused past its lease, whose
# invocation was claimed again, or a worker of an earlier run with the same id, writes
# nothing more. ``_live`` returns -1 once the run is over (manifest gone, or aborted),
# -2 for a stale writer, 0 for a live one.
FENCE = """
local function _live(manifest, abort, attempts, inv, attempt, epoch)
  if redis.call('EXISTS', manifest) == 0 then return -1 end
  if abort ~= '' and redis.call('EXISTS', abort) == 1 then return -1 end
  if redis.call('HGET', attempts, '@epoch') ~= epoch then return -2 end
  if inv ~= '' and redis.call('HGET', attempts, inv) ~= attempt then return -2 end
  return 0
end
local function _ttl(key, ttl)
  if tonumber(ttl) > 0 then redis.call('PEXPIRE', key, ttl) end
end
"""

# Records that ``upstream`` of a fan-in is done. Returns {1, members} exactly once per
# fan-in: to the invocation whose new member completed the set; a retry of that same
# invocation (same id) gets it again, so a worker killed between Track and Invoke loses
# nothing, while a retried upstream never counts twice; {2, members} when the set holds
# more entries than the fan-in has upstream tasks (written by someone else). The caller
# checks the members' MACs. Otherwise {0}, or {code} of a stopped writer (``_live``).
# KEYS: deps, owners, manifest, attempts, and optionally a key that must exist (the output
# stored just before, in the same pipeline: {-3} and nothing written if it does not);
# ARGV: upstream (marked), expected, inv, task, attempt, epoch, ttl_ms.
TRACK = FENCE + """
local live = _live(KEYS[3], '', KEYS[4], ARGV[3], ARGV[5], ARGV[6])
if live < 0 then return {live} end
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 0 then return {-3} end
local added = redis.call('SADD', KEYS[1], ARGV[1])
_ttl(KEYS[1], ARGV[7])
local count = redis.call('SCARD', KEYS[1])
if count > tonumber(ARGV[2]) then return {2, redis.call('SMEMBERS', KEYS[1])} end
if count ~= tonumber(ARGV[2]) then return {0} end
if added == 1 then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
  _ttl(KEYS[2], ARGV[7])
  return {1, redis.call('SMEMBERS', KEYS[1])}
end
if redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[3] then
  return {1, redis.call('SMEMBERS', KEYS[1])}
end
return {0}
"""

# Claims an invocation for one attempt. 0: already done, failed, or running with a live
# lease (a duplicate entry); -1: the run is over (aborted, cleaned up, Redis lost it, or
# the entry is of an earlier run with the same id); otherwise {attempt number, sealed
# invocation}. The claim event (ARGV[4], sealed by the worker) is pushed in the same step,
# so the client knows of every running invocation even if its worker dies right after
# claiming. ARGV: inv, worker name, lease_ms, claim event, epoch, ttl_ms.
CLAIM = FENCE + """
if _live(KEYS[4], KEYS[5], KEYS[3], '', '', ARGV[5]) < 0 then return {-1, false} end
local st = redis.call('HGET', KEYS[1], ARGV[1])
if st == 'done' or st == 'failed' then return {0, false} end
if st == 'run' and redis.call('EXISTS', KEYS[2]) == 1 then return {0, false} end
redis.call('HSET', KEYS[1], ARGV[1], 'run')
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('RPUSH', KEYS[6], ARGV[4])
_ttl(KEYS[6], ARGV[6])
return {redis.call('HINCRBY', KEYS[3], ARGV[1], 1), redis.call('HGET', KEYS[7], ARGV[1])}
"""

# Puts an invocation whose worker died back on its queue (its reference entry ARGV[4]),
# once: only while it is still marked running and its lease is gone. Returns
# {code, attempts}: code 0 nothing to do (it finished meanwhile), 1 requeued, 2 attempts
# exceed ARGV[3] retries (give up), 3 its stored body is missing.
REQUEUE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'run' then return {0, 0} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {0, 0} end
local attempts = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
if attempts > tonumber(ARGV[3]) then return {2, attempts} end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then return {3, attempts} end
redis.call('HSET', KEYS[1], ARGV[1], 'queued')
redis.call('RPUSH', ARGV[2], ARGV[4])
return {1, attempts}
"""

# Stores an output: the first completed attempt's value is final (SET NX), so every
# consumer sees one version even of a non-deterministic task. 1 stored, 0 an earlier
# attempt's value stands, -1 the run is over, -2 a stale writer.
# KEYS: data, manifest, abort, attempts; ARGV: value, channel, inv, attempt, epoch, ttl_ms.
STORE = FENCE + """
local live = _live(KEYS[2], KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[5])
if live < 0 then return live end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
_ttl(KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[2], '1')
return 1
"""

# Appends stream entries (field/value pairs, ARGV[6:] split into groups of ARGV[5]).
# KEYS: stream, manifest, attempts; ARGV: inv, attempt, epoch, ttl_ms, group size, ...
XADD = FENCE + """
local live = _live(KEYS[2], '', KEYS[3], ARGV[1], ARGV[2], ARGV[3])
if live < 0 then return live end
local n = tonumber(ARGV[5])
for i = 6, #ARGV, n do
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i, i + n - 1))
end
_ttl(KEYS[1], ARGV[4])
return 1
"""

# Sets a notification flag and announces it. KEYS: flag, manifest, attempts, and optionally
# a key that must exist (as for TRACK: -3 and nothing written if it does not);
# ARGV: channel, inv, attempt, epoch, ttl_ms.
NOTIFY = FENCE + """
local live = _live(KEYS[2], '', KEYS[3], ARGV[2], ARGV[3], ARGV[4])
if live < 0 then return live end
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 0 then return -3 end
redis.call('SET', KEYS[1], '1')
_ttl(KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[1], '1')
return 1
"""

# Registers (unless a pre-warm, ARGV[7] == '1') and pushes one invocation of a worker.
# KEYS: inv_state, items, queues, queue, manifest, abort, attempts;
# ARGV: inv id, sealed, queue entry, writer inv, writer attempt, epoch, prewarm, ttl_ms.
ENQUEUE = FENCE + """
local live = _live(KEYS[5], KEYS[6], KEYS[7], ARGV[4], ARGV[5], ARGV[6])
if live < 0 then return live end
if ARGV[7] ~= '1' then
  redis.call('HSETNX', KEYS[1], ARGV[1], 'queued')
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[1], KEYS[4])
end
redis.call('RPUSH', KEYS[4], ARGV[3])
_ttl(KEYS[4], ARGV[8])
return 1
"""

# Renews a lease while its attempt is the invocation's current one. 1 renewed, 0 the
# invocation ended or was claimed again (stop), -1 the run is over.
# KEYS: lease, inv_state, attempts, manifest; ARGV: owner, lease_ms, inv, attempt, epoch.
LEASE = FENCE + """
local live = _live(KEYS[4], '', KEYS[3], ARGV[3], ARGV[4], ARGV[5])
if live == -1 then return -1 end
if live < 0 or redis.call('HGET', KEYS[2], ARGV[3]) ~= 'run' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Pushes events to the client while the run (of this epoch) is on.
# KEYS: events, manifest, attempts; ARGV: epoch ('' unchecked), ttl_ms, events...
PUSH = FENCE + """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[3], '@epoch') ~= ARGV[1] then return 0 end
local n = redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
_ttl(KEYS[1], ARGV[2])
return n
"""

# Ends an invocation: its last events (ARGV[6:]), its state, its lease, in one step; only
# by its current attempt. KEYS: inv_state, lease, manifest, events, attempts;
# ARGV: inv, status, attempt, epoch, ttl_ms, events...
FINISH = FENCE + """
local live = _live(KEYS[3], '', KEYS[5], ARGV[1], ARGV[3], ARGV[4])
if live < 0 then return live end
if #ARGV > 5 then
  redis.call('RPUSH', KEYS[4], unpack(ARGV, 6))
  _ttl(KEYS[4], ARGV[5])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""


# Reserves a run id for one run instance: refused (the keys found are returned) while any
# key of a run with that id exists, or the id is in the registry of runs; else records
# the instance's epoch, which every later write of its workers is checked against.
# KEYS: attempts, registry, keys to check...; ARGV: epoch, ttl_ms, run id.
RESERVE = FENCE + """
local found = {}
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then table.insert(found, KEYS[i]) end
end
if redis.call('EXISTS', KEYS[1]) == 1 then table.insert(found, KEYS[1]) end
if redis.call('ZSCORE', KEYS[2], ARGV[3]) then table.insert(found, KEYS[2]) end
if #found > 0 then return found end
redis.call('HSET', KEYS[1], '@epoch', ARGV[1])
_ttl(KEYS[1], ARGV[2])
return found
"""


class Scripts:
    """The Lua scripts registered on one client (EVALSHA, reloaded after a restart)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.track: Any = client.register_script(TRACK)
        self.claim: Any = client.register_script(CLAIM)
        self.requeue: Any = client.register_script(REQUEUE)
        self.store: Any = client.register_script(STORE)
        self.push: Any = client.register_script(PUSH)
        self.finish: Any = client.register_script(FINISH)
        self.xadd: Any = client.register_script(XADD)
        self.notify: Any = client.register_script(NOTIFY)
        self.enqueue: Any = client.register_script(ENQUEUE)
        self.lease: Any = client.register_script(LEASE)
        self.reserve: Any = client.register_script(RESERVE)


ScriptCall = tuple[Any, Sequence[Any], Sequence[Any]]
"""A registered script (``Scripts``' attributes), its keys and its arguments."""


async def run_pipelined(client: aioredis.Redis, calls: Sequence[ScriptCall],
                        before: Callable[[Any], None] | None = None) -> list[Any]:
    """Run the script ``calls`` in order in one pipelined round trip, after what ``before``
    queues on the pipeline; their replies, in order.

    A script the server no longer holds (``NoScriptError``: it restarted) runs again alone,
    which loads it. Any other error is returned as that call's reply, not raised.
    """
    async with client.pipeline(transaction=False) as pipe:
        if before is not None:
            before(pipe)
        for script, keys, args in calls:
            # EVALSHA itself: a script object in a pipeline first checks it is loaded, one
            # more round trip.
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results = await pipe.execute(raise_on_error=False)
    replies = []
    for (script, keys, args), reply in zip(calls, results[len(results) - len(calls):],
                                           strict=True):
        if isinstance(reply, NoScriptError):
            reply = await script(keys=keys, args=args)
        replies.append(reply)
    return replies


async def get_bytes(client: aioredis.Redis, key: str) -> bytes | None:
    """GET as bytes (the clients here never decode responses)."""
    value: Any = await client.get(key)
    return value if value is None else bytes(value)


async def mget_bytes(client: aioredis.Redis, keys: list[str]) -> list[bytes | None]:
    """MGET as bytes: one round trip for several keys (``None`` for a missing one)."""
    values: Any = await client.mget(keys)
    return [v if v is None else bytes(v) for v in values]


async def xread_entries(client: aioredis.Redis, key: str, last: bytes | str, block_ms: int
                        ) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Entries of stream ``key`` after id ``last``, blocking up to ``block_ms``."""
    resp: Any = await client.xread({key: last}, count=64, block=block_ms)
    return [entry for _name, entries in (resp or []) for entry in entries]


STREAMED = b"\x00fp-streamed:"
"""Prefix of the value stored under a streamed output's key: the tag of the attempt whose
chunks in the output's stream hold it. A streamed output travels once, as chunks."""


def streamed_marker(tag: str) -> bytes:
    """What a streaming producer stores under the output's key once its chunks are written."""
    return STREAMED + tag.encode()


async def get_stored(client: aioredis.Redis, key: str, stream_key: str) -> bytes | None:
    """The value stored under ``key``, reassembled from ``stream_key`` if it was streamed.

    Returns ``None`` when the key does not exist, or when its stream lacks the chunks the
    marker names (evicted): callers treat both as a missing value.
    """
    raw = await get_bytes(client, key)
    if raw is None or not raw.startswith(STREAMED):
        return raw
    tag = raw[len(STREAMED):]
    entries: Any = await client.xrange(stream_key)
    chunks: list[bytes] = []
    for _entry_id, fields in entries or ():
        if fields.get(b"a") != tag:
            continue
        if b"end" in fields:
            return b"".join(chunks) if len(chunks) == int(fields[b"end"]) else None
        if int(fields[b"i"]) == 0:
            chunks = []
        if int(fields[b"i"]) == len(chunks):
            chunks.append(fields[b"d"])
    return None
