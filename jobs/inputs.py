"""Stages the job's inputs as Parquet files that workers read, so the pipeline graph carries only paths.

(`beam.Create` over the tables themselves pickles them into the graph: minutes
for 100 000 users.) Files go under the run's `_staging/<run_id>/input/`, which
publishing removes.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from recsys_core.data import InteractionData
from recsys_core.data.tables import item_counts
from recsys_core.recommend import UserBlock, user_blocks

_POPULARITY = "popularity"


def stage_inputs(data: InteractionData, directory: str, block_size: int) -> tuple[str, list[str]]:
    """Writes the items (with popularity) and one file per user block; returns their paths."""
    items = data.items.append_column(_POPULARITY, pa.array(item_counts(data.ratings, data.items["item_id"])))
    items_path = FileSystems.join(directory, "items.parquet")
    _write(items, items_path)
    block_paths = []
    for number, block in enumerate(user_blocks(data.users, data.ratings, data.items, block_size)):
        block_paths.append(FileSystems.join(directory, f"users-{number:05d}.parquet"))
        _write(block.to_table(), block_paths[-1])
    return items_path, block_paths


def read_items(path: str) -> tuple[pa.Table, object]:
    """`(items table, [items] popularity)` from a staged items file."""
    table = _read(path)
    return table.drop_columns([_POPULARITY]), table[_POPULARITY].to_numpy()


def read_block(path: str) -> UserBlock:
    return UserBlock.from_table(_read(path))


def _write(table: pa.Table, path: str) -> None:
    with FileSystems.create(path) as handle:
        pq.write_table(table, handle)


def _read(path: str) -> pa.Table:
    with FileSystems.open(path) as handle:
        return pq.read_table(handle)
