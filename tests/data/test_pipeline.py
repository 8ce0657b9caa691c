import numpy as np
import tensorflow as tf

from recsys_core.data.pipeline import example_arrays, make_dataset


def test_candidate_probability_is_the_training_frequency(ml100k_split):
    train, test = ml100k_split
    probability = example_arrays(test, train)["candidate_probability"]
    counts = {}
    for movie in train.ratings["item_id"].to_pylist():
        counts[movie] = counts.get(movie, 0) + 1
    expected = [max(counts.get(m, 0), 1) / 80_000 for m in test.ratings["item_id"].to_pylist()]
    np.testing.assert_allclose(probability, expected, rtol=1e-6)


def test_per_replica_pipelines_split_rows_and_batch():
    arrays = {"x": np.arange(100, dtype=np.int64), "history_row": np.zeros(100, np.int64)}
    histories = np.array([[b"a", b""]], dtype=object)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    dataset = make_dataset(arrays, histories, global_batch_size=20, shuffle_seed=None, input_context=context)
    batches = list(dataset.take(5))
    rows = np.concatenate([b["x"].numpy() for b in batches])
    assert all(b["x"].shape == (10,) for b in batches)
    assert set(rows.tolist()) == set(range(1, 100, 2))  # this pipeline's shard, every row once per pass
    assert batches[0]["user_history"].numpy().tolist() == [[b"a", b""]] * 10
    shuffled = next(iter(make_dataset(arrays, histories, 100, shuffle_seed=3)))["x"].numpy()
    assert sorted(shuffled.tolist()) == list(range(100)) and shuffled.tolist() != list(range(100))
