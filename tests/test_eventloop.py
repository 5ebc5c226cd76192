"""The runtime's event loop: uvloop by default, asyncio's on request, clear errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from faasplan.runtime import eventloop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_runs_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.LOOP_ENV, raising=False)
    assert eventloop.run(_loop_module()).startswith("uvloop")


def test_the_standard_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.LOOP_ENV, "asyncio")
    assert eventloop.run(_loop_module()).startswith("asyncio")
    monkeypatch.setenv(eventloop.LOOP_ENV, " UVLOOP ")
    assert eventloop.run(_loop_module()).startswith("uvloop")


def test_a_loop_for_a_thread_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.LOOP_ENV, raising=False)
    loop = eventloop.new_event_loop()
    try:
        assert type(loop).__module__.startswith("uvloop")
        assert loop.run_until_complete(_loop_module()).startswith("uvloop")
    finally:
        loop.close()
    monkeypatch.setenv(eventloop.LOOP_ENV, "asyncio")
    loop = eventloop.new_event_loop()
    loop.close()
    assert type(loop).__module__.startswith("asyncio")


def test_an_unknown_loop_is_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.LOOP_ENV, "trio")
    coro = _loop_module()
    with pytest.raises(eventloop.EventLoopChoiceError,
                       match=r"FAASPLAN_EVENT_LOOP='trio'.*auto, uvloop, asyncio"):
        eventloop.run(coro)
    assert coro.cr_frame is None  # closed, not left to warn "never awaited"


def test_the_worker_command_reports_a_bad_loop_with_exit_code_2(tmp_path: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "faasplan", "worker", "--redis", "redis://localhost:1/0"],
        env={"FAASPLAN_EVENT_LOOP": "trio", "FAASPLAN_HMAC_KEY": "ab" * 32,
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "FAASPLAN_EVENT_LOOP='trio'" in proc.stderr


def test_the_run_command_reports_a_bad_loop_with_exit_code_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from faasplan.cli import main

    monkeypatch.setenv(eventloop.LOOP_ENV, "trio")
    assert main(["run", "faasplan.workloads:tree_reduction", "--planner", "wukong"]) == 2
    assert "FAASPLAN_EVENT_LOOP='trio'" in capsys.readouterr().err
