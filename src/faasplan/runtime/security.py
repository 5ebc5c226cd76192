"""Authentication of everything a worker or the client unpickles, and Redis URL checks.

Every payload written to Redis (code and DAG blobs, large literals, task outputs,
invocations, events) is sealed with HMAC-SHA256 under a key that only the client and the
workers hold; it never goes to Redis. The MAC covers a *context* (run id and storage key)
as well as the bytes, so a valid payload copied to another key or run is rejected too.
Verification happens before unpickling: a tampered payload never runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
from typing import Any
from urllib.parse import urlsplit

import cloudpickle

from faasplan.runtime.errors import InsecureRedisError, PayloadAuthError

KEY_ENV = "FAASPLAN_HMAC_KEY"
"""Environment variable holding the hex-encoded key for workers started by hand."""

_MAGIC = b"FPS1"
_TAG_SIZE = 32
_HEADER_SIZE = len(_MAGIC) + _TAG_SIZE
_MIN_KEY_BYTES = 16
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", ""})


def new_key() -> bytes:
    """A fresh random 32-byte key."""
    return secrets.token_bytes(32)


def parse_key(value: bytes | str) -> bytes:
    """A key from raw bytes or a hex string; ``ValueError`` if malformed or too short."""
    if isinstance(value, str):
        try:
            key = bytes.fromhex(value.strip())
        except ValueError:
            raise ValueError(f"HMAC key must be hex-encoded (as {KEY_ENV} holds it), got "
                             f"{len(value)} characters that are not hex") from None
    elif isinstance(value, bytes | bytearray):
        key = bytes(value)
    else:
        raise TypeError(f"HMAC key must be bytes or a hex string, got {type(value).__name__}")
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"HMAC key has {len(key)} bytes; use at least {_MIN_KEY_BYTES} "
                         "(e.g. faasplan.runtime.new_key().hex())")
    return key


def key_from_env(environ: dict[str, str] | None = None) -> bytes | None:
    """The key in ``FAASPLAN_HMAC_KEY``, or ``None`` when unset."""
    value = (os.environ if environ is None else environ).get(KEY_ENV)
    return parse_key(value) if value else None


class Signer:
    """Seals and opens payloads with one HMAC key.

    >>> s = Signer(b"k" * 32)
    >>> s.loads("run/x", s.dumps("run/x", {"a": 1}))
    {'a': 1}
    """

    __slots__ = ("_key", "pool")

    def __init__(self, key: bytes) -> None:
        self._key = parse_key(key)
        # Workers holding the same key serve the same queues; the id reveals nothing of the key.
        self.pool = hmac.new(self._key, b"faasplan-pool", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Signer(pool={self.pool!r})"

    def _tag(self, context: str, data: bytes | memoryview) -> bytes:
        mac = hmac.new(self._key, context.encode() + b"\0", hashlib.sha256)
        mac.update(data)
        return mac.digest()

    def seal(self, context: str, data: bytes) -> bytes:
        """``data`` prefixed with its MAC under ``context``."""
        return _MAGIC + self._tag(context, data) + data

    def open(self, context: str, sealed: bytes | bytearray | memoryview) -> memoryview:
        """The payload inside ``sealed``; :class:`PayloadAuthError` if it does not verify."""
        view = memoryview(sealed)
        if len(view) < _HEADER_SIZE or view[:len(_MAGIC)] != _MAGIC:
            raise PayloadAuthError(context, f"{len(view)} bytes without a faasplan seal")
        body = view[_HEADER_SIZE:]
        if not hmac.compare_digest(bytes(view[len(_MAGIC):_HEADER_SIZE]),
                                   self._tag(context, body)):
            raise PayloadAuthError(context, "MAC mismatch")
        return body

    def dumps(self, context: str, obj: Any) -> bytes:
        """Pickle (cloudpickle, protocol 5) and seal ``obj``."""
        return self.seal(context, cloudpickle.dumps(obj, protocol=5))

    def loads(self, context: str, sealed: bytes | bytearray | memoryview) -> Any:
        """Verify, then unpickle."""
        return pickle.loads(self.open(context, sealed))


def check_redis_url(url: str) -> None:
    """Refuse a Redis URL that reaches a non-loopback host without a password.

    Raises
    ------
    InsecureRedisError
        Naming the host, with how to fix it.
    ValueError
        If ``url`` is not a ``redis://``, ``rediss://`` or ``unix://`` URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"Redis URL {url!r} must start with redis://, rediss:// or unix://")
    if parts.scheme == "unix":
        return
    host = (parts.hostname or "").lower()
    if host in _LOOPBACK or host.startswith("127."):
        return
    if not parts.password:
        raise InsecureRedisError(
            f"refusing Redis at {host!r} without a password: intermediate data and invocations "
            "would be open to anyone on the network. Use redis://:PASSWORD@host:port "
            "(requirepass on the server), ideally rediss:// for TLS")


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
