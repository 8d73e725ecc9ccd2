"""Unit tests for consumers.offsets.OffsetTracker."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.offsets import OffsetTracker

TP = ("orders", 0)


def test_nothing_started_nothing_committable() -> None:
    tracker = OffsetTracker()
    assert tracker.committable() == {}
    assert tracker.safe_point(*TP) is None
    assert tracker.in_flight(*TP) == 0


def test_safe_point_is_lowest_unfinished_then_next_offset() -> None:
    tracker = OffsetTracker()
    for offset in (5, 6, 9, 12):  # gaps: 7, 8, 10, 11 never delivered
        tracker.started(*TP, offset)
    assert tracker.committable() == {TP: 5}
    tracker.finished(*TP, 9)
    tracker.finished(*TP, 6)
    assert tracker.committable() == {TP: 5}  # 5 still unfinished
    tracker.finished(*TP, 5)
    assert tracker.committable() == {TP: 12}  # 6 and 9 done, gaps skipped
    tracker.finished(*TP, 12)
    assert tracker.committable() == {TP: 13}  # Kafka: next offset to read
    assert tracker.in_flight(*TP) == 0


def test_mark_committed_suppresses_repeats_until_safe_point_moves() -> None:
    tracker = OffsetTracker()
    tracker.started(*TP, 0)
    tracker.started(*TP, 1)
    tracker.finished(*TP, 0)
    positions = tracker.committable()
    assert positions == {TP: 1}
    tracker.mark_committed(positions)
    assert tracker.committable() == {}
    tracker.started(*TP, 2)  # safe point still 1 (offset 1 in flight)
    assert tracker.committable() == {}
    tracker.finished(*TP, 2)
    assert tracker.committable() == {}
    tracker.finished(*TP, 1)
    assert tracker.committable() == {TP: 3}
    # A late acknowledgement of an older commit does not move "committed" back.
    tracker.mark_committed({TP: 3})
    tracker.mark_committed({TP: 1})
    assert tracker.committable() == {}


def test_mark_committed_rejects_positions_past_safe_point_atomically() -> None:
    tracker = OffsetTracker()
    other = ("orders", 1)
    tracker.started(*TP, 0)
    tracker.started(*other, 0)
    tracker.finished(*other, 0)
    with pytest.raises(ValueError):
        tracker.mark_committed({other: 1, TP: 1})  # TP's offset 0 unfinished
    assert tracker.committable() == {TP: 0, other: 1}  # nothing recorded
    tracker.mark_committed({("unknown", 3): 99})  # revoked/unknown: ignored


def test_started_must_increase_and_finish_must_be_in_flight() -> None:
    tracker = OffsetTracker()
    tracker.started(*TP, 10)
    with pytest.raises(ValueError):
        tracker.started(*TP, 10)
    with pytest.raises(ValueError):
        tracker.started(*TP, 3)
    with pytest.raises(ValueError):
        tracker.finished(*TP, 11)  # never started
    assert tracker.finished(*TP, 10) is True
    with pytest.raises(ValueError):
        tracker.finished(*TP, 10)  # twice
    assert tracker.finished("other", 0, 1) is False  # unknown partition


def test_revoke_returns_final_safe_points_and_forgets() -> None:
    tracker = OffsetTracker()
    a, b, c = ("t", 0), ("t", 1), ("t", 2)
    tracker.started(*a, 100)
    tracker.started(*a, 101)
    tracker.finished(*a, 100)
    tracker.started(*b, 7)
    tracker.finished(*b, 7)
    tracker.mark_committed({b: 8})
    tracker.started(*c, 0)
    final = tracker.revoke([a, b, ("t", 9)])
    assert final == {a: 101, b: 8}  # already-committed b still reported; unknown ignored
    assert tracker.partitions() == [c]
    assert tracker.committable() == {c: 0}
    assert tracker.in_flight(*a) == 0
    assert tracker.finished(*a, 101) is False  # late completion after revoke: ignored


def test_generation_makes_stale_completions_harmless() -> None:
    tracker = OffsetTracker()
    old_gen = tracker.started(*TP, 5)
    tracker.revoke([TP])
    new_gen = tracker.started(*TP, 5)  # reassigned, same offset replayed
    assert new_gen != old_gen
    assert tracker.finished(*TP, 5, generation=old_gen) is False
    assert tracker.committable() == {TP: 5}  # not wrongly advanced
    assert tracker.finished(*TP, 5, generation=new_gen) is True
    assert tracker.committable() == {TP: 6}


def test_million_offsets_are_fast() -> None:
    tracker = OffsetTracker()
    n = 1_000_000
    began = time.perf_counter()
    for offset in range(0, 2 * n, 2):  # every other offset: gaps
        tracker.started(*TP, offset)
    # Worst case for the lazy window: the lowest offset finishes last.
    for offset in range(2 * n - 2, -1, -2):
        tracker.finished(*TP, offset)
        if offset == 2:
            assert tracker.committable() == {TP: 0}
    assert tracker.committable() == {TP: 2 * n - 1}
    elapsed = time.perf_counter() - began
    assert elapsed < 10, elapsed  # ~1 s on a laptop; quadratic would take hours


def test_random_finish_order_large() -> None:
    rng = random.Random(7)
    tracker = OffsetTracker()
    offsets = list(range(200_000))
    for offset in offsets:
        tracker.started(*TP, offset)
    rng.shuffle(offsets)
    unfinished = set(offsets)
    for i, offset in enumerate(offsets):
        tracker.finished(*TP, offset)
        unfinished.discard(offset)
        if i % 20_000 == 0:
            assert tracker.safe_point(*TP) == min(unfinished)
    assert tracker.safe_point(*TP) == 200_000


# ---------------------------------------------------------------- model-based

PARTITIONS = [("a", 0), ("a", 1), ("b", 0)]


class Model:
    """Brute-force reference: explicit sets, min() over them."""

    def __init__(self) -> None:
        self.started: dict[tuple[str, int], list[int]] = {}
        self.done: dict[tuple[str, int], set[int]] = {}
        self.committed: dict[tuple[str, int], int] = {}

    def unfinished(self, tp: tuple[str, int]) -> set[int]:
        return set(self.started.get(tp, [])) - self.done.get(tp, set())

    def safe(self, tp: tuple[str, int]) -> int | None:
        if not self.started.get(tp):
            return None
        pending = self.unfinished(tp)
        return min(pending) if pending else max(self.started[tp]) + 1

    def committable(self) -> dict[tuple[str, int], int]:
        out = {}
        for tp in self.started:
            safe = self.safe(tp)
            if safe is not None and safe != self.committed.get(tp):
                out[tp] = safe
        return out


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_matches_brute_force_model(data: st.DataObject) -> None:
    tracker = OffsetTracker()
    model = Model()
    generations: dict[tuple[str, int], int] = {}
    stale: list[tuple[tuple[str, int], int, int]] = []  # (tp, offset, old generation)
    steps = data.draw(st.integers(min_value=1, max_value=80), label="steps")
    for _ in range(steps):
        op = data.draw(st.sampled_from(["start", "start", "finish", "finish", "commit", "revoke"]))
        tp = data.draw(st.sampled_from(PARTITIONS))
        if op == "start":
            base = max(model.started[tp]) + 1 if model.started.get(tp) else 0
            offset = base + data.draw(st.integers(min_value=0, max_value=3), label="gap")
            generations[tp] = tracker.started(*tp, offset)
            model.started.setdefault(tp, []).append(offset)
            model.done.setdefault(tp, set())
        elif op == "finish":
            candidates = sorted(model.unfinished(tp))
            use_stale = bool(stale) and data.draw(st.booleans(), label="stale")
            if use_stale:
                old_tp, old_offset, old_gen = stale.pop()
                assert tracker.finished(*old_tp, old_offset, generation=old_gen) is False
            elif candidates:
                offset = data.draw(st.sampled_from(candidates), label="finish")
                assert tracker.finished(*tp, offset, generation=generations[tp]) is True
                model.done[tp].add(offset)
        elif op == "commit":
            positions = tracker.committable()
            tracker.mark_committed(positions)
            model.committed.update(positions)
        else:
            final = tracker.revoke([tp])
            expected = model.safe(tp)
            assert final == ({} if expected is None else {tp: expected})
            stale.extend((tp, o, generations[tp]) for o in model.unfinished(tp))
            model.started.pop(tp, None)
            model.done.pop(tp, None)
            model.committed.pop(tp, None)

        # Invariants after every step.
        positions = tracker.committable()
        assert positions == model.committable()
        for p in PARTITIONS:
            assert tracker.safe_point(*p) == model.safe(p)
            assert tracker.in_flight(*p) == len(model.unfinished(p))
            pending = model.unfinished(p)
            if p in positions and pending:
                # The core safety property: never commit past unfinished work.
                assert positions[p] <= min(pending)
