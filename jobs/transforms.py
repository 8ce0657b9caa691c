"""Labelled composite transforms of the batch job. `expand` only wires; `recsys_core` computes.

Every data-sized step runs on the workers: read -> check rows (dead letters
out) -> group each bucket of users with their interactions -> blocks -> score.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import operator
import os
import threading
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquetBatched
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.shared import Shared

from jobs.sources import UNREADABLE_FILE, JobInputs, RefusedFile
from recsys_core.data.activity import ALL_TIME, NEVER, ItemActivity, newest_time, window_start, windows_counted
from recsys_core.faults import fault_point
from recsys_core.schema import ITEM_ID, TIMESTAMP, USER_ID
from recsys_core.serving import outputs
from recsys_core.serving.recommend import (
    BundleScorer,
    ItemIndex,
    RecommendSettings,
    build_item_index,
    recommend_block,
    similar_items,
    user_blocks,
)
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

NAMESPACE = "recsys"
WHOLE_TABLE = "000000000"  # the file name of a table written as one file (item embeddings, dead letters)
DEAD = "dead"
_SCORERS = Shared()  # one loaded bundle per worker process, whatever the number of DoFn instances


def _counter(name: str):
    return Metrics.counter(NAMESPACE, name)


def count_dead(dead: pa.Table) -> None:
    """Counts dead letters per table (`rows_dead_<table>`) and per reason (`dead_<table>_<reason>`)."""
    if not dead.num_rows:
        return
    for row in dead.group_by(["table", "reason"]).aggregate([([], "count_all")]).to_pylist():
        _counter(f"rows_dead_{row['table']}").inc(row["count_all"])
        _counter(f"dead_{row['table']}_{row['reason']}").inc(row["count_all"])


class _WithBundle(beam.DoFn):
    """Loads the bundle once per worker process, in `setup`."""

    def __init__(self, bundle: str) -> None:
        self._bundle = bundle

    def setup(self) -> None:
        self.scorer = _load_bundle(self._bundle)


def _load_bundle(bundle: str) -> BundleScorer:
    return _SCORERS.acquire(lambda: BundleScorer(bundle), tag=bundle)


_PRELOADED: dict[str, BundleScorer | None] = {}  # keeps each worker's preloaded bundle alive (Shared holds weakly)
_PRELOAD_LOCK = threading.Lock()


def preload_bundle(bundle: str) -> None:
    """Starts loading the bundle in a background thread, once per worker process, so that the first stage
    that scores does not wait for it (loading takes seconds; `_WithBundle` then gets the same object)."""
    with _PRELOAD_LOCK:
        if bundle in _PRELOADED:
            return
        _PRELOADED[bundle] = None

    def load() -> None:
        _PRELOADED[bundle] = _load_bundle(bundle)

    threading.Thread(target=load, name="preload-bundle", daemon=True).start()


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


def _refused_file_letter(refused: RefusedFile) -> pa.Table:
    """One dead letter for a file the job did not read; its footer's rows count as read and invalid."""
    for counter in (
        f"rows_read_{refused.table}",
        f"rows_dead_{refused.table}",
        f"dead_{refused.table}_{UNREADABLE_FILE}",
    ):
        _counter(counter).inc(refused.rows)
    return dead_letters(refused.table, UNREADABLE_FILE, "", [refused.reason], refused.path)


class RefusedFiles(beam.PTransform):
    """The input files the launcher refused (`JobInputs.refused`) -> a dead letter each."""

    def __init__(self, inputs: JobInputs) -> None:
        super().__init__()
        self._inputs = inputs

    def expand(self, pipeline):
        return pipeline | "Refused" >> beam.Create(list(self._inputs.refused)) | beam.Map(_refused_file_letter)


class _CheckRowsFn(beam.DoFn):
    def __init__(self, table: str, rules: Rules, bundle: str | None) -> None:
        self._table, self._rules, self._bundle = table, rules, bundle

    def setup(self) -> None:
        self._read = _counter(f"rows_read_{self._table}")
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


