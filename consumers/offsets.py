"""Per-partition offset bookkeeping for out-of-order processing.

Records of one partition may finish in any order (they are dispatched per key,
not per partition), so the consumer may only commit up to the *lowest offset
that has been started but not finished* -- the Confluent Parallel Consumer
rule. Everything below that point is done; everything at or above it may be
replayed after a crash or rebalance (at-least-once).

Kafka semantics: the committed offset is the *next* offset to read. So a
partition's safe point is

* the lowest unfinished offset, if any offset is unfinished, else
* (highest offset started) + 1.

Started offsets are strictly increasing per partition but may have gaps
(compacted topics, transaction markers); gaps never hold the safe point back
because only offsets actually handed to ``started`` are tracked.

Complexity: ``started`` and ``finished`` are amortised O(1); ``committable`` is
O(assigned partitions). Memory per partition is O(offsets started since the
lowest unfinished offset).

This module is pure bookkeeping: it is not thread-safe and does no I/O. The
consumer loop owns one tracker and calls it from one thread (completion
callbacks from worker threads must be marshalled to it, or guarded by the
caller's lock).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["OffsetTracker", "PartitionOffsets", "TopicPartition"]

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class PartitionOffsets:
    """Offsets of one assigned partition (one assignment *generation*).

    Invariants (hold between public calls):

    * ``window`` is strictly increasing and holds every unfinished offset, plus
      possibly some finished offsets that sit above an unfinished one (lazy
      deletion: they are popped once everything below them is finished).
    * ``unfinished`` is a subset of ``window``.
    * ``window[0]`` (if ``window`` is non-empty) is unfinished, so the safe
      point is ``window[0]`` if ``window`` else ``next_offset``.
    * ``next_offset`` is (highest offset ever started) + 1, or ``None`` if no
      offset was started yet.
    * The safe point never decreases: offsets only enter above ``next_offset``
      and leave from the bottom.
    * ``committed`` (if not ``None``) is <= the safe point.
    """

    generation: int
    window: deque[int] = field(default_factory=deque)
    unfinished: set[int] = field(default_factory=set)
    next_offset: int | None = None
    committed: int | None = None

    def start(self, offset: int) -> None:
        if offset < 0:
            raise ValueError(f"negative offset {offset}")
        if self.next_offset is not None and offset < self.next_offset:
            raise ValueError(
                f"offset {offset} started out of order (expected >= {self.next_offset})"
            )
        self.window.append(offset)
        self.unfinished.add(offset)
        self.next_offset = offset + 1

    def finish(self, offset: int) -> None:
        try:
            self.unfinished.remove(offset)
        except KeyError:
            raise ValueError(
                f"offset {offset} is not in flight (never started, or finished twice)"
            ) from None
        # Restore "window[0] is unfinished". Each offset is popped at most once,
        # so this loop is amortised O(1) per started offset.
        window, unfinished = self.window, self.unfinished
        while window and window[0] not in unfinished:
            window.popleft()

    def safe_point(self) -> int | None:
        """Offset to commit (next offset to read), or ``None`` if nothing started."""
        if self.window:
            return self.window[0]
        return self.next_offset


class OffsetTracker:
    """Tracks started/finished offsets of all assigned partitions.

    Typical use by the consumer loop::

        gen = tracker.started(msg.topic(), msg.partition(), msg.offset())
        ... later, when the work item completes (success or terminal failure):
        tracker.finished(topic, partition, offset, generation=gen)
        ... periodically:
        positions = tracker.committable()
        if positions:
            consumer.commit(offsets=[...positions...])
            tracker.mark_committed(positions)
        ... on revoke (after in-flight work for those partitions has finished):
        final = tracker.revoke(revoked_partitions)
        consumer.commit(offsets=[...final...])

    A partition becomes known on its first ``started`` and is forgotten by
    ``revoke``. Each time a partition becomes known it gets a fresh
    *generation* number; passing the generation returned by ``started`` to
    ``finished`` makes completions of work from an earlier assignment of the
    same partition harmless no-ops instead of wrongly finishing an offset of
    the current assignment.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}
        self._generations = 0

    def started(self, topic: str, partition: int, offset: int) -> int:
        """Record that ``offset`` was handed to processing.

        Offsets must be strictly increasing per partition (gaps allowed);
        raises ``ValueError`` otherwise. Returns the partition's generation.
        """
        tp = (topic, partition)
        state = self._partitions.get(tp)
        if state is None:
            self._generations += 1
            state = PartitionOffsets(generation=self._generations)
            state.start(offset)  # validate before registering
            self._partitions[tp] = state
        else:
            state.start(offset)
        return state.generation

    def finished(
        self, topic: str, partition: int, offset: int, generation: int | None = None
    ) -> bool:
        """Record that processing of ``offset`` completed (in any order).

        Returns ``True`` if the offset was in flight and is now finished, and
        ``False`` if the partition is not tracked (revoked) or ``generation``
        is given and belongs to an earlier assignment (stale completion).
        Raises ``ValueError`` if the partition is tracked in the same
        generation but ``offset`` is not in flight (never started, or finished
        twice): that is a bug that would otherwise corrupt commits.
        """
        state = self._partitions.get((topic, partition))
        if state is None or (generation is not None and generation != state.generation):
            return False
        state.finish(offset)
        return True

    def committable(self) -> dict[TopicPartition, int]:
        """Safe points of partitions whose safe point moved since the last commit.

        Partitions never marked committed are included as soon as anything was
        started on them. The values are Kafka commit positions (next offset to
        read) and never exceed any unfinished offset.
        """
        result: dict[TopicPartition, int] = {}
        for tp, state in self._partitions.items():
            safe = state.safe_point()
            if safe is not None and safe != state.committed:
                result[tp] = safe
        return result

    def mark_committed(self, positions: Mapping[TopicPartition, int]) -> None:
        """Record that ``positions`` were committed to Kafka.

        Unknown (revoked) partitions are ignored; a position lower than one
        already recorded is ignored (late acknowledgement of an older commit).
        A position above the partition's current safe point raises
        ``ValueError`` and nothing is recorded.
        """
        updates: list[tuple[PartitionOffsets, int]] = []
        for tp, position in positions.items():
            state = self._partitions.get(tp)
            if state is None:
                continue
            safe = state.safe_point()
            if safe is None or position > safe:
                raise ValueError(f"{tp}: position {position} is beyond the safe point {safe}")
            updates.append((state, position))
        for state, position in updates:
            if state.committed is None or position > state.committed:
                state.committed = position

    def revoke(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Forget ``partitions``; return the final safe point of each known one.

        Every known partition on which something was started is included, even
        if its safe point was already committed (re-committing the same
        position is harmless). Callers should first let in-flight work for
        these partitions finish (or abandon it), otherwise the returned
        positions are held back by that work -- which is still correct, merely
        causes replay.
        """
        result: dict[TopicPartition, int] = {}
        for tp in partitions:
            state = self._partitions.pop(tp, None)
            if state is None:
                continue
            safe = state.safe_point()
            if safe is not None:
                result[tp] = safe
        return result

    def in_flight(self, topic: str, partition: int) -> int:
        """Number of started-but-unfinished offsets of the partition (0 if unknown)."""
        state = self._partitions.get((topic, partition))
        return 0 if state is None else len(state.unfinished)

    def safe_point(self, topic: str, partition: int) -> int | None:
        """Current safe point of the partition, or ``None`` if unknown/nothing started."""
        state = self._partitions.get((topic, partition))
        return None if state is None else state.safe_point()

    def partitions(self) -> list[TopicPartition]:
        """Partitions currently tracked."""
        return list(self._partitions)
