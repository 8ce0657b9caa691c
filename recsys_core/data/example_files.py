"""Training examples as sharded TFRecord files, read through `tf.data` one input pipeline's shards at a time.

    <directory>/examples-00000-of-00008.tfrecord, ...   records of `RECORD_ROWS` rows each: a `tf.train.Example`
                                                        holding one serialized `[rows, ...]` tensor per model
                                                        input (`example_arrays`); rows in a seeded random order

`ExampleFileWriter` writes them from chunks of any size through an external shuffle, holding a few
shards' rows at most. Files go through `tf.io.gfile`, so the directory may be local, `gs://...` or `ram://`. Reading is
TensorFlow's own C++ (`TFRecordDataset`, `parse_tensor`): no Python, no GIL, beside a training loop.
A reader holds the records it shuffles (`SHUFFLE_ROWS` rows), never the whole data set, and under a
`tf.distribute` strategy each input pipeline reads only its own files (`InputContext.input_pipeline_id`),
as TFRS's and Keras's multi-worker examples shard by file.
"""

from __future__ import annotations

import functools
import math
import os
import pickle

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

FILE_PATTERN = "examples-{:05d}-of-{:05d}.tfrecord"
ROWS_PER_FILE = 65_536
MIN_FILES = 8  # so that 2, 4 or 8 workers read equal shares
RECORD_ROWS = 128  # rows per record: the unit of shuffling, so a batch of 4 096 joins 32 random records
SHUFFLE_ROWS = 65_536  # rows held for shuffling, in records
SCRATCH_FILES = 256  # scratch files open at once while writing; beyond as many shards, each holds several


class ExampleFileWriter:
    """Writes chunks of examples as shards of near-equal size, rows in a seeded random order, holding one
    shard's rows at most (an external shuffle): the whole set never needs to be in memory.

        with ExampleFileWriter(directory, rows, seed=1) as writer:
            for chunk in chunks:          # name -> `[chunk rows, ...]`, the same names every time
                writer.write(chunk)
        writer.paths                      # the shards, once closed

    Each chunk's rows are permuted and dealt round the shards, whose rows first go to scratch
    files beside them (shard i to file i mod `scratch_files`); closing reads each scratch file back
    alone and writes its shards, each permuted. Every shard is thus a random sample of the whole
    set, and shards differ in size by at most one row.
    """

    def __init__(
        self,
        directory: str,
        rows: int,
        rows_per_file: int = ROWS_PER_FILE,
        seed: int = 0,
        scratch_files: int = SCRATCH_FILES,
    ) -> None:
        """`rows`: how many rows the chunks will hold in all; at least `MIN_FILES` shards of at most
        `rows_per_file` rows (fewer only for fewer rows)."""
        self._directory, self._rows, self._written = directory, rows, 0
        self._count = max(1, min(rows, max(MIN_FILES, math.ceil(rows / rows_per_file))))
        self._rng = np.random.default_rng(seed)
        self._scratch = os.path.join(directory, ".scatter")
        tf.io.gfile.makedirs(self._scratch)
        self._buckets = [
            tf.io.TFRecordWriter(os.path.join(self._scratch, f"{index:05d}.tfrecord"))
            for index in range(min(self._count, scratch_files))
        ]
        self.paths = [os.path.join(directory, FILE_PATTERN.format(index, self._count)) for index in range(self._count)]

    def __enter__(self) -> ExampleFileWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            for bucket in self._buckets:
                bucket.close()
            tf.io.gfile.rmtree(self._scratch)

    def write(self, chunk: dict[str, np.ndarray]) -> None:
        size = len(next(iter(chunk.values())))
        order = self._rng.permutation(size)
        # Row i of the whole stream goes to shard i mod count: every shard gets its share of every chunk.
        for offset in range(min(size, self._count)):
            shard = (self._written + offset) % self._count
            part = {name: values[order[offset :: self._count]] for name, values in chunk.items()}
            self._buckets[shard % len(self._buckets)].write(pickle.dumps((shard, part), 5))
        self._written += size

    def close(self) -> list[str]:
        """Writes the final shards and removes the scratch files; returns the shards' paths."""
        if self._written != self._rows:
            raise ValueError(f"{self._written} example rows written to {self._directory}, {self._rows} announced")
        for bucket in self._buckets:
            bucket.close()
        for index in range(len(self._buckets)):
            scratch = os.path.join(self._scratch, f"{index:05d}.tfrecord")
            shards = _scratch_shards(scratch)
            for shard in range(index, self._count, len(self._buckets)):
                columns = shards.get(shard, {})
                order = self._rng.permutation(len(next(iter(columns.values()))) if columns else 0)
                with tf.io.TFRecordWriter(self.paths[shard]) as writer:
                    for start in range(0, len(order), RECORD_ROWS):
                        part = order[start : start + RECORD_ROWS]
                        writer.write(_record({name: values[part] for name, values in columns.items()}))
            tf.io.gfile.remove(scratch)
        tf.io.gfile.rmtree(self._scratch)
        return self.paths


