"""Training speed of our retrieval model against the TFRS basic-retrieval tutorial, in one process.

    python benchmarks/bench_training.py [--data-path ../shared/data/ml-100k] [--epochs 3]

Both train on the tutorials' 80 000-rating split. The tutorial model is the
TFRS "basic retrieval" code (user id and title embeddings, FactorizedTopK
computed on every training step); ours is `retrieval` with the default config.
Reports the median examples/s over epochs after the first (which traces), and
the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# isort: split
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
from common import EpochTimer

from recsys_core.config import experiment
from recsys_core.data.grouplens import read_grouplens
from recsys_core.data.pipeline import ExampleFiles, example_chunks, make_dataset, steps_per_epoch, user_histories
from recsys_core.data.splits import random_split
from recsys_core.features.arrays import feature_arrays
from recsys_core.features.vocabulary import fit_vocabulary
from recsys_core.models.builders import build_model, build_optimizer


def tutorial_examples_per_second(train, items, epochs: int) -> list[float]:
    """The TFRS basic retrieval tutorial, as published (metrics on every step)."""
    examples = feature_arrays(train.examples, train.schema, ("user_id", "movie_title"))
    ratings = tf.data.Dataset.from_tensor_slices(examples)
    all_titles = feature_arrays(items, train.schema, ("movie_title",))["movie_title"]
    movies = tf.data.Dataset.from_tensor_slices(all_titles)
    user_ids, titles = np.unique(examples["user_id"]), np.unique(all_titles)
    user_model = tf.keras.Sequential(
        [
            tf.keras.layers.StringLookup(vocabulary=user_ids, mask_token=None),
            tf.keras.layers.Embedding(len(user_ids) + 1, 32),
        ]
    )
    movie_model = tf.keras.Sequential(
        [
            tf.keras.layers.StringLookup(vocabulary=titles, mask_token=None),
            tf.keras.layers.Embedding(len(titles) + 1, 32),
        ]
    )

    class MovielensModel(tfrs.Model):
        def __init__(self):
            super().__init__()
            self.user_model, self.movie_model = user_model, movie_model
            self.task = tfrs.tasks.Retrieval(
                metrics=tfrs.metrics.FactorizedTopK(candidates=movies.batch(128).map(movie_model))
            )

        def compute_loss(self, features, training=False):
            return self.task(self.user_model(features["user_id"]), self.movie_model(features["movie_title"]))

    model = MovielensModel()
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1))
    cached_train = ratings.shuffle(100_000).batch(8192).cache()
    timer = EpochTimer()
    model.fit(cached_train, epochs=epochs, callbacks=[timer], verbose=0)
    return [train.ratings.num_rows / s for s in timer.seconds]


def ours_examples_per_second(train, epochs: int) -> list[float]:
    config = experiment("ml100k")
    vocab = fit_vocabulary(train)
    examples = ExampleFiles.write(example_chunks(train, train), train.ratings.num_rows, tempfile.mkdtemp())
    model = build_model("retrieval", config, train.schema, vocab)
    model.compile(optimizer=build_optimizer(config.retrieval))
    batch = config.retrieval.batch_size
    steps = steps_per_epoch(examples.rows, batch)
    timer = EpochTimer()
    dataset = make_dataset(examples, user_histories(train, config.retrieval.history_length), batch, 1)
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return [steps * batch / s for s in timer.seconds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-path", default="../shared/data/ml-100k")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    data = read_grouplens(args.data_path)
    train, _ = random_split(data, 0.2, 42)
    tutorial = tutorial_examples_per_second(train, data.items, args.epochs)
    ours = ours_examples_per_second(train, args.epochs + 2)
    result = {
        "tutorial_examples_per_second": statistics.median(tutorial[1:]),
        "ours_examples_per_second": statistics.median(ours[1:]),
        "tutorial_per_epoch": tutorial,
        "ours_per_epoch": ours,
    }
    result["speedup"] = result["ours_examples_per_second"] / result["tutorial_examples_per_second"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
