"""Where the job's rows come from, found by the launcher without reading them.

Parquet inputs are file patterns: the launcher lists the files and reads one
footer per table (to refuse, before any work, a table that lacks a column the
bundle's schema declares); the workers read the rows. GroupLens, TFDS and
synthetic sources are local conveniences: the launcher reads them and hands the
rows to the same transforms.
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
from recsys_core.schema import FeatureSchema
from recsys_core.validation import INTERACTIONS, ITEMS, USERS, Rules, check_rows

TABLES = (INTERACTIONS, USERS, ITEMS)
_LOCAL_CHUNK = 65_536


@dataclasses.dataclass(frozen=True)
class JobInputs:
    """The job's three input tables, as Parquet file patterns or (local sources) as tables.

    Attributes:
        patterns: table -> file pattern the workers read; absent tables are not given.
        tables: table -> rows, for local sources only.
        estimated_users: for sizing the user buckets (Parquet footer row counts).
        lineage: where the data came from, for the manifest.
        fingerprints: table -> sha256 of its contents as the launcher can see them without reading rows:
            per Parquet file its footer (sizes, offsets, statistics), size and the file system's checksum
            (content CRC on object stores); for local sources, the rows.
        rows: table -> row count (footers, or the local tables).
    """

    patterns: dict[str, str]
    tables: dict[str, pa.Table]
    estimated_users: int
    lineage: dict
    fingerprints: dict[str, str]
    rows: dict[str, int]

    def has(self, table: str) -> bool:
        return table in self.patterns or table in self.tables

    def chunks(self, table: str) -> list[tuple[str, pa.Table]]:
        """A local table as `(source, rows)` batches."""
        rows, source = self.tables[table], f"{self.lineage.get('source')}:{table}"
        return [(source, rows.slice(start, _LOCAL_CHUNK)) for start in range(0, rows.num_rows, _LOCAL_CHUNK)]


def locate_inputs(data: DataConfig, rules: Rules) -> JobInputs:
    """Finds the inputs `data` names; checks Parquet footers against the schema.

    Raises:
        DataError: no interactions, or a table whose columns cannot be what the schema declares.
    """
    if data.source != "parquet":
        loaded = load_data(data, rules.schema)
        tables = {INTERACTIONS: loaded.ratings, USERS: loaded.users, ITEMS: loaded.items}
        fingerprints = {table: _table_digest(rows) for table, rows in tables.items()}
        counts = {table: rows.num_rows for table, rows in tables.items()}
        _check_not_empty(counts[INTERACTIONS], f"{data.source} interactions")
        return JobInputs({}, tables, loaded.users.num_rows, loaded.lineage, fingerprints, counts)
    patterns, rows, fingerprints = {}, {}, {}
    for table in TABLES:
        for pattern in (FileSystems.join(data.path, f"{table}.parquet"), FileSystems.join(data.path, table, "*")):
            files = [m.path for m in FileSystems.match([pattern])[0].metadata_list if m.size_in_bytes > 0]
            if files:
                patterns[table] = pattern
                rows[table], fingerprints[table] = _check_footer(sorted(files), table, rules)
                break
    if INTERACTIONS not in patterns:
        raise DataError(f"{data.path} has no interactions table: write it as interactions.parquet or interactions/")
    _check_not_empty(rows[INTERACTIONS], patterns[INTERACTIONS])
    for table in (USERS, ITEMS):
        if table not in patterns:
            _check_defaults(rules.schema, table)
    estimated = rows.get(USERS) or max(1, rows[INTERACTIONS] // 20)
    lineage = {"source": "parquet", "path": data.path, "patterns": patterns, "footer_rows": rows}
    return JobInputs(patterns, {}, estimated, lineage, fingerprints, rows)


def _check_footer(files: list[str], table: str, rules: Rules) -> tuple[int, str]:
    """Total rows of the files and their fingerprint; the first file's columns are checked against the schema."""
    total, digest = 0, hashlib.sha256()
    for number, path in enumerate(files):
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                metadata = pq.ParquetFile(handle).metadata
                if number == 0:
                    empty = metadata.schema.to_arrow_schema().empty_table()
                    check_rows(empty, table, rules, path)  # raises naming a missing or mistyped column
                digest.update(f"{path}|{FileSystems.checksum(path)}|".encode() + _footer(handle))
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"cannot read Parquet table {path}: {error}") from error
        except ValueError as error:
            raise DataError(str(error)) from error
        total += metadata.num_rows
    return total, digest.hexdigest()


def _check_not_empty(rows: int, where: str) -> None:
    if not rows:
        raise DataError(
            f"{where} has no rows: every user would get the popularity fallback of nothing; "
            "check the export that writes it (nothing is published)"
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
