"""Authentication of everything a worker or the client unpickles, and Redis URL checks.

Every payload written to Redis (code and DAG blobs, large literals, task outputs,
invocations, events) is sealed with HMAC-SHA256 under a key that only the client and the
workers hold; it never goes to Redis. The MAC covers a *context* (run id and storage key)
as well as the bytes, so a valid payload copied to another key or run is rejected too.
Verification happens before unpickling: a tampered payload never runs.

Secrets never go on a command line (``ps`` shows every process's arguments to every
user): workers read the Redis URL from ``FAASPLAN_REDIS_URL`` and the key from
``FAASPLAN_HMAC_KEY``, a key file only its owner can read, or a pipe. Weak keys and key
files other users can read are warned about, and refused when ``FAASPLAN_STRICT_SECURITY=1``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import itertools
import math
import os
import pickle
import secrets
import stat
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import cloudpickle

from faasplan.runtime.errors import InsecureRedisError, PayloadAuthError

KEY_ENV = "FAASPLAN_HMAC_KEY"
"""Environment variable holding the hex-encoded key for workers started by hand."""

URL_ENV = "FAASPLAN_REDIS_URL"
"""Environment variable holding the Redis URL of a worker (its password stays off argv)."""

STRICT_ENV = "FAASPLAN_STRICT_SECURITY"
"""Set to ``1`` to refuse, not only warn about, weak keys and readable key files."""

_MAGIC = b"FPS1"
_TAG_SIZE = 32
_HEADER_SIZE = len(_MAGIC) + _TAG_SIZE
_MIN_KEY_BYTES = 16
# key_weaknesses' estimate of a random key is close to its ceiling, n * log2(min(n, 256))
# for n bytes (all distinct); a key of a few distinct bytes, or a counter, scores below half.
_MIN_BITS_SHARE = 0.5
# Random bytes are all printable ASCII with probability (95/256)**n: below 1e-10 from 24.
_TEXT_MIN_BYTES = 24
_LOOPBACK_NAMES = frozenset({"", "localhost"})


class SecurityWarning(UserWarning):
    """A weak key or a key file other users can read (refused in strict mode)."""


class InsecureKeyError(ValueError):
    """A weak key or a readable key file, refused because strict mode is on."""


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


def key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The key in ``FAASPLAN_HMAC_KEY``, or ``None`` when unset."""
    value = (os.environ if environ is None else environ).get(KEY_ENV)
    return parse_key(value) if value else None


