"""Redis connections with reconnect backoff, and the atomic scripts of the runtime."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from faasplan.runtime.security import check_redis_url

CONNECTION_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError,
                                                   ConnectionError)
"""Errors meaning "Redis is unreachable right now" (retried with backoff)."""

# Blocking commands in this package never block longer than this; the socket timeout
# must exceed it so a healthy blocking read is not mistaken for a dead server.
MAX_BLOCK_S = 1.0
_SOCKET_TIMEOUT_S = 15.0


def connect(url: str, *, retries: int = 10) -> aioredis.Redis:
    """An asyncio Redis client for ``url`` that retries lost connections with backoff.

    About six seconds of backoff in total (20 ms doubling, capped at 1 s) cover a server
    restart; longer outages surface as ``redis.exceptions.ConnectionError``.
    """
    check_redis_url(url)
    return aioredis.Redis.from_url(
        url, decode_responses=False, socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=5.0,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.02), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30)


# Records that ``upstream`` of a fan-in is done. Returns 1 exactly once per fan-in: to the
# invocation whose new member completed the set; a retry of that same invocation (same
# id) gets 1 again, so a worker killed between Track and Invoke loses nothing, while a
# retried upstream never counts twice.
TRACK = """
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
local added = redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) ~= tonumber(ARGV[2]) then return 0 end
if added == 1 then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
  return 1
end
if redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[3] then return 1 end
return 0
"""

# Claims an invocation for one attempt. 0: already done, failed, or running with a live
# lease (a duplicate entry); -1: the run is over (aborted, cleaned up, or Redis lost it);
# otherwise {attempt number, sealed invocation}. The claim event (ARGV[4], sealed by the
# worker) is pushed in the same step, so the client knows of every running invocation
# even if its worker dies right after claiming.
CLAIM = """
if redis.call('EXISTS', KEYS[4]) == 0 or redis.call('EXISTS', KEYS[5]) == 1 then
  return {-1, false}
end
local st = redis.call('HGET', KEYS[1], ARGV[1])
if st == 'done' or st == 'failed' then return {0, false} end
if st == 'run' and redis.call('EXISTS', KEYS[2]) == 1 then return {0, false} end
redis.call('HSET', KEYS[1], ARGV[1], 'run')
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('RPUSH', KEYS[6], ARGV[4])
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


# Writes of a worker go through these guards: once the run is over (its manifest deleted,
# or its abort flag set) a worker still running stops at its next write instead of
# leaving keys behind the client's clean-up.
STORE = """
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], '1')
return 1
"""

PUSH = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
return redis.call('RPUSH', KEYS[1], unpack(ARGV))
"""

# Ends an invocation: its last events (ARGV[3:]), its state, its lease, in one step.
FINISH = """
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
if #ARGV > 2 then redis.call('RPUSH', KEYS[4], unpack(ARGV, 3)) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
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


async def get_bytes(client: aioredis.Redis, key: str) -> bytes | None:
    """GET as bytes (the clients here never decode responses)."""
    value: Any = await client.get(key)
    return value if value is None else bytes(value)


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
