"""Shared fixtures: the real MovieLens-100K files beside the repository, tiny trained models (helpers that are
not fixtures live in `tests/support.py`)."""

from __future__ import annotations

import fcntl
import os

import pytest

import recsys_core  # noqa: F401  (Keras 2 before TensorFlow)
from tests.support import ML100K


@pytest.fixture(scope="session")
def ml100k_path() -> str:
    if not os.path.isfile(os.path.join(ML100K, "u.data")):
        pytest.fail(f"the MovieLens-100K files are expected at {ML100K} (../shared/data/ml-100k)")
    return ML100K


@pytest.fixture(scope="session")
def ml100k(ml100k_path):
    from recsys_core.data.grouplens import read_grouplens

    return read_grouplens(ml100k_path)


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    from recsys_core.data.splits import random_split

    return random_split(ml100k, 0.2, 42)


@pytest.fixture(scope="session")
def tiny_data():
    from recsys_core.data.synthetic import synthetic_interactions

    return synthetic_interactions(num_users=200, num_items=80, interactions_per_user=15, seed=3)


@pytest.fixture(scope="session")
def tiny_trained(tiny_data, tmp_path_factory):
    """Every model fitted for two epochs on tiny synthetic data: (config, vocab, inputs, {name: TrainedModel})."""
    import tensorflow as tf

    from recsys_core.config import MODEL_NAMES, experiment
    from recsys_core.data.prepared import from_parts
    from recsys_core.data.splits import random_split
    from recsys_core.training.trainer import evaluate, fit_model

    config = experiment("smoke")
    config.training.verbose = 0
    train, test = random_split(tiny_data, 0.2, 42)
    fit, validation = random_split(train, 0.1, 42)
    examples = str(tmp_path_factory.mktemp("examples"))
    phase = from_parts(fit, validation, test, config.retrieval.history_length, examples).phase("fit")
    vocab, inputs = phase.vocabulary, phase.inputs
    strategy = tf.distribute.get_strategy()
    run_dir = str(tmp_path_factory.mktemp("run"))
    trained = {}
    for name in MODEL_NAMES:
        tf.keras.utils.set_random_seed(config.training.seed)  # the same start as `bfloat16_trained`'s fits
        trained[name] = fit_model(name, config, vocab, strategy, inputs, run_dir)
    for name, result in trained.items():
        result.metrics.update(evaluate(name, result.model, config, vocab, inputs))
    return config, vocab, inputs, trained


@pytest.fixture(scope="session")
def ml100k_bundle(ml100k_path, tmp_path_factory, worker_id) -> str:
    """A bundle trained for one epoch on the real MovieLens-100K split (retrieval, ranking, dlrm; a list ranker
    of one member; the fitting phase's models, not refitted), once per test run: the first pytest-xdist worker
    to need it trains it, the others wait for it (tests only read it)."""
    import train

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    output = shared / "ml100k-bundle"
    with open(shared / "ml100k-bundle.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (output / "LATEST").exists():
            args = ["--data-path", ml100k_path, "--models", "retrieval,ranking,dlrm", "--epochs", "1", "--verbose"]
            args += ["0", "--override", "list_ranker.members=1", "--override", "training.refit=false"]
            assert train.main([*args, "--output-dir", str(output)]) == 0
    return str(output / (output / "LATEST").read_text())
