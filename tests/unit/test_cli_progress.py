"""Long CLI work shows its count and rate on a terminal (stderr) and nothing when piped."""

from __future__ import annotations

import io
from typing import Any

import pytest

from consumers.engine import SyncEngine
from control import cli


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fake_process(self: Any, *args: Any, **kwargs: Any) -> str:
    return "done"


def test_counts_events_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SyncEngine, "process", _fake_process)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with cli._progress("sync-now"):
        for _ in range(3):
            assert SyncEngine.process(None) == "done"  # type: ignore[arg-type]
    assert SyncEngine.process is _fake_process  # restored
    last = terminal.getvalue().rsplit("\r", 1)[-1]
    assert last.startswith("sync-now: done: 3 events, ") and "/s, " in last


def test_silent_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SyncEngine, "process", _fake_process)
    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    with cli._progress("replay-dead-letters"):
        SyncEngine.process(None)  # type: ignore[arg-type]
    assert piped.getvalue() == ""
