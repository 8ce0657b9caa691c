"""The per-item combiners behind `transforms.Activity`: sparse counts and first times from each batch of
checked interactions, merged over the workers into dense per-item arrays."""

from __future__ import annotations

from collections.abc import Callable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_core.schema import ITEM_ID, TIMESTAMP
from recsys_core.serving.recommend import ItemIndex


def item_counts(rows: pa.Table, since: int | None = None) -> tuple[list, list]:
    """Sparse `(item ids, counts)` of the interactions in `rows` (only those after `since`, when given)."""
    if since is not None:
        rows = rows.filter(pc.greater(rows[TIMESTAMP], since))
    counts = pc.value_counts(rows[ITEM_ID].combine_chunks())
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def item_first_times(rows: pa.Table) -> tuple[list, list]:
    """Sparse `(item ids, time of each one's first interaction)` in `rows`."""
    first = rows.group_by(ITEM_ID).aggregate([(TIMESTAMP, "min")])
    return first[ITEM_ID].to_pylist(), first[f"{TIMESTAMP}_min"].to_pylist()


def latest(times) -> int | None:
    """The newest of `times` (None where there are none)."""
    return max((t for t in times if t is not None), default=None)


class ByItem(beam.CombineFn):
    """Sparse `(item ids, values)` pairs -> {item id: the values of that id combined by `combine`}."""

    def __init__(self, combine: Callable[[int, int], int]) -> None:
        self._combine = combine

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, merged: dict, pairs) -> dict:
        for item, value in zip(*pairs, strict=True):
            merged[item] = self._combine(merged[item], value) if item in merged else value
        return merged

    def merge_accumulators(self, accumulators) -> dict:
        merged = {}
        for by_item in accumulators:
            self.add_input(merged, (by_item.keys(), by_item.values()))
        return merged

    def extract_output(self, merged: dict) -> dict:
        return merged


def dense(by_item: dict, index: ItemIndex, missing: int = 0, dtype=np.float32) -> np.ndarray:
    """`[items]` the values of `by_item` in the index's item order, `missing` for items without one."""
    return np.array([by_item.get(item, missing) for item in index.items[ITEM_ID].to_pylist()], dtype)