class CheckRows(beam.PTransform):
    """`(source, rows)` -> valid rows with their source column (main) and dead letters (tagged `dead`).

    With `bundle`, each worker starts loading it in the background (`preload_bundle`).
    """

    def __init__(self, table: str, rules: Rules, bundle: str | None = None) -> None:
        super().__init__()
        self._table, self._rules, self._bundle = table, rules, bundle

    def expand(self, batches):
        check = _CheckRowsFn(self._table, self._rules, self._bundle)
        return batches | "Check" >> beam.ParDo(check).with_outputs(DEAD, main="rows")


def user_bucket(user_ids: pa.Array, buckets: int) -> np.ndarray:
    """`[rows]` stable bucket of each user id (crc32), the same on every worker and every run."""
    return np.array([zlib.crc32(u.encode()) % buckets for u in user_ids.to_pylist()], np.int64)


def _by_bucket(rows: pa.Table, buckets: int):
    """`rows` sorted by user bucket (one chunk), and each bucket's `(bucket, start, stop)` rows."""
    bucket = user_bucket(rows[USER_ID].combine_chunks(), buckets)
    order = np.argsort(bucket, kind="stable")
    keys, starts = np.unique(bucket[order], return_index=True)
    stops = np.append(starts[1:], len(order))
    return rows.take(order).combine_chunks(), zip(keys.tolist(), starts.tolist(), stops.tolist(), strict=True)


def _split_by_bucket(rows: pa.Table, tag: str, buckets: int):
    """Rows -> `(bucket, (tag, rows of that bucket))`: the rows themselves travel through the shuffle."""
    ordered, ranges = _by_bucket(rows, buckets)
    for key, start, stop in ranges:
        yield key, (tag, ordered.slice(start, stop - start))


class _SpillFn(beam.DoFn):
    """Rows -> `(bucket, (tag, file, record batch))`: the rows go to one Arrow file per batch, one record batch
    per bucket, and only their address travels through the shuffle."""

    def __init__(self, tag: str, buckets: int, directory: str) -> None:
        self._tag, self._buckets, self._directory = tag, buckets, directory

    def process(self, rows: pa.Table):
        if not rows.num_rows:
            return
        ordered, ranges = _by_bucket(rows, self._buckets)
        path = FileSystems.join(self._directory, f"{self._tag}-{uuid.uuid4().hex}.arrow")
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            with pa.ipc.new_file(handle, ordered.schema) as writer:
                for number, (key, start, stop) in enumerate(ranges):
                    writer.write_batch(ordered.slice(start, stop - start).to_batches()[0])
                    yield key, (self._tag, path, number)


def _unspill(part: tuple) -> tuple[str, pa.Table]:
    """A shuffled part -> `(tag, rows)`: the rows, or read back from their Arrow file."""
    if len(part) == 2:
        return part
    tag, path, number = part
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return tag, pa.Table.from_batches([pa.ipc.open_file(handle).get_batch(number)])


class _BuildBlocksFn(beam.DoFn):
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
        bucket, parts = element[0], [_unspill(part) for part in element[1]]
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


def _item_counts(rows: pa.Table, since: int | None = None) -> tuple[list, list]:
    """Sparse `(item ids, counts)` of the interactions in `rows` (only those after `since`, when given)."""
    if since is not None:
        rows = rows.filter(pc.greater(rows[TIMESTAMP], since))
    counts = pc.value_counts(rows[ITEM_ID].combine_chunks())
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def _item_first_times(rows: pa.Table) -> tuple[list, list]:
    """Sparse `(item ids, time of each one's first interaction)` in `rows`."""
    first = rows.group_by(ITEM_ID).aggregate([(TIMESTAMP, "min")])
    return first[ITEM_ID].to_pylist(), first[f"{TIMESTAMP}_min"].to_pylist()


def _latest(times) -> int | None:
    return max((t for t in times if t is not None), default=None)


class _ByItem(beam.CombineFn):
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


