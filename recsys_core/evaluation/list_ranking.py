"""Fitting the list ranker on the job's own candidate lists of the validation users.

The lists are what the job would re-rank for the validation users, with the fitting
part as their history (`evaluation.JobLists.candidates`); the labels are the
validation interactions among the candidates (`list_labels`). The users are cut in
two folds by a hash of their id: a ranker fitted on each fold scores the other
(out-of-fold lists, on which the protocol decides whether to ship it), and the
shipped ranker is fitted on both for the folds' mean best number of epochs.
Nothing here reads the test split: the protocol hands it the validation part only.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib

import numpy as np
import pyarrow as pa
import tensorflow as tf

from recsys_core.config import ListRankerConfig
from recsys_core.models.list_ranker import ListRanker, MeanOfRankers

log = logging.getLogger(__name__)
FOLDS = 5
_STOPPING_SHARE = 0.2  # of a fold's training lists, held out to stop its fit


def list_labels(candidates: np.ndarray, relevant: list[np.ndarray], liked: list[np.ndarray]) -> np.ndarray:
    """`[users, k]` float32 relevance grades: -1 empty slot, 0 not held out, 1 held out, 2 held out and liked.

    Liked items weigh double, as the choice metric counts both relevance definitions.
    """
    labels = np.where(candidates >= 0, 0.0, -1.0).astype(np.float32)
    for row, (every, good) in enumerate(zip(relevant, liked, strict=True)):
        labels[row] += np.isin(candidates[row], every).astype(np.float32) + np.isin(candidates[row], good)
    return labels


def folds(user_ids: pa.Array) -> np.ndarray:
    """`[users]` fold of each user: a stable hash of the id, the same in every run and process."""
    return np.array([zlib.crc32(str(u).encode()) % FOLDS for u in user_ids.to_pylist()], np.int64)


@dataclasses.dataclass
class FittedListRanker:
    """The shipped ranker, and the out-of-fold rankers that score each fold's users for the choice.

    Attributes:
        model: fitted on every usable list for `epochs` epochs.
        fold_models: `[FOLDS]` model `f` never saw the lists of fold `f`.
        epochs: the folds' mean best epoch.
    """

    model: MeanOfRankers
    fold_models: list[MeanOfRankers]
    epochs: int


def enough_lists(labels: np.ndarray) -> bool:
    """Whether lists with grades `[users, k]` hold enough held-out items among their candidates to fit a ranker
    on each fold's complement and stop it early (a few per fold)."""
    return int((labels > 0).any(axis=1).sum()) >= 5 * FOLDS


def fit_list_ranker(features: np.ndarray, labels: np.ndarray, fold: np.ndarray, config: ListRankerConfig, seed: int):
    """Fits the rankers of `FittedListRanker` on lists `[users, k, features]` with grades `[users, k]`
    (`enough_lists` of them).

    Every ranker is the mean of `config.members` fits from consecutive seeds. Lists
    without any held-out item teach nothing and are left out of every fit.
    """
    usable = (labels > 0).any(axis=1)
    fold_models, best = [], []
    for held in range(FOLDS):
        train = np.flatnonzero(usable & (fold != held))
        fits = [_fit(features, labels, train, config, seed + m, stop_early=True) for m in range(config.members)]
        fold_models.append(MeanOfRankers([model for model, _ in fits]))
        best += [epochs for _, epochs in fits]
    epochs = max(1, int(round(float(np.mean(best)))))
    rows = np.flatnonzero(usable)
    members = [
        _fit(features, labels, rows, config, seed + m, stop_early=False, epochs=epochs)[0]
        for m in range(config.members)
    ]
    log.info("list ranker: %d lists, best epochs %s, shipped after %d", int(usable.sum()), best, epochs)
    return FittedListRanker(MeanOfRankers(members), fold_models, epochs)


def _fit(
    features: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    config: ListRankerConfig,
    seed: int,
    stop_early: bool,
    epochs: int | None = None,
) -> tuple[ListRanker, int]:
    """A ranker fitted on lists `rows`; with `stop_early`, a seeded share of them stops it (returns its best epoch)."""
    rows = np.random.default_rng(seed).permutation(rows)
    stop = rows[: int(len(rows) * _STOPPING_SHARE)] if stop_early else rows[:0]
    fit = rows[len(stop) :]
    valid = labels[fit] >= 0
    sample = features[fit][valid]
    model = ListRanker(sample.mean(axis=0), sample.var(axis=0), config.layers, config.cross_layers, config.l2, seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))

    def batches(part: np.ndarray, shuffle: bool) -> tf.data.Dataset:
        data = tf.data.Dataset.from_tensor_slices((features[part], labels[part]))
        data = data.shuffle(len(part), seed=seed) if shuffle else data
        return data.batch(config.batch_size)

    callbacks, validation = [], {}
    if len(stop):
        validation = {"validation_data": batches(stop, shuffle=False)}
        callbacks.append(tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True))
    history = model.fit(
        batches(fit, shuffle=True), epochs=epochs or config.epochs, callbacks=callbacks, verbose=0, **validation
    ).history
    best = int(np.argmin(history["val_loss"])) + 1 if len(stop) else len(history["loss"])
    return model, best
