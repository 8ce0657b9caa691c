"""Where the job's rows come from, found by the launcher without reading them.

Parquet inputs are directories of files as Spark, Hive or Beam export them:
the launcher lists the files (skipping names that start with `_` or `.`, such as
`_SUCCESS` and `.part-0.parquet.crc`, as those tools do) and reads every file's
footer; the workers read exactly the files listed. A file that is empty, not
Parquet, or whose columns cannot be what the bundle's schema declares is
dead-lettered as a file (`RefusedFile`): its rows count as read and invalid
against `--max-bad-share`, and a table with no usable file is refused before any
work. GroupLens, TFDS and synthetic sources are local conveniences: the launcher
reads them and hands the rows to the same transforms.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from recsys_core.config import DataConfig
from recsys_core.data import DataError, load_data
from recsys_core.data.columns import is_hidden
from recsys_core.schema import FeatureSchema
from recsys_core.serving.validation import INTERACTIONS, ITEMS, USERS, Rules, check_rows

TABLES = (INTERACTIONS, USERS, ITEMS)
UNREADABLE_FILE = "unreadable_file"  # the dead-letter reason of a refused input file
_LOCAL_CHUNK = 65_536
_REASON_CHARACTERS = 300


@dataclasses.dataclass(frozen=True)
class RefusedFile:
    """An input file the job does not read, and why: one dead letter, and `rows` rows counted as invalid.

    Attributes:
        table: the input table it belongs to; path: the file; rows: its footer's row count (0 if unreadable).
        reason: what is wrong, cut to a few hundred characters.
    """

    table: str
    path: str
    rows: int
    reason: str


@dataclasses.dataclass(frozen=True)
class JobInputs:
    """The job's three input tables, as the Parquet files the launcher listed or (local sources) as tables.

    Attributes:
        files: table -> the Parquet files the workers read; absent tables are not given.
        tables: table -> rows, for local sources only.
        estimated_users: for sizing the user buckets (Parquet footer row counts).
        lineage: where the data came from, for the manifest.
        fingerprints: table -> sha256 of its contents as the launcher can see them without reading rows:
            per Parquet file its footer (sizes, offsets, statistics), size and the file system's checksum
            (content CRC on object stores); for local sources, the rows.
        rows: table -> row count of the files read (their footers), or of the local tables.
        refused: input files dead-lettered as a whole (`RefusedFile`).
    """

    files: dict[str, list[str]]
    tables: dict[str, pa.Table]
    estimated_users: int
    lineage: dict
    fingerprints: dict[str, str]
    rows: dict[str, int]
    refused: tuple[RefusedFile, ...] = ()

    def has(self, table: str) -> bool:
        return table in self.files or table in self.tables

    def chunks(self, table: str) -> list[tuple[str, pa.Table]]:
        """A local table as `(source, rows)` batches."""
        rows, source = self.tables[table], f"{self.lineage.get('source')}:{table}"
        return [(source, rows.slice(start, _LOCAL_CHUNK)) for start in range(0, rows.num_rows, _LOCAL_CHUNK)]


def locate_inputs(data: DataConfig, rules: Rules) -> JobInputs:
    """Finds the inputs `data` names; checks Parquet footers against the schema.

    Raises:
        DataError: no interactions; an interactions, users or items table without rows or without a usable
            file (its files' reasons named).
    """
    if data.source != "parquet":
        loaded = load_data(data, rules.schema)
        tables = {INTERACTIONS: loaded.ratings, USERS: loaded.users, ITEMS: loaded.items}
        fingerprints = {table: _table_digest(rows) for table, rows in tables.items()}
        counts = {table: rows.num_rows for table, rows in tables.items()}
        for table, count in counts.items():
            _check_not_empty(count, f"{data.source} {table}", table)
        return JobInputs({}, tables, loaded.users.num_rows, loaded.lineage, fingerprints, counts)
    files, rows, fingerprints, refused = {}, {}, {}, []
    for table in TABLES:
        for pattern in (FileSystems.join(data.path, f"{table}.parquet"), FileSystems.join(data.path, table, "*")):
            matched = FileSystems.match([pattern])[0].metadata_list
            listed = sorted((m.path, m.size_in_bytes) for m in matched if not is_hidden(m.path))
            if listed:
                usable, rows[table], fingerprints[table], bad = _check_files(listed, table, rules)
                refused += bad
                if not usable:
                    reasons = "; ".join(f"{r.path}: {r.reason}" for r in bad)
                    raise DataError(f"no file of the {table} table under {pattern} can be read: {reasons}")
                files[table] = usable
                _check_not_empty(rows[table], pattern, table)
                break
    if INTERACTIONS not in files:
        raise DataError(f"{data.path} has no interactions table: write it as interactions.parquet or interactions/")
    for table in (USERS, ITEMS):
        if table not in files:
            _check_defaults(rules.schema, table)
    estimated = rows.get(USERS) or max(1, rows[INTERACTIONS] // 20)
    lineage = {
        "source": "parquet",
        "path": data.path,
        "files": {table: len(paths) for table, paths in files.items()},
        "footer_rows": rows,
        "refused_files": [dataclasses.asdict(r) for r in refused],
    }
    return JobInputs(files, {}, estimated, lineage, fingerprints, rows, tuple(refused))


def _check_files(
    files: list[tuple[str, int]], table: str, rules: Rules
) -> tuple[list[str], int, str, list[RefusedFile]]:
    """Every file's footer (`files`: path and size): the files whose columns can be what the schema declares,
    their total rows and fingerprint, and the others as `RefusedFile`s."""
    usable, total, digest, refused = [], 0, hashlib.sha256(), []
    for path, size in files:
        if not size:
            refused.append(RefusedFile(table, path, 0, "the file is empty (0 bytes): was its export interrupted?"))
            continue
        rows = 0
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                metadata = pq.ParquetFile(handle).metadata
                rows = metadata.num_rows
                check_rows(metadata.schema.to_arrow_schema().empty_table(), table, rules, path)
                digest.update(f"{path}|{FileSystems.checksum(path)}|".encode() + _footer(handle))
        except (pa.ArrowException, OSError, ValueError) as error:
            refused.append(RefusedFile(table, path, rows, str(error)[:_REASON_CHARACTERS]))
            continue
        usable.append(path)
        total += rows
    return usable, total, digest.hexdigest(), refused


def _check_not_empty(rows: int, where: str, table: str) -> None:
    if not rows:
        consequence = {
            INTERACTIONS: "every user would get the popularity fallback of nothing",
            USERS: "there is nobody to recommend to",
            ITEMS: "there is nothing to recommend",
        }[table]
        raise DataError(
            f"the {table} table {where} has no rows: {consequence}; check the export that writes it "
            "(nothing is published)"
        )


def _footer(handle) -> bytes:
    """A Parquet file's raw footer (its last `8 + footer length` bytes)."""
    handle.seek(0, io.SEEK_END)
    size = handle.tell()
    handle.seek(size - 8)
    length = int.from_bytes(handle.read(4), "little")
    handle.seek(size - 8 - length)
    return handle.read(length + 8)


def _table_digest(rows: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _check_defaults(schema: FeatureSchema, table: str) -> None:
    entity = "user" if table == USERS else "item"
    required = [f.name for f in schema.of(entity) if f.default is None]
    if required:
        raise DataError(
            f"there is no {table} table, but {schema.describe()} declares {entity} features without a default: "
            f"{', '.join(required)}; write {table}.parquet or give those features defaults"
        )
