"""Run every benchmark in bench/, one after the other, printing all their figures.

    .venv/bin/python -m bench.run_all            # what `make bench` runs
    .venv/bin/python -m bench.run_all --smoke    # tiny numbers, to check they still run

Each benchmark runs in its own process (`python -m bench.<name>`), so one's threads,
broker and peak RSS never colour another's figures. The exit status is non-zero when
any benchmark failed; the others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (module, arguments for a full run, arguments for --smoke), in the order they run.
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    ("bench.throughput", [], ["--smoke"]),
    ("bench.wizard_quality", [], ["--n", "500", "--naive-subset", "20"]),
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny numbers for every benchmark")
    args = parser.parse_args(argv)
    failed: list[str] = []
    for module, full, smoke in BENCHMARKS:
        command = [sys.executable, "-m", module, *(smoke if args.smoke else full)]
        print(f"\n=== {' '.join(['python', *command[1:]])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=ROOT)
        print(f"=== {module}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
