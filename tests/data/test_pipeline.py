import numpy as np
import pytest
import tensorflow as tf

from recsys_core.data.example_files import (
    ExampleFileWriter,
    _parse,
    _signature,
    example_dataset,
)
from recsys_core.data.pipeline import ExampleFiles, example_arrays, example_chunks, make_dataset
from tests.support import run_measured


def test_candidate_probability_is_the_training_frequency(ml100k_split):
    train, test = ml100k_split
    probability = example_arrays(test, train)["candidate_probability"]
    counts = {}
    for movie in train.ratings["item_id"].to_pylist():
        counts[movie] = counts.get(movie, 0) + 1
    expected = [max(counts.get(m, 0), 1) / 80_000 for m in test.ratings["item_id"].to_pylist()]
    np.testing.assert_allclose(probability, expected, rtol=1e-6)


def test_per_replica_pipelines_read_their_own_files_and_batch(tmp_path):
    arrays = {"x": np.arange(100, dtype=np.int64), "history_row": np.zeros(100, np.int64)}
    examples = ExampleFiles.write([arrays], 100, str(tmp_path))
    assert examples.rows == 100 and len(examples.paths) == 8
    histories = np.array([[b"a", b""]], dtype=object)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    dataset = make_dataset(examples, histories, global_batch_size=20, shuffle_seed=None, input_context=context)
    batches = list(dataset.take(5))
    rows = np.concatenate([b["x"].numpy() for b in batches])
    assert all(b["x"].shape == (10,) for b in batches)
    # This pipeline's files (the 2nd, 4th, ... of 8), every row of them once per pass, none of the others.
    theirs, ours = (set(_rows(examples.paths[first::2], "x")) for first in (0, 1))
    assert sorted(rows.tolist()) == sorted(ours) and not ours & theirs and len(ours) == 50
    assert batches[0]["user_history"].numpy().tolist() == [[b"a", b""]] * 10
    one_pass = np.concatenate([b["x"].numpy() for b in make_dataset(examples, histories, 10, shuffle_seed=3).take(10)])
    assert sorted(one_pass.tolist()) == list(range(100))  # an epoch reads every row once, in a new order
    again = np.concatenate([b["x"].numpy() for b in make_dataset(examples, histories, 10, shuffle_seed=3).take(10)])
    assert one_pass.tolist() == again.tolist()  # the same seed gives the same order


def test_example_files_round_trip_every_type_and_refuse_too_few_files(tmp_path):
    arrays = {
        "id": np.array([b"u1", b"u2", b"u3"], dtype=object),
        "genres": np.array([[b"a", b""], [b"b", b"c"], [b"", b""]], dtype=object),
        "flag": np.array([True, False, True]),
        "age": np.array([1.5, 2.5, 3.5], dtype=np.float32),
        "history_row": np.array([0, 1, 2], dtype=np.int32),
    }
    paths = ExampleFiles.write([arrays], 3, f"ram://examples-{tmp_path.name}").paths  # any tf.io.gfile file system
    assert len(paths) == 3  # never more files than rows
    batch = next(iter(example_dataset(paths, 3, shuffle_seed=None)))
    order = np.argsort(batch["id"].numpy())
    for name, values in arrays.items():
        assert batch[name].dtype == (tf.string if values.dtype == object else tf.as_dtype(values.dtype))
        np.testing.assert_array_equal(batch[name].numpy()[order], values)
    context = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=0, num_replicas_in_sync=4)
    with pytest.raises(ValueError, match="3 example files for 4 input pipelines"):
        example_dataset(paths, 4, None, context)


def test_chunks_are_written_once_each_shuffled_across_near_equal_shards(tmp_path):
    """Chunks of any size: every row lands once, every shard is a random sample of all chunks (not of one),
    shards differ by at most a row, and the same seed writes the same bytes."""
    sizes = [700, 1, 299, 1000, 0, 500]

    def write(directory):
        # 8 shards through 3 scratch files: each holds the rows of 2 or 3 shards until it is closed.
        with ExampleFileWriter(str(directory), sum(sizes), rows_per_file=400, seed=5, scratch_files=3) as writer:
            start = 0
            for size in sizes:
                rows = np.arange(start, start + size)
                writer.write({"row": rows, "chunk": np.full(size, sizes.index(size)), "pair": np.c_[rows, -rows]})
                start += size
        return writer.paths

    paths = write(tmp_path / "a")
    assert len(paths) == 8 and not tf.io.gfile.exists(str(tmp_path / "a" / ".scatter"))
    shards = [_columns(path) for path in paths]
    rows = np.concatenate([shard["row"] for shard in shards])
    assert sorted(rows.tolist()) == list(range(2500))
    assert {len(shard["row"]) for shard in shards} == {312, 313}
    for shard in shards:
        np.testing.assert_array_equal(shard["pair"], np.c_[shard["row"], -shard["row"]])  # rows kept whole
        assert {0, 2, 3, 5} <= set(shard["chunk"].tolist())  # a share of every non-trivial chunk...
        assert not np.all(np.diff(shard["row"]) > 0)  # ...in random order
    again = write(tmp_path / "b")
    assert [open(p, "rb").read() for p in paths] == [open(p, "rb").read() for p in again]


