"""A user's own Parquet tables, `interactions`, `users` and `items`, read as a feature schema declares them.

Each table is a Parquet file (`interactions.parquet`) or a directory of them
(`interactions/`) under one root:

| table | columns |
|---|---|
| interactions | `user_id`, `item_id`, `rating` (1.0 if absent: implicit feedback), `timestamp` (0 if absent) |
| users | `user_id` and every user feature of the schema |
| items | `item_id` and every item feature of the schema |

Timestamps are int seconds or Arrow timestamps. Columns not in the schema are
ignored. A feature column that is missing, or cannot be cast to its declared type, is refused with a message naming the
column and the schema file; nulls take the feature's `default`, and are refused
where it has none. `users` and `items` may be left out when every feature of
theirs has a default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys_core.bundle import is_local
from recsys_core.data.columns import is_hidden, read_column
from recsys_core.data.tables import RATINGS_SCHEMA, DataError, InteractionData, check_known
from recsys_core.schema import ITEM_ID, RATING, TIMESTAMP, USER_ID, Feature, FeatureSchema

BATCH_ROWS = 65_536  # interactions per batch when they are streamed


def read_parquet_tables(root: str, schema: FeatureSchema) -> InteractionData:
    """Reads `root/interactions[.parquet]` and, if present, `users` and `items`, as `schema` declares them.

    `root` is a local directory or a URI pyarrow knows (gs://, s3://, hdfs://).
    """
    tables = open_parquet_tables(root, schema)
    ratings = pa.Table.from_batches([], RATINGS_SCHEMA)
    ratings = pa.concat_tables([ratings, *(batch for _, batch in tables.rating_batches())])
    return InteractionData(
        ratings=ratings, users=tables.users, items=tables.items, schema=schema, lineage=tables.lineage
    )


@dataclasses.dataclass(frozen=True)
class ParquetTables:
    """A Parquet data set opened for reading: `users` and `items` read whole (a row per entity), the
    interactions streamed in batches (`rating_batches`), so they may outgrow memory.

    Attributes:
        users, items: tables of `schema.table_schema("user" / "item")`.
        num_ratings: rows of `interactions`, from the files' footers.
        implicit: the interactions have no rating column (every rating is 1.0).
    """

    root: str
    users: pa.Table
    items: pa.Table
    schema: FeatureSchema
    num_ratings: int
    implicit: bool
    _filesystem: pafs.FileSystem
    _paths: tuple[str, ...]

    @property
    def lineage(self) -> dict:
        return {"source": "parquet", "path": self.root, "num_ratings": self.num_ratings, "implicit": self.implicit}

    def rating_batches(self, rows: int = BATCH_ROWS) -> Iterator[tuple[int, pa.Table]]:
        """`(first row, table of RATINGS_SCHEMA)` for every `rows` interactions at most, files in name order.

        Raises:
            DataError: a file cannot be read, a column cannot be cast, or an id is in neither users nor items.
        """
        first = 0
        for path in self._paths:
            for batch in _batches(self._filesystem, path, rows, [USER_ID, ITEM_ID, RATING, TIMESTAMP]):
                ratings = self._ratings(pa.Table.from_batches([batch]), first)
                check_known("ratings.user_id", ratings[USER_ID], self.users[USER_ID], "users")
                check_known("ratings.item_id", ratings[ITEM_ID], self.items[ITEM_ID], "items")
                yield first, ratings
                first += batch.num_rows

    def _ratings(self, batch: pa.Table, first: int) -> pa.Table:
        label = f"interactions ({self.root})"
        keys = (_Key(USER_ID), _Key(ITEM_ID), _Key(RATING, pa.float32(), 1.0), _Key(TIMESTAMP, pa.int64(), 0))
        return pa.table([_column(batch, label, key, self.schema, first) for key in keys], schema=RATINGS_SCHEMA)


def open_parquet_tables(root: str, schema: FeatureSchema) -> ParquetTables:
    """Opens `root/interactions[.parquet]` and reads `users` and `items` (or, where absent, the ids the
    interactions name, in one pass over their id columns).

    Raises:
        DataError: a table is missing or unreadable, or does not follow `schema`.
    """
    if not is_local(root):
        filesystem, base = pafs.FileSystem.from_uri(root)
    else:
        root = os.path.abspath(root)
        filesystem, base = pafs.LocalFileSystem(), root
    if filesystem.get_file_info(base).type != pafs.FileType.Directory:
        raise DataError(f"Parquet data directory {root} does not exist; it must hold interactions[.parquet]")
    paths = tuple(_files(filesystem, base, "interactions", required=True))
    footers = [_guarded(path, lambda p=path: pq.read_metadata(p, filesystem=filesystem)) for path in paths]
    names = set().union(*(footer.schema.to_arrow_schema().names for footer in footers))
    implicit = RATING not in names
    if implicit and schema.rating:
        raise DataError(
            f"interactions table in {root} has no {RATING!r} column, but {schema.describe()} declares "
            '"rating": true; add the column, or for implicit feedback set "rating": false (ids only: --schema implicit)'
        )
    users = _read(filesystem, base, "users")
    items = _read(filesystem, base, "items")
    if users is None or items is None:
        ids = {USER_ID: [], ITEM_ID: []}
        for path in paths:
            for batch in _batches(filesystem, path, BATCH_ROWS, list(ids)):
                for key in ids:
                    ids[key].append(
                        pc.unique(_column(pa.Table.from_batches([batch]), "interactions", _Key(key), schema))
                    )
        unique = {key: pc.unique(pa.chunked_array(parts, pa.string())) for key, parts in ids.items()}
        users = users if users is not None else pa.table({USER_ID: unique[USER_ID]})
        items = items if items is not None else pa.table({ITEM_ID: unique[ITEM_ID]})
    return ParquetTables(
        root=root,
        users=_feature_table(users, "users", USER_ID, schema.of("user"), schema),
        items=_feature_table(items, "items", ITEM_ID, schema.of("item"), schema),
        schema=schema,
        num_ratings=sum(footer.num_rows for footer in footers),
        implicit=implicit,
        _filesystem=filesystem,
        _paths=paths,
    )


class _Key:
    """A fixed column (ids, rating, timestamp), read like a feature."""

    def __init__(self, name: str, kind: pa.DataType = pa.string(), default=None) -> None:
        self.name, self.kind, self.default = name, kind, default

    def arrow_type(self) -> pa.DataType:
        return self.kind


def _files(filesystem: pafs.FileSystem, root: str, name: str, required: bool) -> list[str]:
    """The Parquet files of table `name`: `root/name.parquet`, or every file under `root/name/` in name order
    (leaving out `_SUCCESS`, `.crc` and other names starting with `_` or `.`)."""
    for path in (f"{root}/{name}", f"{root}/{name}.parquet"):
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [path]
        if info.type == pafs.FileType.Directory:
            found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
            paths = sorted(f.path for f in found if f.type == pafs.FileType.File and not is_hidden(f.path))
            if paths:
                return paths
            raise DataError(f"{path}/ holds no Parquet files; write the {name} table there")
    if required:
        raise DataError(f"{root} has no {name} table: write it as {name}.parquet or a {name}/ directory")
    return []


def _read(filesystem: pafs.FileSystem, root: str, name: str) -> pa.Table | None:
    """Table `name`, read whole, or None if there is none."""
    paths = _files(filesystem, root, name, required=False)
    if not paths:
        return None
    return pa.concat_tables(
        [_guarded(path, lambda p=path: pq.read_table(p, filesystem=filesystem)) for path in paths],
        promote_options="permissive",
    )


def _batches(filesystem: pafs.FileSystem, path: str, rows: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Batches of at most `rows` rows of the `columns` file `path` has (a row group decoded at a time; the
    file is open only while it is read)."""
    with _guarded(path, lambda: filesystem.open_input_file(path)) as handle:
        file = _guarded(path, lambda: pq.ParquetFile(handle))
        present = [name for name in columns if name in file.schema_arrow.names]
        batches = file.iter_batches(batch_size=rows, columns=present)
        while True:
            batch = _guarded(path, lambda: next(batches, None))
            if batch is None:
                return
            yield batch


def _guarded(path: str, read):
    try:
        return read()
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"cannot read Parquet table {path}: {error}") from error


