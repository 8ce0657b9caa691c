"""Labelled composite transforms of the batch job: `expand` only wires. The work they wire is done by the
steps of `rows`, `spill`, `activity`, `scoring` and `parquet_files`, which call `recsys_core`.

Every data-sized step runs on the workers: read -> check rows (dead letters
out) -> group each bucket of users with their interactions -> blocks -> score.
"""

from __future__ import annotations

import operator

import apache_beam as beam
import numpy as np
import pyarrow.compute as pc
from apache_beam.io.parquetio import ReadAllFromParquetBatched

from jobs.activity import ByItem, dense, item_counts, item_first_times, latest
from jobs.counters import DISTINCT_ITEMS_RECOMMENDED, counter
from jobs.parquet_files import WHOLE_TABLE, WriteFileFn
from jobs.rows import BuildBlocksFn, CheckRowsFn, one_item_per_id, refused_file_letter, sorted_dead_letters
from jobs.scoring import DEAD, EmbedItemsFn, RecommendFn
from jobs.sources import JobInputs
from jobs.spill import SpillFn, split_by_bucket
from recsys_core.data.activity import ALL_TIME, NEVER, ItemActivity, newest_time, window_start, windows_counted
from recsys_core.schema import ITEM_ID
from recsys_core.serving import outputs
from recsys_core.serving.recommend import RecommendSettings, similar_items
from recsys_core.serving.validation import INTERACTIONS, USERS, Rules


class ReadTable(beam.PTransform):
    """One input table -> `(source file, rows)` batches: Parquet read on the workers, or a local table."""

    def __init__(self, inputs: JobInputs, table: str) -> None:
        super().__init__()
        self._inputs, self._table = inputs, table

    def expand(self, pipeline):
        if self._table in self._inputs.files:
            files = pipeline | "Files" >> beam.Create(self._inputs.files[self._table])
            return files | "Parquet" >> ReadAllFromParquetBatched(with_filename=True)
        return pipeline | "Local" >> beam.Create(self._inputs.chunks(self._table), reshuffle=False)


class RefusedFiles(beam.PTransform):
    """The input files the launcher refused (`JobInputs.refused`) -> a dead letter each."""

    def __init__(self, inputs: JobInputs) -> None:
        super().__init__()
        self._inputs = inputs

    def expand(self, pipeline):
        return pipeline | "Refused" >> beam.Create(list(self._inputs.refused)) | beam.Map(refused_file_letter)


class CheckRows(beam.PTransform):
    """`(source, rows)` -> valid rows with their source column (main) and dead letters (tagged `dead`).

    With `bundle`, each worker starts loading it in the background (`preload_bundle`).
    """

    def __init__(self, table: str, rules: Rules, bundle: str | None = None) -> None:
        super().__init__()
        self._table, self._rules, self._bundle = table, rules, bundle

    def expand(self, batches):
        check = CheckRowsFn(self._table, self._rules, self._bundle)
        return batches | "Check" >> beam.ParDo(check).with_outputs(DEAD, main="rows")


