import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recsys_core.data.example_files import _parse, _signature, example_dataset, write_example_files
from recsys_core.data.pipeline import ExampleFiles, example_arrays, make_dataset


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
    examples = ExampleFiles.write(arrays, str(tmp_path))
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
    paths = write_example_files(arrays, f"ram://examples-{tmp_path.name}")  # any tf.io.gfile file system
    assert len(paths) == 3  # never more files than rows
    batch = next(iter(example_dataset(paths, 3, shuffle_seed=None)))
    order = np.argsort(batch["id"].numpy())
    for name, values in arrays.items():
        assert batch[name].dtype == (tf.string if values.dtype == object else tf.as_dtype(values.dtype))
        np.testing.assert_array_equal(batch[name].numpy()[order], values)
    context = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=0, num_replicas_in_sync=4)
    with pytest.raises(ValueError, match="3 example files for 4 input pipelines"):
        example_dataset(paths, 4, None, context)


_WRITE = """
import sys
import numpy as np
import recsys_core
from recsys_core.data.example_files import write_example_files
rows = int(sys.argv[2])
features = np.random.default_rng(0).random((rows, 32), dtype=np.float32)
write_example_files({"x": np.arange(rows), "features": features}, sys.argv[1])
"""
_READ = """
import resource, sys
import recsys_core
from recsys_core.data.example_files import example_dataset, example_files
seen = 0
for batch in example_dataset(example_files(sys.argv[1]), 4096, shuffle_seed=1).take(int(sys.argv[2]) // 4096):
    seen += len(batch["x"])
print(seen, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def test_reading_ten_times_the_examples_takes_no_more_memory(tmp_path):
    """One epoch over 250 000 and over 2 500 000 examples (32 and 320 MB of features): the reader's peak
    memory stays within its buffers, so the data can outgrow the host."""
    peaks = {}
    for rows in (250_000, 2_500_000):
        directory = str(tmp_path / str(rows))
        subprocess.run([sys.executable, "-c", _WRITE, directory, str(rows)], check=True, capture_output=True)
        done = subprocess.run([sys.executable, "-c", _READ, directory, str(rows)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        seen, peaks[rows] = map(int, done.stdout.split())
        assert seen == rows // 4096 * 4096
    assert peaks[2_500_000] - peaks[250_000] < 32 * 2**20, peaks  # holding the 9x more rows would take 290 MB


def _rows(paths: list[str], name: str) -> list:
    """Every value of column `name` in the example files `paths`, decoded record by record."""
    signature = _signature(paths[0])
    return [v for record in tf.data.TFRecordDataset(paths) for v in _parse(record, signature)[name].numpy().tolist()]