def url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The Redis URL in ``FAASPLAN_REDIS_URL``, or ``None`` when unset or empty."""
    value = (os.environ if environ is None else environ).get(URL_ENV, "").strip()
    return value or None


def strict_mode(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``FAASPLAN_STRICT_SECURITY`` asks to refuse weak keys (``1``, ``yes``, ...)."""
    value = (os.environ if environ is None else environ).get(STRICT_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def _period(data: bytes) -> int:
    """The length of the shortest pattern ``data`` repeats at least twice (else its length).

    From the longest proper prefix that is also a suffix (Knuth-Morris-Pratt), in linear time.
    """
    border = [0] * len(data)
    k = 0
    for i in range(1, len(data)):
        while k and data[i] != data[k]:
            k = border[k - 1]
        if data[i] == data[k]:
            k += 1
        border[i] = k
    period = len(data) - (border[-1] if data else 0)
    return period if 2 * period <= len(data) else len(data)


def _frequency_bits(data: bytes) -> float:
    """``len(data)`` times the entropy of its byte frequencies, in bits."""
    n = len(data)
    return max(0.0, -sum(c * math.log2(c / n) for c in Counter(data).values()))


def _few_bits(data: bytes) -> float | None:
    """The estimate of :func:`_frequency_bits` when below half its ceiling, else None."""
    bits = _frequency_bits(data)
    ceiling = len(data) * math.log2(min(len(data), 256)) if len(data) > 1 else 0.0
    return bits if bits < _MIN_BITS_SHARE * ceiling else None


def key_weaknesses(key: bytes) -> list[str]:
    """Why ``key`` would be easy to guess; empty for a key that looks random.

    Cheap tests that random keys of 16 bytes or more pass (the chance that one fails is
    far below one in a billion): a repeated pattern (all-zero keys included); a key
    whose byte values, or steps between consecutive bytes (counters ``0, 1, 2, ...``),
    repeat so much that their frequencies carry under half the bits random bytes would;
    and, from 24 bytes, a key of printable ASCII only (a passphrase, or hex text passed
    as bytes: pass the hex as a ``str``).

    >>> key_weaknesses(bytes(32))
    ['all 32 bytes are 0x00']
    >>> key_weaknesses(bytes(range(32)))
    ['about 0 bits of entropy (byte-to-byte steps repeat)']
    >>> key_weaknesses(new_key())
    []
    """
    if len(set(key)) == 1:
        return [f"all {len(key)} bytes are {key[0]:#04x}"]
    problems = []
    period = _period(key)
    if period < len(key):
        problems.append(f"repeats a {period}-byte pattern")
    steps = bytes((b - a) % 256 for a, b in itertools.pairwise(key))
    for data, what in ((key, "byte values"), (steps, "byte-to-byte steps")):
        bits = _few_bits(data)
        if bits is not None:
            problems.append(f"about {bits:.0f} bits of entropy ({what} repeat)")
            break
    if len(key) >= _TEXT_MIN_BYTES and all(32 <= b < 127 for b in key):
        problems.append("every byte is printable ASCII (text, not random bytes)")
    return problems


def _refuse_or_warn(message: str, strict: bool | None) -> None:
    if strict_mode() if strict is None else strict:
        raise InsecureKeyError(f"{message} (refused: strict mode, {STRICT_ENV}=1)")
    warnings.warn(message, SecurityWarning, stacklevel=3)


def check_key(key: bytes, *, strict: bool | None = None) -> bytes:
    """``key`` itself, after warning (or, in strict mode, refusing) if it is weak.

    Parameters
    ----------
    key : bytes
        The raw key.
    strict : bool, optional
        Raise instead of warning; ``None`` follows ``FAASPLAN_STRICT_SECURITY``.

    Raises
    ------
    InsecureKeyError
        In strict mode, for a key :func:`key_weaknesses` finds fault with.
    """
    problems = key_weaknesses(key)
    if problems:
        _refuse_or_warn(f"HMAC key is weak ({'; '.join(problems)}): whoever guesses it can "
                        "forge payloads that workers unpickle; use a random key "
                        "(faasplan.runtime.new_key(), or write_key_file)", strict)
    return key


def _check_mode(path: str | os.PathLike[str], mode: int, strict: bool | None) -> None:
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        _refuse_or_warn(f"key file {os.fspath(path)} has mode {stat.S_IMODE(mode):04o}: "
                        f"other users can read or change the HMAC key; chmod 600 "
                        f"{os.fspath(path)}", strict)


def check_key_file(path: str | os.PathLike[str], *, strict: bool | None = None) -> None:
    """Warn (refuse in strict mode) if group or others may read or write key file ``path``.

    Raises
    ------
    OSError
        The file does not exist.
    InsecureKeyError
        In strict mode, for a file others can read or write.
    """
    _check_mode(path, os.stat(path).st_mode, strict)


def read_key_file(path: str | os.PathLike[str], *, strict: bool | None = None) -> bytes:
    """The hex key in file ``path``, checked: only its owner may read or write the file.

    A file that group or others can read or write is warned about (refused in strict
    mode), as is a weak key (:func:`check_key`).

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        It does not hold a hex key of at least 16 bytes.
    InsecureKeyError
        In strict mode, for a readable file or a weak key.
    """
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        text = f.read().decode("ascii", errors="replace")
    _check_mode(path, mode, strict)
    try:
        key = parse_key(text)
    except ValueError as exc:
        raise ValueError(f"key file {os.fspath(path)}: {exc}") from None
    return check_key(key, strict=strict)


def write_key_file(path: str | os.PathLike[str], key: bytes | None = None) -> bytes:
    """Write ``key`` (default: a new one) as hex to a new file only its owner can read.

    Returns the key. The file must not exist yet (it is never overwritten).

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "faasplan.key")
    >>> write_key_file(path) == read_key_file(path)
    True
    >>> oct(os.stat(path).st_mode & 0o777)
    '0o600'
    """
    key = check_key(parse_key(key if key is not None else new_key()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


#: Hex digits of a control entry's MAC (128 bits).
MARK_HEX = 32


class Signer:
    """Seals and opens payloads with one HMAC key.

    A weak key is warned about, or refused in strict mode (:func:`check_key`).

    >>> s = Signer(new_key())
    >>> s.loads("run/x", s.dumps("run/x", {"a": 1}))
    {'a': 1}
    """

    __slots__ = ("_key", "pool")

    def __init__(self, key: bytes) -> None:
        self._key = check_key(parse_key(key))
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

    def mark(self, context: str, text: str) -> str:
        """``text`` with a MAC under ``context`` appended (``text#tag``): control state such
        as a fan-in's set of finished upstream tasks, whose members a reader can check.

        >>> s = Signer(new_key())
        >>> s.check_mark("deps:t", s.mark("deps:t", "a"))
        'a'
        """
        return f"{text}#{self._tag(context, text.encode()).hex()[:MARK_HEX]}"

    def check_mark(self, context: str, member: str) -> str:
        """The text of a :meth:`mark`; :class:`PayloadAuthError` if it does not verify."""
        text, sep, tag = member.rpartition("#")
        if not sep or not hmac.compare_digest(
                tag, self._tag(context, text.encode()).hex()[:MARK_HEX]):
            raise PayloadAuthError(context, f"control entry {member[:80]!r} has no valid MAC")
        return text

    def dumps(self, context: str, obj: Any) -> bytes:
        """Pickle (cloudpickle, protocol 5) and seal ``obj``."""
        return self.seal(context, cloudpickle.dumps(obj, protocol=5))

    def loads(self, context: str, sealed: bytes | bytearray | memoryview) -> Any:
        """Verify, then unpickle."""
        return pickle.loads(self.open(context, sealed))


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (as a URL spells it) names this machine's loopback interface.

    Only loopback IP literals (``127.0.0.0/8``, ``::1``, IPv4-mapped ``::ffff:127.x``)
    and ``localhost`` count. Other names do not, even those that resolve to a loopback
    address now: a DNS answer can change between this check and the connection.

    >>> [is_loopback_host(h) for h in ("127.0.0.1", "127.9.9.9", "[::1]", "localhost")]
    [True, True, True, True]
    >>> [is_loopback_host(h) for h in ("127.attacker.example", "10.0.0.1", "0.0.0.0")]
    [False, False, False]
    """
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_redis_url(url: str) -> None:
    """Refuse a Redis URL that reaches a non-loopback host without a password.

    Locality is decided by :func:`is_loopback_host` on the parsed host.

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
    try:
        host = parts.hostname or ""
    except ValueError as exc:
        raise ValueError(f"Redis URL {redact(url)!r} has a malformed host: {exc}") from None
    if is_loopback_host(host):
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
