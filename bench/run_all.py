"""Run every benchmark in bench/, one after the other, printing all their figures.

    .venv/bin/python -m bench.run_all            # what `make bench` runs
    .venv/bin/python -m bench.run_all --smoke    # tiny numbers, to check they still run

Each benchmark runs in its own process (`python -m bench.<name>`), so one's threads,
broker and peak RSS never colour another's figures. The PostgreSQL runs use
TEST_POSTGRES_URL, else the URL `scripts/ensure-postgres.sh` prints; without either they
are skipped and the run says so. The exit status is non-zero when any benchmark failed;
the others still run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = "{pg}"  # replaced by the PostgreSQL URL; a benchmark naming it is skipped without one

# (what it measures, module, arguments for a full run, arguments for --smoke), in order.
BENCHMARKS: list[tuple[str, str, list[str], list[str] | None]] = [
    ("CPU per event and share of the raw loop, zero provider latency, SQLite",
     "bench.throughput", ["--latency-ms", "0"], ["--smoke"]),
    ("CPU per event and share of the raw loop, zero provider latency, PostgreSQL",
     "bench.throughput", ["--latency-ms", "0", "--database-url", PG],
     ["--smoke", "--modes", "naive,worker", "--database-url", PG]),
    ("Worker vs naive consumer, 50 tenants at +20 ms, QuickBooks",
     "bench.throughput", ["--tenants", "50", "--events-per-tenant", "20", "--latency-ms", "20",
                          "--modes", "naive,worker"], None),
    ("Worker vs naive consumer, 50 tenants at +20 ms, Xero",
     "bench.throughput", ["--tenants", "50", "--events-per-tenant", "20", "--latency-ms", "20",
                          "--modes", "naive,worker", "--provider", "xero"],
     ["--smoke", "--modes", "naive,worker", "--provider", "xero"]),
    ("Bulk: one tenant's burst through QuickBooks' batch endpoint at its documented "
     "limits (records/min, the provider's 429s)",
     "bench.throughput", ["--tenants", "1", "--events-per-tenant", "2400", "--latency-ms",
                          "20", "--modes", "worker", "--timeout", "900"], None),
    ("Bulk: one tenant's burst through Xero's multi-record requests at its documented "
     "limits (records/min, the provider's 429s)",
     "bench.throughput", ["--tenants", "1", "--events-per-tenant", "3000", "--latency-ms",
                          "20", "--modes", "worker", "--provider", "xero", "--timeout", "900"],
     None),
    ("Scale-out: one worker process vs two, PostgreSQL",
     "bench.scaleout", ["--database-url", PG], ["--smoke", "--database-url", PG]),
    ("Memory: RSS after 10k events vs after up to 1M (15 min budget)",
     "bench.memory", [], ["--smoke"]),
    ("Setup wizard quality", "bench.wizard_quality", [], ["--n", "500", "--naive-subset", "20"]),
]


def postgres_url() -> str | None:
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        return url
    script = ROOT / "scripts" / "ensure-postgres.sh"
    try:
        found = subprocess.run([str(script)], cwd=ROOT, capture_output=True, text=True,
                               timeout=120, check=True).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return found[-1] if found and found[-1].startswith("postgres") else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny numbers for every benchmark")
    args = parser.parse_args(argv)
    pg = postgres_url()
    failed: list[str] = []
    for what, module, full, smoke in BENCHMARKS:
        chosen = smoke if args.smoke else full
        if chosen is None:
            continue  # its smoke version is another entry's
        if PG in chosen and pg is None:
            print(f"\n=== skipped (no PostgreSQL: set TEST_POSTGRES_URL): {what}", flush=True)
            continue
        command = [sys.executable, "-m", module, *(pg or "" if a == PG else a for a in chosen)]
        shown = " ".join(["python", *("$TEST_POSTGRES_URL" if a == PG else a
                                      for a in [*command[1:3], *chosen])])
        print(f"\n=== {what}\n=== {shown}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=ROOT)
        print(f"=== {module}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(f"{module} ({what})")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
