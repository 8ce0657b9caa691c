"""What the workers do with input rows: check them (dead letters out), cut each user bucket into blocks, keep
one row per item, and sort the dead letters into one table."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from jobs.counters import count_dead, counter, dead_prefix, rows_dead, rows_read
from jobs.parquet_files import WHOLE_TABLE
from jobs.scoring import DEAD, preload_bundle
from jobs.sources import UNREADABLE_FILE, RefusedFile
from jobs.spill import unspill
from recsys_core.faults import fault_point
from recsys_core.schema import ITEM_ID, USER_ID
from recsys_core.serving import outputs
from recsys_core.serving.recommend import ItemIndex, user_blocks
from recsys_core.serving.validation import (
    INTERACTIONS,
    ITEMS,
    SOURCE,
    USERS,
    Rules,
    check_rows,
    dead_letters,
    group_users,
    keep_one_per_id,
    with_source,
)


def refused_file_letter(refused: RefusedFile) -> pa.Table:
    """One dead letter for a file the job did not read; its footer's rows count as read and invalid."""
    for name in (rows_read(refused.table), rows_dead(refused.table), dead_prefix(refused.table) + UNREADABLE_FILE):
        counter(name).inc(refused.rows)
    return dead_letters(refused.table, UNREADABLE_FILE, "", [refused.reason], refused.path)


class CheckRowsFn(beam.DoFn):
    """`(source, rows)` -> valid rows with their source column, and dead letters (tagged `DEAD`)."""

    def __init__(self, table: str, rules: Rules, bundle: str | None) -> None:
        self._table, self._rules, self._bundle = table, rules, bundle

    def setup(self) -> None:
        self._read = counter(rows_read(self._table))
        if self._bundle:  # every worker reads first: start loading what it will score with
            preload_bundle(self._bundle)

    def process(self, batch: tuple[str, pa.Table]):
        fault_point("job:read")
        source, rows = batch
        valid, dead = check_rows(rows, self._table, self._rules, source)
        self._read.inc(rows.num_rows)
        count_dead(dead)
        yield with_source(valid, source)
        if dead.num_rows:
            yield beam.pvalue.TaggedOutput(DEAD, dead)


class BuildBlocksFn(beam.DoFn):
    """One user bucket's parts -> `(name, UserBlock)` blocks, and dead letters (tagged `DEAD`)."""

    def __init__(self, rules: Rules, has_users: bool, block_size: int, max_seen: int) -> None:
        self._rules, self._has_users = rules, has_users
        self._block_size, self._max_seen = block_size, max_seen

    def _rows(self, parts: list[tuple[str, pa.Table]], table: str) -> pa.Table:
        """This bucket's rows of `table`, with their source column (none: an empty table)."""
        tables = [rows for kind, rows in parts if kind == table]
        return (
            pa.concat_tables(tables)
            if tables
            else self._rules.table_schema(table).append(pa.field(SOURCE, pa.string())).empty_table()
        )

    def process(self, element, index: ItemIndex):
        bucket, parts = element[0], [unspill(part) for part in element[1]]
        interactions = self._rows(parts, INTERACTIONS)
        users = self._rows(parts, USERS) if self._has_users else None
        if not interactions.num_rows and (users is None or not users.num_rows):
            return
        users, interactions, dead = group_users(users, interactions, index.items[ITEM_ID], self._rules.schema)
        count_dead(dead)
        users = users.sort_by(USER_ID)
        for number, block in enumerate(user_blocks(users, interactions, index.items, self._block_size, self._max_seen)):
            yield f"{bucket:06d}-{number:04d}", block
        if dead.num_rows:
            yield beam.pvalue.TaggedOutput(DEAD, dead)


def one_item_per_id(tables: list[pa.Table], rules: Rules):
    """Every checked item row -> `(items, dead letters)`: one row per item id (`validation.keep_one_per_id`)."""
    items = pa.concat_tables(tables) if tables else rules.table_schema(ITEMS).empty_table()
    return keep_one_per_id(items, ITEM_ID, ITEMS)


def sorted_dead_letters(tables: list[pa.Table]) -> tuple[str, pa.Table]:
    """All dead letters in one table in a canonical row order (whatever order the workers produced them)."""
    dead = pa.concat_tables([outputs.SCHEMAS[outputs.DEAD_LETTER].empty_table(), *tables])
    return WHOLE_TABLE, dead.sort_by([(name, "ascending") for name in dead.column_names])
