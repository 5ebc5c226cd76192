"""Serve the dashboard: the pages and the JSON API on one Tornado server, on 127.0.0.1.

The server is Panel's (a Bokeh server) with the API added as extra Tornado routes, run on
its own event loop in a background thread, so :func:`serve` returns at once with the URL
and a ``stop`` function: ``faasplan dashboard`` waits on it, ``faasplan run --dashboard``
and tests run it beside their own work.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import webbrowser
from collections.abc import Callable, Sequence
from typing import Any

from faasplan.dashboard.api import Context, patterns
from faasplan.dashboard.history import HistoryStore
from faasplan.dashboard.jobs import Jobs
from faasplan.dashboard.live import RedisFeed

HOST = "127.0.0.1"
"""The dashboard binds to the loopback interface only: it shows run data and runs jobs."""

START_TIMEOUT_S = 60.0


def serve(redis_url: str | None = None, metrics: Sequence[str] = (), port: int = 0,
          open_browser: bool = False) -> tuple[str, Callable[[], None]]:
    """Start the dashboard in the background; returns its URL and a function that stops it.

    Parameters
    ----------
    redis_url : str, optional
        Follow the runs on this Redis server (live view). Its password is never shown.
    metrics : sequence of str
        Parquet metrics stores and WfFormat traces for the history view (read now: a
        missing or invalid file raises here, naming it).
    port : int
        TCP port on 127.0.0.1; ``0`` picks a free one.
    open_browser : bool
        Open the URL in the default browser.

    Returns
    -------
    (str, callable)
        ``http://127.0.0.1:PORT/`` and ``stop()``, which stops the server, the Redis feed
        and any running comparison (idempotent).

    Raises
    ------
    ValueError
        ``port`` is outside ``0..65535``.
    OSError
        The port is taken.

    Examples
    --------
    >>> from faasplan.dashboard import serve
    >>> url, stop = serve()
    >>> url.startswith("http://127.0.0.1:")
    True
    >>> stop()
    """
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be in 0..65535 (0: any free port), got {port}")
    store = HistoryStore(list(metrics))
    feed = RedisFeed(redis_url) if redis_url else None
    ctx = Context(feed, store, Jobs(store), redis_url if feed is not None else None)
    runner = _ServerThread(ctx, int(port))
    runner.start()
    if feed is not None:
        feed.start()
    url = f"http://{HOST}:{runner.port}/"

    def stop() -> None:
        ctx.jobs.cancel_all()
        if feed is not None:
            feed.stop()
        runner.stop()

    if open_browser:
        webbrowser.open(url)
    return url, stop


def _free_port() -> int:
    """A port free on 127.0.0.1 now (the server binds it right after)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class _ServerThread:
    """Panel's server on its own event loop in a daemon thread."""

    def __init__(self, ctx: Context, port: int) -> None:
        self.ctx = ctx
        self.requested = port
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread = threading.Thread(target=self._run, name="faasplan-dashboard",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"the dashboard did not start within {START_TIMEOUT_S:.0f} s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            from panel.io.server import get_server
            from tornado.ioloop import IOLoop

            from faasplan.dashboard.pages import apps

            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            ioloop = IOLoop.current()
            port = self.requested or _free_port()
            pages: Any = apps(self.ctx)
            server = get_server(pages, port=port, address=HOST,
                                loop=ioloop, start=False, show=False,
                                title={"/": "faasplan: runs", "/history": "faasplan: history"},
                                websocket_origin=[f"{HOST}:{port}", f"localhost:{port}"],
                                extra_patterns=patterns(self.ctx))
            self.port = int(server.port or port)
            self._loop, self._server = loop, server
            server.start()
        except BaseException as exc:  # reported to the caller of start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or loop.is_closed():
            return

        def halt() -> None:
            server.stop()
            loop.stop()

        loop.call_soon_threadsafe(halt)
        self._thread.join(timeout=10.0)
