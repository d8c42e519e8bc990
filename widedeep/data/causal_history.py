"""What each impression may know of the past, counted strictly before it, chunk by chunk.

The engine (`widedeep.data.prepare`) walks the sorted log chunk by chunk; for each
chunk these give, per impression, its user's causal feedback sequences
(`FeedbackSequences`: positions in per-type event tables) and, when asked for,
its item's history (`ItemHistory`). Both rest on `running_counts`: per row, the
flagged rows of its group before it, carried across chunks, so no whole-log sort
by user or item is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from widedeep.data.external_sort import EventTable, ScratchFolder
from widedeep.data.source import FEEDBACK_TYPES, ITEM_HISTORY_SMOOTHING
from widedeep.data.tables import EVENT_ROW, ColumnChunks, Lookup
from widedeep.schema import FEEDBACK_SEQUENCES

if TYPE_CHECKING:
    from widedeep.data.writer import DatasetWriter


class FeedbackSequences:
    """The causal feedback sequences: per-type event tables and each impression's place in them.

    An event table holds each user's events of one type in order, user after user
    (`per_type` fixes where each user's part starts); a record holds, per sequence,
    the end of its user's events before it and their count capped at `max_length`,
    which the reader gathers (see `widedeep.data.tables`).

    Args:
        per_type: `(len(FEEDBACK_TYPES), users)`: each user's impressions of each type.
        max_length: positions per sequence.
        bucket_rows: event positions per scratch file, when spilled.
        scratch: where the event tables go; `None` keeps them in memory.
    """

    def __init__(
        self,
        per_type: np.ndarray,
        max_length: int,
        bucket_rows: int,
        scratch: ScratchFolder | None = None,
    ) -> None:
        self.max_length = max_length
        self.codes = [FEEDBACK_TYPES.index(name) for name in FEEDBACK_SEQUENCES]
        self.offsets = [np.concatenate([[0], np.cumsum(per_type[c])[:-1]]) for c in self.codes]
        self.events = [
            EventTable(
                int(per_type[c].sum()),
                scratch.path(f"events-{name}") if scratch is not None else None,
                bucket_rows,
            )
            for c, name in zip(self.codes, FEEDBACK_SEQUENCES, strict=True)
        ]
        self._carried = [np.zeros(per_type.shape[1], dtype=np.int64) for _ in self.codes]

    def columns(self, rows: dict[str, np.ndarray], by_user: np.ndarray) -> dict[str, np.ndarray]:
        """The `@{sequence}_end` and `@{sequence}_count` columns of the next chunk of the log.

        Files the chunk's events in the event tables; chunks must come in order.
        """
        user_index, feedback = rows["user_index"], rows["feedback"]
        columns = {}
        for k, (name, code) in enumerate(zip(FEEDBACK_SEQUENCES, self.codes, strict=True)):
            is_event = feedback == code
            count = running_counts(user_index, is_event, self._carried[k], by_user)
            end = self.offsets[k][user_index] + count
            self.events[k].put(end[is_event], rows["item_index"][is_event])
            columns[f"@{name}_end"] = end
            columns[f"@{name}_count"] = np.minimum(count, self.max_length)
        return columns

    def write(
        self, writer: DatasetWriter, item_table: str, item_features: list[str]
    ) -> dict[str, Lookup]:
        """Writes the event tables; the lookups of every sequence feature (from `item_table`)."""
        lookups = {}
        for name, table in zip(FEEDBACK_SEQUENCES, self.events, strict=True):
            writer.write_table(
                f"{name}_events", {EVENT_ROW: ColumnChunks(table.rows, np.int64, table.chunks)}
            )
            lookups.update(
                {
                    f"{name}_{f}": Lookup(
                        item_table,
                        f,
                        events=f"{name}_events",
                        end=f"@{name}_end",
                        count=f"@{name}_count",
                    )
                    for f in item_features
                }
            )
        return lookups


class ItemHistory:
    """The item's history before each impression (`ITEM_HISTORY_FEATURES`), chunk by chunk."""

    def __init__(self, num_items: int) -> None:
        self.shown = np.zeros(num_items, dtype=np.int64)
        self.clicked = np.zeros(num_items, dtype=np.int64)
        self.log_seen = self.log_clicked = 0

    def columns(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`item_log_impressions` and `item_ctr` of the next chunk of the log."""
        item_index, clicked = rows["item_index"], rows["label"] == 1
        by_item = np.argsort(item_index, kind="stable")
        shown = running_counts(item_index, np.ones(len(item_index), bool), self.shown, by_item)
        hits = running_counts(item_index, clicked, self.clicked, by_item)
        log_hits = self.log_clicked + np.cumsum(clicked) - clicked
        prior = (log_hits + 1.0) / (self.log_seen + np.arange(len(clicked)) + 2.0)
        self.log_seen += len(clicked)
        self.log_clicked += int(clicked.sum())
        a = ITEM_HISTORY_SMOOTHING
        return {
            "item_log_impressions": np.log1p(shown).astype(np.float32),
            "item_ctr": ((hits + a * prior) / (shown + a)).astype(np.float32),
        }


def running_counts(
    group: np.ndarray, flag: np.ndarray, carried: np.ndarray, by_group: np.ndarray | None = None
) -> np.ndarray:
    """Per row, how many earlier rows of its group are flagged, chunk after chunk.

    Args:
        group: per row of this chunk, its group (a user's index, `0 <= group <
            len(carried)`), rows in processing order.
        flag: per row, whether it counts (e.g. it is a click).
        carried: per group, the flagged rows of the earlier chunks; updated in place
            to include this chunk's.
        by_group: `np.argsort(group, kind="stable")`, if already known (it is the
            same for every flag of a chunk).

    Returns:
        Per row, the flagged rows of its group strictly before it (earlier chunks
        included).

    Example:

    >>> carried = np.zeros(2, dtype=np.int64)
    >>> running_counts(np.array([0, 0, 1]), np.array([True, True, True]), carried)
    array([0, 1, 0])
    >>> running_counts(np.array([0, 1]), np.array([True, False]), carried)
    array([2, 1])
    """
    n = len(group)
    if by_group is None:
        by_group = np.argsort(group, kind="stable")
    flagged = flag[by_group].astype(np.int64)
    before = np.cumsum(flagged) - flagged  # flagged rows before, in the chunk's group order
    starts = np.ones(n, dtype=bool)
    sorted_group = group[by_group]
    starts[1:] = sorted_group[1:] != sorted_group[:-1]
    group_first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    counts = np.empty(n, dtype=np.int64)
    counts[by_group] = before - before[group_first] + carried[sorted_group]
    carried += np.bincount(group[flag], minlength=len(carried))
    return counts
