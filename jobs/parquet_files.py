"""Output tables written as Parquet files on the workers, each named by its rows and hashed for the run's
file list (`transforms.WriteTable`)."""

from __future__ import annotations

import hashlib

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from jobs.counters import counter, rows_written
from recsys_core.faults import fault_point
from recsys_core.serving import outputs

WHOLE_TABLE = "000000000"  # the file name of a table written as one file (item embeddings, dead letters)


class WriteFileFn(beam.DoFn):
    """`(name, rows)` -> `<root>/<directory>/part-<name>.parquet`, and `{table, path, rows, sha256}`."""

    def __init__(self, table: str, root: str, directory: str) -> None:
        self._table, self._root, self._directory = table, root, directory

    def setup(self) -> None:
        self._rows = counter(rows_written(self._table))

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
