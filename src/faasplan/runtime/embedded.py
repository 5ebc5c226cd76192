"""A private ``redis-server`` for one process: free loopback port and a Unix socket, random
password, temporary directory."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from faasplan.runtime.errors import RedisServerNotFoundError

INSTALL_HINT = ("install it (apt-get install redis-server, brew install redis) or point faasplan "
                "at a running server: run(..., redis='redis://...') / faasplan run --redis URL")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Start and stop a private Redis; use as a context manager.

    No persistence (``save ""``, no AOF): the data lives only as long as the server. The
    password is written to a 0600 config file, never to the command line.

    Raises
    ------
    RedisServerNotFoundError
        ``redis-server`` is not installed (the message says how to fix it).
    """

    def __init__(self, executable: str | None = None, *, startup_timeout_s: float = 10.0
                 ) -> None:
        found = executable or shutil.which("redis-server")
        if found is None or not Path(found).exists():
            raise RedisServerNotFoundError(f"redis-server not found on PATH; {INSTALL_HINT}")
        self.executable = found
        self.startup_timeout_s = startup_timeout_s
        self.password = secrets.token_hex(16)
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

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
        conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", "protected-mode yes",
            f"requirepass {self.password}", f'dir "{self._dir}"', 'save ""', "appendonly no",
            f'unixsocket "{self._dir / "redis.sock"}"', "unixsocketperm 700",
            f'logfile "{self._dir / "redis.log"}"', "daemonize no", ""]))
        os.chmod(conf, 0o600)
        self._proc = subprocess.Popen([self.executable, str(conf)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        probe = redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                            socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    return False  # e.g. the port was taken in the meantime
                with contextlib.suppress(redis.exceptions.RedisError):
                    if probe.ping():
                        return True
                time.sleep(0.02)
        finally:
            probe.close()
        self._proc.kill()
        self._proc.wait()
        return False

    def _log_tail(self) -> str:
        path = self._dir / "redis.log" if self._dir is not None else None
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-10:])

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
