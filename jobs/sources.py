"""Where the job's rows come from, found by the launcher without reading them.

Parquet inputs are file patterns: the launcher lists the files and reads one
footer per table (to refuse, before any work, a table that lacks a column the
bundle's schema declares); the workers read the rows. GroupLens, TFDS and
synthetic sources are local conveniences: the launcher reads them and hands the
rows to the same transforms.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
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
    """

    patterns: dict[str, str]
    tables: dict[str, pa.Table]
    estimated_users: int
    lineage: dict

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
        return JobInputs({}, tables, loaded.users.num_rows, loaded.lineage)
    patterns, rows = {}, {}
    for table in TABLES:
        for pattern in (FileSystems.join(data.path, f"{table}.parquet"), FileSystems.join(data.path, table, "*")):
            files = [m.path for m in FileSystems.match([pattern])[0].metadata_list if m.size_in_bytes > 0]
            if files:
                patterns[table] = pattern
                rows[table] = _check_footer(sorted(files), table, rules)
                break
    if INTERACTIONS not in patterns:
        raise DataError(f"{data.path} has no interactions table: write it as interactions.parquet or interactions/")
    for table in (USERS, ITEMS):
        if table not in patterns:
            _check_defaults(rules.schema, table)
    estimated = rows.get(USERS) or max(1, rows[INTERACTIONS] // 20)
    lineage = {"source": "parquet", "path": data.path, "patterns": patterns, "footer_rows": rows}
    return JobInputs(patterns, {}, estimated, lineage)


def _check_footer(files: list[str], table: str, rules: Rules) -> int:
    """Total rows of the files; their first file's columns are checked against the schema."""
    total = 0
    for number, path in enumerate(files):
        try:
            with FileSystems.open(path) as handle:
                metadata = pq.ParquetFile(handle).metadata
                if number == 0:
                    empty = metadata.schema.to_arrow_schema().empty_table()
                    check_rows(empty, table, rules, path)  # raises naming a missing or mistyped column
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"cannot read Parquet table {path}: {error}") from error
        except ValueError as error:
            raise DataError(str(error)) from error
        total += metadata.num_rows
    return total


def _check_defaults(schema: FeatureSchema, table: str) -> None:
    entity = "user" if table == USERS else "item"
    required = [f.name for f in schema.of(entity) if f.default is None]
    if required:
        raise DataError(
            f"there is no {table} table, but {schema.describe()} declares {entity} features without a default: "
            f"{', '.join(required)}; write {table}.parquet or give those features defaults"
        )
