"""Rows grouped by user bucket on the workers: keyed for Beam's `GroupByKey`, or spilled to Arrow files whose
addresses alone travel through the shuffle (`transforms.BuildUserBlocks`)."""

from __future__ import annotations

import uuid
import zlib

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from recsys_core.schema import USER_ID


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


def split_by_bucket(rows: pa.Table, tag: str, buckets: int):
    """Rows -> `(bucket, (tag, rows of that bucket))`: the rows themselves travel through the shuffle."""
    ordered, ranges = _by_bucket(rows, buckets)
    for key, start, stop in ranges:
        yield key, (tag, ordered.slice(start, stop - start))


class SpillFn(beam.DoFn):
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


def unspill(part: tuple) -> tuple[str, pa.Table]:
    """A shuffled part -> `(tag, rows)`: the rows, or read back from their Arrow file."""
    if len(part) == 2:
        return part
    tag, path, number = part
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return tag, pa.Table.from_batches([pa.ipc.open_file(handle).get_batch(number)])
