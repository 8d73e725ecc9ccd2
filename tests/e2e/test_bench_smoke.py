"""The throughput benchmark's bounded version: it runs, and every mode finishes every event.
(Its figures are printed by `make bench`, never asserted.)"""

from __future__ import annotations

import re

import pytest

from bench import throughput

pytestmark = pytest.mark.e2e


def test_throughput_benchmark_smoke_run_finishes_every_event(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    throughput.main(["--smoke"])
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+([ABC]) .*?\s(\d+)/(\d+)\s", out, flags=re.M)
    assert {mode for mode, _, _ in rows} == {"A", "B", "C"}, out
    for mode, done, sent in rows:
        assert done == sent == "12", (mode, out)
    assert "machine:" in out