def _dense(by_item: dict, index: ItemIndex, missing: int = 0, dtype=np.float32) -> np.ndarray:
    return np.array([by_item.get(item, missing) for item in index.items[ITEM_ID].to_pylist()], dtype)


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
        by_item = pairs | f"Combine{label}" >> beam.CombineGlobally(_ByItem(combine))
        index = beam.pvalue.AsSingleton(self._index)
        return by_item | f"Dense{label}" >> beam.Map(_dense, index=index, missing=missing, dtype=dtype)

    def expand(self, interactions):
        newest = interactions | "Newest" >> beam.Map(newest_time) | "Latest" >> beam.CombineGlobally(_latest)
        counts = interactions | "Count" >> beam.Map(_item_counts)
        all_time = self._by_item(counts, "Counts", operator.add)
        firsts = interactions | "FirstTimes" >> beam.Map(_item_first_times)
        first_seen = self._by_item(firsts, "FirstTimes", min, NEVER, np.int64)
        windows = []
        for days in windows_counted(self._window_days):
            label = f"Last{days:g}Days".replace(".", "_")
            since = newest | f"Start{label}" >> beam.Map(window_start, days)
            recent = interactions | f"Count{label}" >> beam.Map(_item_counts, since=beam.pvalue.AsSingleton(since))
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
            return beam.ParDo(_SpillFn(tag, self._buckets, self._spill))
        return beam.FlatMap(_split_by_bucket, tag, self._buckets)

    def expand(self, tables):
        users, interactions = tables
        keyed = [
            rows | f"Key{tag.title()}" >> self._key(tag)
            for tag, rows in ((USERS, users), (INTERACTIONS, interactions))
            if rows is not None
        ]
        grouped = keyed | "Union" >> beam.Flatten() | "GroupByBucket" >> beam.GroupByKey()
        build = _BuildBlocksFn(self._rules, self._has_users, self._block_size, self._max_seen)
        return grouped | "Blocks" >> beam.ParDo(build, index=beam.pvalue.AsSingleton(self._index)).with_outputs(
            DEAD, main="blocks"
        )


def _one_item_per_id(tables: list[pa.Table], rules: Rules):
    items = pa.concat_tables(tables) if tables else rules.table_schema(ITEMS).empty_table()
    return keep_one_per_id(items, ITEM_ID, ITEMS)


class _EmbedItemsFn(_WithBundle):
    def process(self, deduplicated: tuple[pa.Table, pa.Table]):
        items, dead = deduplicated
        count_dead(dead)
        index = build_item_index(self.scorer, items)
        broken = ~np.isfinite(index.embeddings).all(axis=1)
        _counter("non_finite_item_embeddings").inc(int(broken.sum()))
        if broken.any():  # the gate refuses the run; zero vectors let it finish and say why (NaN stops top-K)
            index = dataclasses.replace(index, embeddings=np.where(broken[:, None], 0.0, index.embeddings))
        yield index
        if dead.num_rows:
            yield beam.pvalue.TaggedOutput(DEAD, dead)


class EmbedItems(beam.PTransform):
    """Checked item rows -> one `ItemIndex` (main: one row per item id, embedded) and dead letters (`dead`)."""

    def __init__(self, bundle: str, rules: Rules) -> None:
        super().__init__()
        self._bundle, self._rules = bundle, rules

    def expand(self, items):
        catalogue = items | "All" >> beam.combiners.ToList() | "OnePerId" >> beam.Map(_one_item_per_id, self._rules)
        return catalogue | "CandidateTower" >> beam.ParDo(_EmbedItemsFn(self._bundle)).with_outputs(DEAD, main="index")


