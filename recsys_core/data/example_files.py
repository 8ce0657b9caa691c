"""Training examples as sharded Parquet files, read through `tf.data` one input pipeline's shards at a time.

    <directory>/examples-00000-of-00004.parquet, ...   one column per model input (`example_arrays`),
                                                       rows in a seeded random order

Files go through `tf.io.gfile`, so the directory may be local, `gs://...` or `ram://`. A reader
holds the files it interleaves (at most 4) and `SHUFFLE_ROWS` rows, never the whole data set,
and under a `tf.distribute` strategy each input pipeline reads only its own files
(`InputContext.input_pipeline_id`), as TFRS's and Keras's multi-worker examples shard by file.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

FILE_PATTERN = "examples-{:05d}-of-{:05d}.parquet"
ROWS_PER_FILE = 65_536
MIN_FILES = 8  # so that 2, 4 or 8 workers read equal shares
SHUFFLE_ROWS = 65_536  # rows held for shuffling, in blocks
BLOCKS_PER_BATCH = 8  # a batch mixes at least this many blocks, from random files


def write_example_files(
    arrays: dict[str, np.ndarray], directory: str, rows_per_file: int = ROWS_PER_FILE, seed: int = 0
) -> list[str]:
    """Writes `arrays` (name -> `[rows, ...]`) as Parquet shards of at most `rows_per_file` rows, at least
    `MIN_FILES` of near-equal size (fewer only for fewer rows); returns their paths.

    The rows are written in a random order (seeded), so that reading a file in record
    batches mixes users and times as a shuffle of the whole set would. `[rows, n]`
    arrays become fixed-size lists; `object` arrays of bytes become binary columns.
    """
    rows = len(next(iter(arrays.values())))
    order = np.random.default_rng(seed).permutation(rows)
    count = max(1, min(rows, max(MIN_FILES, math.ceil(rows / rows_per_file))))
    tf.io.gfile.makedirs(directory)
    paths = []
    for index, part in enumerate(np.array_split(order, count)):
        table = pa.table({name: _column(values[part]) for name, values in arrays.items()})
        paths.append(os.path.join(directory, FILE_PATTERN.format(index, count)))
        buffer = pa.BufferOutputStream()  # `GFile` is not a file object that Arrow's writer accepts
        pq.write_table(table, buffer)
        with tf.io.gfile.GFile(paths[-1], "wb") as handle:
            handle.write(buffer.getvalue().to_pybytes())
    return paths


def example_files(directory: str) -> list[str]:
    """The example shards in `directory`, in order; raises `FileNotFoundError` naming it when there are none."""
    paths = sorted(tf.io.gfile.glob(os.path.join(directory, "examples-*-of-*.parquet")))
    if not paths:
        raise FileNotFoundError(f"no example files (examples-*-of-*.parquet) in {directory}")
    return paths


def example_dataset(
    paths: list[str],
    batch_size: int,
    shuffle_seed: int | None,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_rows: int = SHUFFLE_ROWS,
) -> tf.data.Dataset:
    """A repeated dataset of `[batch_size, ...]` feature dicts read from the example files `paths`.

    Args:
        paths: from `write_example_files` / `example_files`.
        batch_size: the global batch size; per replica under `input_context`.
        shuffle_seed: every epoch shuffles the files, the blocks of rows read from them (a buffer of
            `shuffle_rows` rows) and the rows within each block, with this seed; None reads in file order.
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
    block_rows = max(64, batch_size // BLOCKS_PER_BATCH)
    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle_seed is not None:
        files = files.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    blocks = files.interleave(
        lambda path: tf.data.Dataset.from_generator(
            _record_batches, args=(path, block_rows), output_signature=signature
        ),
        cycle_length=min(len(paths), 4),
    )
    if shuffle_seed is not None:
        # Blocks, then rows within each block: a row-by-row shuffle buffer costs ~30 us per row, 10x the
        # whole read. The files' rows are in random order already, so every block is a random sample,
        # and a batch joins at least `BLOCKS_PER_BATCH` of them, drawn anew every epoch.
        buffer = max(1, shuffle_rows // block_rows)
        blocks = blocks.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
        blocks = blocks.map(functools.partial(_permute_rows, seed=shuffle_seed))
    # Repeated after shuffling, so that every epoch reads every row once, as the in-memory path did.
    return blocks.repeat().rebatch(batch_size, drop_remainder=True)


def _permute_rows(block: dict[str, tf.Tensor], seed: int) -> dict[str, tf.Tensor]:
    """`block`'s rows in a random order (the same order for every feature)."""
    order = tf.random.shuffle(tf.range(tf.shape(block[next(iter(block))])[0]), seed=seed)
    return {name: tf.gather(values, order) for name, values in block.items()}


def _column(values: np.ndarray) -> pa.Array:
    if values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    return pa.array(values)


def _signature(path: str) -> dict[str, tf.TensorSpec]:
    """`[rows, ...]` specs of a file's columns, from its Parquet schema."""
    schema = pq.read_schema(_read(path))
    specs = {}
    for field in schema:
        kind, shape = field.type, [None]
        if pa.types.is_fixed_size_list(kind):
            kind, shape = kind.value_type, [None, kind.list_size]
        specs[field.name] = tf.TensorSpec(shape, tf.string if pa.types.is_binary(kind) else kind.to_pandas_dtype())
    return specs


def _record_batches(path: bytes, rows: int):
    """Yields name -> `[rows, ...]` numpy arrays, `rows` at a time, from one example file."""
    for batch in pq.ParquetFile(_read(path.decode())).iter_batches(batch_size=int(rows)):
        yield {name: _numpy(batch.column(name)) for name in batch.schema.names}


def _read(path: str) -> pa.BufferReader:
    """One example file's bytes (at most `rows_per_file` rows), through `tf.io.gfile`."""
    with tf.io.gfile.GFile(path, "rb") as handle:
        return pa.BufferReader(handle.read())


def _numpy(column: pa.Array) -> np.ndarray:
    if pa.types.is_fixed_size_list(column.type):
        return _numpy(column.flatten()).reshape(len(column), column.type.list_size)
    return column.to_numpy(zero_copy_only=False)
