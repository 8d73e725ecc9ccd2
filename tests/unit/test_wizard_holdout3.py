"""Held-out set 3 (tests/data/labelled_customers_holdout3.csv) and the benchmark's loader
of old rules: the set has the shape bench/README.md states, and an old revision's rules
run with that revision's own normalisation and vocabulary, never the working tree's."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    return importlib.import_module("bench.wizard_quality")


def _non_latin(text: str) -> bool:
    return any(ch.isalpha() and ord(ch) > 0x24F for ch in text)


def test_holdout3_has_the_stated_shape() -> None:
    bench = load_bench()
    records = bench.load_holdout3()
    by_id = {r.id: r for r in records}
    assert len(by_id) == len(records), "record ids are unique"
    entities: dict[str, list[str]] = defaultdict(list)
    for r in records:
        entities[r.entity].append(r.id)
    assert len(entities) >= 200, "at least 200 customers"
    pairs = sum(len(ids) * (len(ids) - 1) // 2 for ids in entities.values())
    assert pairs >= 90, "at least 90 labelled duplicate pairs"
    for ids in entities.values():  # one customer is one type in one company's books
        assert len({by_id[i].customer_type for i in ids}) == 1
        assert len({by_id[i].country for i in ids}) == 1
    hard = {frozenset((r.id, o)) for r in records for o in r.hard_negative_of}
    assert len(hard) >= 20
    for pair in hard:
        a, b = sorted(pair)
        assert a in by_id and b in by_id
        assert by_id[a].entity != by_id[b].entity, "a hard negative is not a duplicate"
    assert {r.country for r in records} >= {"US", "GB", "AU", "NZ", "CA"}
    assert {r.customer_type for r in records} == {"Homeowner", "Business", "Builder"}
    assert sum(_non_latin(r.candidate.display_name) for r in records) >= 10


def _git_has(rev: str) -> bool:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_old_rules_run_with_their_own_revision_of_every_module() -> None:
    bench = load_bench()
    rev = bench.HOLDOUT3_REV
    # CI and `make test` run in a clone, which has the history; an export without it is
    # not a place this test can be skipped in silence.
    assert _git_has(rev), f"{rev} is not in this checkout's git history (run from a clone)"
    engine = bench.load_baseline(rev)
    assert engine is not None
    package = f"wizard_at_{rev[:12]}"
    old_types = sys.modules[f"{package}.customer_types"]
    old_norm = sys.modules[f"{package}.normalise"]
    old_trades = sys.modules[f"{package}.trades"]
    assert engine.suggest is old_types.suggest_customer_type
    # The old customer_types uses the old normalise and trades, and the old trades reads
    # the vocabulary file of its revision, not control/wizard/trade_vocabulary.tsv.
    assert old_types.norm is old_norm
    assert old_types.trades is old_trades
    tree = ROOT / "control" / "wizard"
    for module in (old_types, old_norm, old_trades):
        assert module.__file__ is not None
        assert Path(module.__file__).parent != tree
    assert old_trades.VOCABULARY_PATH.parent != tree
    assert old_trades.VOCABULARY_PATH.is_file()
    committed = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:control/wizard/trade_vocabulary.tsv"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert old_trades.VOCABULARY_PATH.read_text(encoding="utf-8") == committed


def test_floors_on_held_out_sets_2_and_3() -> None:
    """Regression floors at the figures bench/README.md records (measured once on set 3,
    after the last rule change; set 2 has been tuned on since and is a tuning figure)."""
    bench = load_bench()
    untuned = bench.load_holdout3()
    # Measured: type accuracy 0.788; duplicates precision 0.970, recall 0.815.
    assert bench.evaluate_types(untuned).accuracy >= 0.78
    dup = bench.evaluate_duplicates(untuned)
    assert dup.precision >= 0.96
    assert dup.recall >= 0.81
    # Measured: 0.996 (one miss, "Tom the Chippy", left on purpose).
    assert bench.evaluate_types(bench.load_holdout2()).accuracy >= 0.99