class _RecommendFn(_WithBundle):
    """Scores blocks `in_flight` at a time on a thread pool, emitting each block's tables in arrival order.

    One block at a time leaves a worker's cores partly idle (parts of selection and row building run on
    one core; TensorFlow, numpy and Arrow release the GIL), as `recommend_blocks` measured in process.
    Every block submitted in a bundle is emitted before the bundle finishes, so a retried bundle loses none.
    """

    def __init__(self, bundle: str, settings: RecommendSettings) -> None:
        super().__init__(bundle)
        self._settings = settings

    def setup(self) -> None:
        super().setup()
        self._with_activity = None  # (index, activity, the index carrying that activity)
        self._in_flight = 2 * _tensorflow_threads()
        self._pool = ThreadPoolExecutor(max_workers=self._in_flight, thread_name_prefix="recommend")

    def start_bundle(self) -> None:
        self._pending = collections.deque()

    def process(self, named_block, index: ItemIndex, activity: ItemActivity):
        fault_point("job:score")
        name, block = named_block
        index = self._index_with(index, activity)
        self._pending.append((name, self._pool.submit(recommend_block, self.scorer, block, index, self._settings)))
        while len(self._pending) > self._in_flight:
            yield from self._emit_oldest(lambda value: value)

    def finish_bundle(self):
        while self._pending:
            yield from self._emit_oldest(GlobalWindows.windowed_value)

    def teardown(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def _emit_oldest(self, wrap):
        name, future = self._pending.popleft()
        recommendations, embeddings, counts = future.result()
        for counter, value in counts.items():  # users_scored, fallback_users, ..., nan_scores
            _counter(counter).inc(value)
        yield wrap((name, recommendations))
        yield beam.pvalue.TaggedOutput(outputs.USER_EMBEDDINGS, wrap((name, embeddings)))

    def _index_with(self, index: ItemIndex, activity: ItemActivity) -> ItemIndex:
        """The index carrying `activity`, built once per worker: side inputs are the same objects for
        every block (a new ItemIndex per block would also recompute its cached item-id bytes)."""
        cached = self._with_activity
        if cached is None or cached[0] is not index or cached[1] is not activity:
            cached = (index, activity, dataclasses.replace(index, activity=activity))
            self._with_activity = cached
        return cached[2]


def _tensorflow_threads() -> int:
    """The cores this worker's TensorFlow may use: `TF_NUM_INTRAOP_THREADS` where the job set it per local
    worker, else every core."""
    return int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or os.cpu_count() or 1


class RecommendUsers(beam.PTransform):
    """Named user blocks -> named recommendations tables (main output) and user embeddings (tagged).

    Per block: query tower, exact top-K over all items with seen items excluded,
    re-rank, popularity fallback for users the model cannot serve.
    """

    def __init__(self, bundle: str, settings: RecommendSettings, index, activity) -> None:
        super().__init__()
        self._bundle, self._settings, self._index, self._activity = bundle, settings, index, activity

    def expand(self, blocks):
        recommend = _RecommendFn(self._bundle, self._settings)
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


class _WriteFileFn(beam.DoFn):
    def __init__(self, table: str, root: str, directory: str) -> None:
        self._table, self._root, self._directory = table, root, directory

    def setup(self) -> None:
        self._rows = _counter(f"rows_written_{self._table}")

    def process(self, named: tuple[str, pa.Table]):
        fault_point("job:write")
        name, rows = named
        sink = pa.BufferOutputStream()
        pq.write_table(rows.cast(outputs.SCHEMAS[self._table]), sink)
        data = sink.getvalue().to_pybytes()
        relative = f"{self._directory}/part-{name}.parquet"
        with FileSystems.create(
            FileSystems.join(self._root, relative), compression_type=CompressionTypes.UNCOMPRESSED
        ) as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            fault_point("job:mid_write")  # half a file on disk
            handle.write(data[len(data) // 2 :])
        self._rows.inc(rows.num_rows)
        yield {
            "table": self._table,
            "path": relative,
            "rows": rows.num_rows,
            "sha256": hashlib.sha256(data).hexdigest(),
        }


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
        return named_tables | "Parquet" >> beam.ParDo(_WriteFileFn(self._table, self._root, self._directory))


def _sorted_dead_letters(tables: list[pa.Table]) -> tuple[str, pa.Table]:
    """All dead letters in one table in a canonical row order (whatever order the workers produced them)."""
    dead = pa.concat_tables([outputs.SCHEMAS[outputs.DEAD_LETTER].empty_table(), *tables])
    return WHOLE_TABLE, dead.sort_by([(name, "ascending") for name in dead.column_names])


class DeadLetters(beam.PTransform):
    """Dead-letter tables -> one named table, sorted (they are a bounded share of the input)."""

    def expand(self, dead):
        return dead | "All" >> beam.combiners.ToList() | "Sort" >> beam.Map(_sorted_dead_letters)


def _distinct_items(recommendations: pa.Table) -> set:
    return set(pc.unique(recommendations[ITEM_ID]).to_pylist())


class CountDistinctItems(beam.PTransform):
    """Named recommendations tables -> the `distinct_items_recommended` counter (for the publish gate)."""

    def expand(self, named_tables):
        distinct = _counter("distinct_items_recommended")
        return (
            named_tables
            | "Items" >> beam.Map(lambda named: _distinct_items(named[1]))
            | "Union" >> beam.CombineGlobally(lambda sets: set().union(*sets))
            | "Count" >> beam.Map(lambda items: distinct.inc(len(items)))
        )