class Activity(beam.PTransform):
    """Checked interactions -> the catalogue's `ItemActivity` (the fallback's order, the list ranker's time
    features), one element.

    `activity.item_activity` over the job's rows: the clock is the newest checked
    interaction; the popularity counts the interactions of the last `window_days`
    days up to it (ties broken by all-time counts), or all of them. It counts every
    interaction that passed the row checks, before grouping, so that scoring does
    not wait for all users to be grouped (and the groups need not be held
    anywhere): a duplicate event or an interaction of a user unknown to the users
    table still counts towards its item's popularity.
    """

    def __init__(self, index, window_days: float = ALL_TIME) -> None:
        super().__init__()
        self._index, self._window_days = index, window_days

    def _by_item(self, pairs, label: str, combine, missing: int = 0, dtype=np.float32):
        by_item = pairs | f"Combine{label}" >> beam.CombineGlobally(ByItem(combine))
        index = beam.pvalue.AsSingleton(self._index)
        return by_item | f"Dense{label}" >> beam.Map(dense, index=index, missing=missing, dtype=dtype)

    def expand(self, interactions):
        newest = interactions | "Newest" >> beam.Map(newest_time) | "Latest" >> beam.CombineGlobally(latest)
        counts = interactions | "Count" >> beam.Map(item_counts)
        all_time = self._by_item(counts, "Counts", operator.add)
        firsts = interactions | "FirstTimes" >> beam.Map(item_first_times)
        first_seen = self._by_item(firsts, "FirstTimes", min, NEVER, np.int64)
        windows = []
        for days in windows_counted(self._window_days):
            label = f"Last{days:g}Days".replace(".", "_")
            since = newest | f"Start{label}" >> beam.Map(window_start, days)
            recent = interactions | f"Count{label}" >> beam.Map(item_counts, since=beam.pvalue.AsSingleton(since))
            dense = self._by_item(recent, label, operator.add)
            windows.append(dense | f"Key{label}" >> beam.Map(lambda counts, days=days: (days, counts)))
        return newest | "Activity" >> beam.Map(
            ItemActivity.from_counts,
            self._window_days,
            all_time=beam.pvalue.AsSingleton(all_time),
            first_seen=beam.pvalue.AsSingleton(first_seen),
            windows=beam.pvalue.AsDict(windows | "Windows" >> beam.Flatten()),
        )


class BuildUserBlocks(beam.PTransform):
    """Checked users and interactions -> `(name, UserBlock)` (main) and dead letters (`dead`).

    Rows are grouped by a stable hash of the user id into buckets of about one
    block each, on the workers: through Arrow files under `spill` (the rows stay
    on disk and only their addresses are shuffled) or, without `spill`, through
    Beam's `GroupByKey`. Each bucket drops duplicates and ids unknown to the
    other tables (`validation.group_users`) and is cut into blocks of at most
    `block_size` users and `max_seen` seen items, named by bucket and number
    (the same names, and blocks, whatever the runner or the number of workers).
    """

    def __init__(
        self, rules: Rules, has_users: bool, buckets: int, block_size: int, max_seen: int, index, spill: str | None
    ) -> None:
        super().__init__()
        self._rules, self._has_users, self._buckets = rules, has_users, buckets
        self._block_size, self._max_seen, self._index, self._spill = block_size, max_seen, index, spill

    def _key(self, tag: str):
        if self._spill:
            return beam.ParDo(SpillFn(tag, self._buckets, self._spill))
        return beam.FlatMap(split_by_bucket, tag, self._buckets)

    def expand(self, tables):
        users, interactions = tables
        keyed = [
            rows | f"Key{tag.title()}" >> self._key(tag)
            for tag, rows in ((USERS, users), (INTERACTIONS, interactions))
            if rows is not None
        ]
        grouped = keyed | "Union" >> beam.Flatten() | "GroupByBucket" >> beam.GroupByKey()
        build = BuildBlocksFn(self._rules, self._has_users, self._block_size, self._max_seen)
        return grouped | "Blocks" >> beam.ParDo(build, index=beam.pvalue.AsSingleton(self._index)).with_outputs(
            DEAD, main="blocks"
        )


class EmbedItems(beam.PTransform):
    """Checked item rows -> one `ItemIndex` (main: one row per item id, embedded) and dead letters (`dead`)."""

    def __init__(self, bundle: str, rules: Rules) -> None:
        super().__init__()
        self._bundle, self._rules = bundle, rules

    def expand(self, items):
        catalogue = items | "All" >> beam.combiners.ToList() | "OnePerId" >> beam.Map(one_item_per_id, self._rules)
        return catalogue | "CandidateTower" >> beam.ParDo(EmbedItemsFn(self._bundle)).with_outputs(DEAD, main="index")