def example_files(directory: str) -> list[str]:
    """The example shards in `directory`, in order; raises `FileNotFoundError` naming it when there are none."""
    paths = sorted(tf.io.gfile.glob(os.path.join(directory, "examples-*-of-*.tfrecord")))
    if not paths:
        raise FileNotFoundError(f"no example files (examples-*-of-*.tfrecord) in {directory}")
    return paths


def example_dataset(
    paths: list[str],
    batch_size: int,
    shuffle_seed: int | None,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_rows: int = SHUFFLE_ROWS,
    repeat: bool = True,
) -> tf.data.Dataset:
    """A dataset of `[batch_size, ...]` feature dicts read from the example files `paths`: repeated, or with
    `repeat=False` one pass over every row (the last batch partial).

    Args:
        paths: from `ExampleFileWriter` / `example_files`.
        batch_size: the global batch size; per replica under `input_context`.
        shuffle_seed: every epoch shuffles the files, the records (a buffer of `shuffle_rows` rows) and
            the rows within each record, with this seed; None reads in file order.
        input_context: from `distribute_datasets_from_function`: this pipeline reads every
            `num_input_pipelines`-th file, from its `input_pipeline_id`.

    Raises:
        ValueError: fewer files than input pipelines (each needs at least one).
    """
    paths = sorted(paths)
    if input_context is not None:
        pipelines = input_context.num_input_pipelines
        if len(paths) < pipelines:
            raise ValueError(
                f"{len(paths)} example files for {pipelines} input pipelines: each worker reads its own files; "
                "write at least one file per worker (smaller rows_per_file)"
            )
        paths = paths[input_context.input_pipeline_id :: pipelines]
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    signature = _signature(paths[0])
    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle_seed is not None:
        files = files.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(len(paths), 4))
    if shuffle_seed is not None:
        # Records, then rows within each: a row-by-row shuffle buffer costs ~30 us per row, 10x the whole
        # read. The files' rows are in random order already, so every record is a random sample.
        records = records.shuffle(max(1, shuffle_rows // RECORD_ROWS), seed=shuffle_seed, reshuffle_each_iteration=True)
    blocks = records.map(functools.partial(_parse, signature=signature), num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle_seed is not None:
        blocks = blocks.map(functools.partial(_permute_rows, seed=shuffle_seed))
    if not repeat:
        return blocks.rebatch(batch_size)
    # Repeated after shuffling, so that every epoch reads every row once.
    return blocks.repeat().rebatch(batch_size, drop_remainder=True)


def _record(columns: dict[str, np.ndarray]) -> bytes:
    """One `tf.train.Example` of serialized `[rows, ...]` tensors, one per column."""
    feature = {
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[_serialized(values)]))
        for name, values in columns.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _serialized(values: np.ndarray) -> bytes:
    """The bytes `tf.io.serialize_tensor(values)` gives, built as a `TensorProto` directly: 3-5x faster than
    an eager op per column and record (object arrays hold bytes: TF strings)."""
    dtype = tf.string if values.dtype == object else tf.as_dtype(values.dtype)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum, tensor_shape=tf.TensorShape(values.shape).as_proto())
    if values.dtype == object:
        proto.string_val.extend(values.ravel().tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(values).tobytes()
    return proto.SerializeToString()


def _scratch_shards(path: str) -> dict[int, dict[str, np.ndarray]]:
    """The rows of a scratch file (records of pickled `(shard, columns)`, written and read by this process),
    as numpy columns per shard."""
    parts: dict[int, list[dict[str, np.ndarray]]] = {}
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        shard, columns = pickle.loads(raw)
        parts.setdefault(shard, []).append(columns)
    return {
        shard: {name: np.concatenate([part[name] for part in chunks]) for name in chunks[0]}
        for shard, chunks in parts.items()
    }


def _signature(path: str) -> dict[str, tf.TensorSpec]:
    """`[rows, ...]` specs of a file's columns, from its first record."""
    first = next(iter(tf.data.TFRecordDataset(path).take(1))).numpy()
    specs = {}
    for name, feature in tf.train.Example.FromString(first).features.feature.items():
        proto = tensor_pb2.TensorProto.FromString(feature.bytes_list.value[0])
        inner = [dim.size for dim in proto.tensor_shape.dim[1:]]
        specs[name] = tf.TensorSpec([None, *inner], tf.dtypes.as_dtype(proto.dtype))
    return specs


def _parse(record: tf.Tensor, signature: dict[str, tf.TensorSpec]) -> dict[str, tf.Tensor]:
    columns = tf.io.parse_single_example(record, {name: tf.io.FixedLenFeature([], tf.string) for name in signature})
    return {
        name: tf.ensure_shape(tf.io.parse_tensor(columns[name], spec.dtype), spec.shape)
        for name, spec in signature.items()
    }


def _permute_rows(block: dict[str, tf.Tensor], seed: int) -> dict[str, tf.Tensor]:
    """`block`'s rows in a random order (the same order for every feature)."""
    order = tf.random.shuffle(tf.range(tf.shape(block[next(iter(block))])[0]), seed=seed)
    return {name: tf.gather(values, order) for name, values in block.items()}