def _feature_table(
    table: pa.Table, label: str, key: str, features: tuple[Feature, ...], schema: FeatureSchema
) -> pa.Table:
    columns = [_column(table, label, _Key(key), schema)] + [_column(table, label, f, schema) for f in features]
    return pa.table(columns, names=[key] + [f.name for f in features])


def _column(
    table: pa.Table, label: str, feature: Feature | _Key, schema: FeatureSchema, first_row: int = 0
) -> pa.Array:
    """The column of `feature` (`columns.read_column`), nulls filled with its default; a value that does not
    convert, or a null where there is no default, is refused (`first_row`: the table's first row in its file
    set, for messages)."""
    kind, default = feature.arrow_type(), feature.default
    read = read_column(table, feature.name, kind, default is None, f"{label} table", schema.describe())
    failure = read.first_failure(table, feature.name)
    if failure is not None:
        row, value = failure
        raise DataError(
            f"{label}.{feature.name} in row {first_row + row} is {value!r}, which cannot be read as the {kind} "
            f"that {schema.describe()} declares; fix the value, or drop the row"
        )
    column = read.values
    if feature.name not in table.column_names:
        return pc.fill_null(column, pa.scalar(default, kind))
    if column.null_count:
        if default is None:
            row = first_row + pc.index(pc.is_null(column), True).as_py()
            raise DataError(
                f"{label}.{feature.name} is null in row {row} ({column.null_count} rows); fill it, or give the "
                f"feature a default in {schema.describe()}"
            )
        column = pc.fill_null(column, pa.scalar(default, kind))
    return column