def test_a_writer_that_fails_leaves_no_scratch_and_checks_its_row_count(tmp_path):
    with pytest.raises(RuntimeError), ExampleFileWriter(str(tmp_path / "a"), 10) as writer:
        writer.write({"x": np.arange(4)})
        raise RuntimeError("the source failed")
    assert tf.io.gfile.listdir(str(tmp_path / "a")) == []
    with pytest.raises(ValueError, match="4 example rows written to .*, 10 announced"):
        with ExampleFileWriter(str(tmp_path / "b"), 10) as writer:
            writer.write({"x": np.arange(4)})


def test_examples_in_chunks_are_the_examples_whole(ml100k_split):
    """Chunk by chunk (as the files are written), the model inputs of every rating are those of the whole
    split, list features padded alike."""
    train, test = ml100k_split
    whole = example_arrays(test, train)
    chunks = list(example_chunks(test, train, rows=7_000))
    assert [len(chunk["rating"]) for chunk in chunks] == [7_000, 7_000, 6_000]
    assert whole["movie_genres"].shape[1] > 1
    for name, values in whole.items():
        np.testing.assert_array_equal(np.concatenate([chunk[name] for chunk in chunks]), values, err_msg=name)


_WRITE = """
import sys
import numpy as np
import recsys_core
from recsys_core.data.example_files import ExampleFileWriter
rows, chunk, rng = int(sys.argv[2]), 50_000, np.random.default_rng(0)
with ExampleFileWriter(sys.argv[1], rows) as writer:
    for start in range(0, rows, chunk):
        size = min(chunk, rows - start)
        writer.write({"x": np.arange(start, start + size), "features": rng.random((size, 32), dtype=np.float32)})
print(peak_bytes())
"""
_READ = """
import sys
import recsys_core
from recsys_core.data.example_files import example_dataset, example_files
seen = 0
for batch in example_dataset(example_files(sys.argv[1]), 4096, shuffle_seed=1).take(int(sys.argv[2]) // 4096):
    seen += len(batch["x"])
print(seen, peak_bytes())
"""


def test_writing_and_reading_ten_times_the_examples_takes_no_more_memory(tmp_path):
    """250 000 and 2 500 000 examples (32 and 320 MB of features), written from chunks and read for one
    epoch: the writer's and the reader's peak memory stay within their buffers, so the data can outgrow
    the host."""
    peaks = {}
    for rows in (250_000, 2_500_000):
        directory = str(tmp_path / str(rows))
        for step, script in (("write", _WRITE), ("read", _READ)):
            *seen, peaks[step, rows] = run_measured(script, directory, rows)
        assert seen == [rows // 4096 * 4096]
    for step in ("write", "read"):  # holding the 9x more rows would take 290 MB
        assert peaks[step, 2_500_000] - peaks[step, 250_000] < 32 * 2**20, peaks


def _columns(path: str) -> dict[str, np.ndarray]:
    """Every row of the example file `path`, as numpy columns."""
    signature = _signature(path)
    records = [_parse(record, signature) for record in tf.data.TFRecordDataset(path)]
    return {name: np.concatenate([record[name].numpy() for record in records]) for name in signature}


def _rows(paths: list[str], name: str) -> list:
    """Every value of column `name` in the example files `paths`."""
    return [v for path in paths for v in _columns(path)[name].tolist()]


def test_histories_built_batch_by_batch_are_those_of_the_whole_split(ml100k_split, monkeypatch):
    """Merged every 5 000 ratings from batches of 3 333, each user's last items are those `group_by_user`
    finds in the whole split (time order, ties by item id)."""
    import pyarrow as pa

    from recsys_core.data.pipeline import HistoryBuilder
    from recsys_core.data.tables import group_by_user
    from recsys_core.features.arrays import string_bytes
    from recsys_core.features.history import history_matrix

    train, _ = ml100k_split
    monkeypatch.setattr(HistoryBuilder, "COMPACT_ROWS", 5_000)
    seen, _ = group_by_user(train.ratings, train.users["user_id"], train.items["item_id"])
    for length in (1, 5, 100):
        builder = HistoryBuilder(train, length)
        for batch in train.ratings.to_batches(max_chunksize=3_333):
            builder.add(pa.Table.from_batches([batch]))
        expected = history_matrix(seen, string_bytes(train.items["item_id"]), length)
        np.testing.assert_array_equal(builder.matrix(), expected)
