"""The benchmarks' bounded versions: each runs, finishes every event and prints the figures
it exists for. (Their values are printed by `make bench`, never asserted: no test asserts
a time or a speed.)"""

from __future__ import annotations

import re

import pytest

from bench import memory, scaleout, throughput

pytestmark = pytest.mark.e2e

NUMBER = r"\d+(?:\.\d+)?"
FIGURE = rf"(?:{NUMBER}|-)"  # "-" where a process could not be read (an external broker)


def _split_row(out: str, mode: str) -> list[str]:
    """The CPU-per-event row of a mode: worker, simulator, broker, postgres, then the
    statements, transactions and checkouts per event (absent for the raw loop)."""
    rows = re.findall(rf"^  {mode} [A-Za-z +]+?((?:\s+{FIGURE}){{4,7}})\s*$", out, flags=re.M)
    assert rows, (mode, out)
    return rows[-1].split()


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
    assert "machine:" in out and "load avg" in out
    # The simulators run in their own process: its CPU is read apart from the worker's.
    for mode in ("A", "B", "C"):
        worker, simulator, _broker, postgres, *db = _split_row(out, mode)
        assert re.fullmatch(NUMBER, worker) and re.fullmatch(NUMBER, simulator), out
        assert postgres == "-", out  # SQLite: no server
        if mode != "A":
            statements, transactions, checkouts = (float(x) for x in db)
            assert statements > 0 and transactions > 0 and checkouts > 0, out
    for mode in ("B naive sequential", "C service Worker"):
        assert re.search(rf"{mode} reaches {NUMBER}% of the raw consume-and-decode loop A",
                         out), out
    assert re.search(rf"speed-up of C .* over B .*: {NUMBER}x events/s", out), out
    for mode in ("B naive sequential", "C service Worker"):
        # the provider calls the service made, the 429s among them, records per minute
        calls = re.search(rf"^  {mode}: provider calls (\d+) \(.*ok (\d+).*\); provider 429s "
                          rf"(\d+); (\d+) records/min per tenant$", out, flags=re.M)
        assert calls and int(calls[2]) > 0 and int(calls[1]) >= int(calls[2]), (mode, out)


def test_throughput_benchmark_on_postgresql_reports_the_servers_cpu(
        kafka_bootstrap: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    throughput.main(["--smoke", "--modes", "naive,worker", "--provider", "xero",
                     "--database-url", postgres_url])
    out = capsys.readouterr().out
    assert "xero simulator (own process)" in out and "PostgreSQL" in out, out
    for mode in ("B", "C"):
        assert re.search(rf"^  {mode} .*\s12/12\s", out, flags=re.M), out
        _worker, _simulator, _broker, postgres, *_ = _split_row(out, mode)
        assert re.fullmatch(NUMBER, postgres), out  # the backends' CPU was read


def test_scaleout_benchmark_smoke_run_reports_each_worker(
        kafka_bootstrap: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    assert scaleout.main(["--smoke", "--database-url", postgres_url]) == 0
    out = capsys.readouterr().out
    labels = ("1 worker", "2 workers (KIP-848 range)", "2 workers (classic range)")
    for label in labels:
        assert re.search(rf"^  {re.escape(label)}\s+16/16\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"
                         rf"\s+{NUMBER}\s", out, flags=re.M), (label, out)
        # every group member's partitions, per topic, and every worker's events
        assert len(re.findall(rf"^  {re.escape(label)}: group member \d holds .*customers \d",
                              out, flags=re.M)) >= 1, out
    for label in labels[1:]:
        # Partitions are assigned per topic: each of the two workers holds half of every
        # change topic, the busy customers topic included (cooperative-sticky gave one
        # worker whole topics and the other none of customers).
        held = re.findall(rf"^  {re.escape(label)}: group member \d holds (.*)$", out,
                          flags=re.M)
        assert held == ["customers 2, invoices 2, items 2, payments 2"] * 2, out
        finished = re.findall(rf"^  {re.escape(label)}: worker \d finished (\d+) events",
                              out, flags=re.M)
        assert len(finished) == 2 and sum(int(n) for n in finished) == 16, out
    assert len(re.findall(rf"events per worker CPU-second = {NUMBER}% of one worker's "
                          rf"\(median of 1 rounds: {NUMBER}%;", out)) == 2, out
    # each worker's engine runs and provider calls, from its own metrics
    assert len(re.findall(r"in [1-9]\d* engine runs \([\d.]+ events a run\) and [1-9]\d* "
                          r"provider calls", out)) == 5, out
    assert "4 change topics x 4 partitions" in out  # twice the largest worker count


def test_memory_benchmark_smoke_run_reports_rss_and_structures(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    assert memory.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(rf"^\s+([\d,]+)\s+({NUMBER})\s+(\d+)\s+({NUMBER})\s+({NUMBER})"
                      rf"\s+({NUMBER})\s+([\d,]+)\s+\d+$", out, flags=re.M)
    # the start, the 100-event checkpoint and the last one, at 400
    assert len(rows) >= 3, out
    assert rows[-1][0] == "400", out
    assert int(rows[-1][2]) >= 10, out  # a limiter per connected tenant, 10 tenants
    assert re.search(rf"RSS after 400 events / RSS after [\d,]+: {NUMBER} / {NUMBER} MB = "
                     rf"{NUMBER}", out), out