class RecommendUsers(beam.PTransform):
    """Named user blocks -> named recommendations tables (main output) and user embeddings (tagged).

    Per block: query tower, exact top-K over all items with seen items excluded,
    re-rank, popularity fallback for users the model cannot serve.
    """

    def __init__(self, bundle: str, settings: RecommendSettings, index, activity) -> None:
        super().__init__()
        self._bundle, self._settings, self._index, self._activity = bundle, settings, index, activity

    def expand(self, blocks):
        recommend = RecommendFn(self._bundle, self._settings)
        side = dict(index=beam.pvalue.AsSingleton(self._index), activity=beam.pvalue.AsSingleton(self._activity))
        return blocks | "EmbedRetrieveRerank" >> beam.ParDo(recommend, **side).with_outputs(
            outputs.USER_EMBEDDINGS, main=outputs.RECOMMENDATIONS
        )


class SimilarItems(beam.PTransform):
    """`ItemIndex` -> named item-to-item neighbours tables, one per range of `chunk` items, spread over workers."""

    def __init__(self, k: int, model_version: str, shard_size: int | None = None, chunk: int = 4096) -> None:
        super().__init__()
        self._k, self._version, self._shard_size, self._chunk = k, model_version, shard_size, chunk

    def expand(self, index):
        chunk = self._chunk
        ranges = (
            index
            | "Ranges"
            >> beam.FlatMap(
                lambda i: [(s, min(s + chunk, i.items.num_rows)) for s in range(0, i.items.num_rows, chunk)]
            )
            | "Spread" >> beam.Reshuffle()
        )
        return ranges | "Neighbours" >> beam.Map(
            lambda bounds, i: (
                f"{bounds[0]:09d}",
                similar_items(i, self._k, self._version, range(*bounds), self._shard_size),
            ),
            i=beam.pvalue.AsSingleton(index),
        )


class ItemEmbeddings(beam.PTransform):
    """`ItemIndex` -> the named item embeddings table."""

    def __init__(self, model_version: str) -> None:
        super().__init__()
        self._version = model_version

    def expand(self, index):
        return index | "ToTable" >> beam.Map(
            lambda i, version: (
                WHOLE_TABLE,
                outputs.embeddings_table(outputs.ITEM_EMBEDDINGS_SCHEMA, i.items["item_id"], i.embeddings, version),
            ),
            self._version,
        )


class WriteTable(beam.PTransform):
    """`(name, rows)` -> the Parquet file `<root>/<directory>/part-<name>.parquet` each; yields `{table, path,
    rows, sha256}` per file, path relative to `root`.

    A file's name and bytes depend only on its rows, so a retried bundle rewrites
    the same file and the same inputs give the same files, run after run.
    """

    def __init__(self, table: str, root: str, directory: str) -> None:
        super().__init__()
        self._table, self._root, self._directory = table, root, directory

    def expand(self, named_tables):
        return named_tables | "Parquet" >> beam.ParDo(WriteFileFn(self._table, self._root, self._directory))


class DeadLetters(beam.PTransform):
    """Dead-letter tables -> one named table, sorted (they are a bounded share of the input)."""

    def expand(self, dead):
        return dead | "All" >> beam.combiners.ToList() | "Sort" >> beam.Map(sorted_dead_letters)


class CountDistinctItems(beam.PTransform):
    """Named recommendations tables -> the `distinct_items_recommended` counter (for the publish gate)."""

    def expand(self, named_tables):
        distinct = counter(DISTINCT_ITEMS_RECOMMENDED)
        return (
            named_tables
            | "Items" >> beam.Map(lambda named: set(pc.unique(named[1][ITEM_ID]).to_pylist()))
            | "Union" >> beam.CombineGlobally(lambda sets: set().union(*sets))
            | "Count" >> beam.Map(lambda items: distinct.inc(len(items)))
        )
