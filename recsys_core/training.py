"""Fit, evaluate and export every configured model under one `tf.distribute` strategy."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core import evaluation, export, plots, protocol
from recsys_core.config import ExperimentConfig
from recsys_core.data import DataError, InteractionData, load_data
from recsys_core.data.pipeline import example_arrays, make_dataset, steps_per_epoch, user_histories, with_history
from recsys_core.data.splits import split
from recsys_core.distribute import is_chief, make_strategy, split_cpu
from recsys_core.features.schema import (
    CONTEXT_FEATURES,
    HISTORY,
    ITEM_FEATURES,
    QUERY_FEATURES,
    USER_FEATURES,
    feature_arrays,
    tensor_specs,
)
from recsys_core.features.vocabulary import FeatureVocabulary, fit_vocabulary
from recsys_core.models.builders import RATING_MODELS, TOWER_MODELS, build_model, build_optimizer
from recsys_core.models.dlrm import INTERACTION_INPUTS

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainedModel:
    """A fitted model with its per-epoch history, test metrics and timing."""

    model: tfrs.Model
    history: dict[str, list[float]]
    metrics: dict[str, float]


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """What every model trains and is checked on.

    Attributes:
        fit, validation, test: `example_arrays` of the fitting part of the training
            split, of the validation part carved from it, and of the test split.
        histories: `[users, n]` history ids from the fitting part (`user_histories`).
        test_histories: the same from the whole training split, for test examples.
    """

    fit: dict[str, np.ndarray]
    validation: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    histories: np.ndarray
    test_histories: np.ndarray
    items: pa.Table

    @classmethod
    def build(
        cls,
        fit: InteractionData,
        validation: InteractionData,
        train: InteractionData,
        test: InteractionData,
        length: int,
    ) -> ModelInputs:
        """Inputs from the three parts of a split; histories keep each user's last `length` items."""
        return cls(
            fit=example_arrays(fit, fit),
            validation=example_arrays(validation, fit),
            test=example_arrays(test, train),
            histories=user_histories(fit, length),
            test_histories=user_histories(train, length),
            items=train.items,
        )


def run_experiment(config: ExperimentConfig) -> str | None:
    """Trains, evaluates and exports; returns the bundle directory, or None on non-chief workers.

    Models are fitted on the training split less a validation part, which drives
    early stopping and every choice of the list protocol (`protocol.py`); the test
    split is scored once, at the end. The bundle is assembled in a hidden staging
    directory and renamed into place when complete, then `LATEST` is updated:
    readers never see a partial bundle. Non-chief workers take part in every
    collective step but write to scratch.
    """
    config.validate()
    if config.training.cpu_devices:
        split_cpu(config.training.cpu_devices)
    strategy = make_strategy(config.training.strategy, config.training.tpu)
    tf.keras.utils.set_random_seed(config.training.seed)

    data = load_data(config.data)
    if data.lineage.get("implicit") and set(config.training.models) & set(RATING_MODELS):
        raise DataError(
            "the interactions table has no rating column, so rating models cannot be trained; "
            "use --models retrieval or add a rating column"
        )
    train, test = split(data, config.data.split, config.data.test_fraction, config.data.seed)
    fit, validation = split(train, config.data.split, config.data.validation_fraction, config.data.seed)
    vocab = fit_vocabulary(fit)
    length = config.retrieval.history_length
    inputs = ModelInputs.build(fit, validation, train, test, length)
    log.info(
        "%d fitting, %d validation and %d test ratings; %d replicas",
        fit.ratings.num_rows,
        validation.ratings.num_rows,
        test.ratings.num_rows,
        strategy.num_replicas_in_sync,
    )

    chief = is_chief(strategy)
    version = export.new_version()
    root = os.path.abspath(config.training.output_dir)
    staging = os.path.join(root, f".{version}.incomplete") if chief else tempfile.mkdtemp(prefix="recsys-worker-")
    try:
        trained = {
            name: fit_and_evaluate(name, config, vocab, strategy, inputs, staging) for name in config.training.models
        }
        _write_plots(trained, with_history(inputs.test, inputs.test_histories), os.path.join(staging, "plots"))
        manifest = {
            "bundle_version": version,
            "models": list(trained),
            "config": config.to_dict(),
            "data_lineage": data.lineage,
            "split": {
                "kind": config.data.split,
                "fit": fit.ratings.num_rows,
                "validation": validation.ratings.num_rows,
                "test": test.ratings.num_rows,
            },
            "vocabulary_sizes": vocab.sizes(),
            "feature_schema": _feature_schema(),
            "query_policy": {"history_length": length, "query_time": "last_interaction"},
            "metrics": {name: result.metrics for name, result in trained.items()},
            "index_k": config.training.index_k,
            "num_replicas": strategy.num_replicas_in_sync,
        }
        _export(staging, trained, fit, vocab, manifest)
        if chief and any(name in TOWER_MODELS for name in trained):
            selection, lists = protocol.evaluate_lists(staging, config, fit, validation, train, test)
            manifest.update(reranking=selection, metrics={**manifest["metrics"], "lists": lists})
            export.write_json(os.path.join(staging, "metrics.json"), manifest["metrics"])
            export.update_manifest(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not chief:
        shutil.rmtree(staging, ignore_errors=True)
        return None
    final = os.path.join(root, version)
    os.replace(staging, final)
    export.write_text(os.path.join(root, export.LATEST), version)
    return final


def _write_plots(trained: dict[str, TrainedModel], test_arrays: dict[str, np.ndarray], directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, result in trained.items():
        plots.plot_history(name, result.history, os.path.join(directory, f"{name}_training.png"))
        if name in ("dlrm", "dcn"):
            batch = {k: tf.constant(v[:4096]) for k, v in test_arrays.items()}
            matrix = result.model.scorer.interaction_matrix(batch).numpy()
            path = os.path.join(directory, f"{name}_interactions.png")
            plots.plot_interactions(matrix, INTERACTION_INPUTS, path, f"{name}: mean |<e_i, e_j>|")


def _export(
    staging: str, trained: dict[str, TrainedModel], train: InteractionData, vocab: FeatureVocabulary, manifest: dict
) -> None:
    item_embeddings, item_ids = _item_index(trained, train)
    models = {name: result.model for name, result in trained.items()}
    module, signatures = export.build_signatures(models, item_embeddings, item_ids, manifest["index_k"])
    export.write_json(os.path.join(staging, "metrics.json"), manifest["metrics"])
    export.write_json(os.path.join(staging, "config.json"), manifest["config"])
    export.write_text(os.path.join(staging, "vocabulary.json"), vocab.to_json())
    export.save_bundle(staging, module, signatures, manifest)


def fit_and_evaluate(
    name: str,
    config: ExperimentConfig,
    vocab: FeatureVocabulary,
    strategy: tf.distribute.Strategy,
    inputs: ModelInputs,
    run_dir: str,
) -> TrainedModel:
    """Builds the named model inside `strategy.scope()`, fits it with per-replica input, evaluates it.

    Validation loss (RMSE for rating models) stops the fit early and picks the
    epoch whose weights are kept; test metrics are computed after the fit.
    """
    fit = getattr(config, name)
    with strategy.scope():
        model = build_model(name, config, vocab)
        model.compile(optimizer=build_optimizer(fit))
    batch = fit.batch_size
    train_data = strategy.distribute_datasets_from_function(
        lambda context: make_dataset(inputs.fit, inputs.histories, batch, config.training.seed, context)
    )
    validation_data = strategy.distribute_datasets_from_function(
        lambda context: make_dataset(inputs.validation, inputs.histories, batch, None, context)
    )
    callbacks = [
        tf.keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, "tensorboard", name)),
        tf.keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, "checkpoints", name, "epoch-{epoch:02d}"), save_weights_only=True
        ),
        tf.keras.callbacks.EarlyStopping(
            monitor="val_rmse" if name in RATING_MODELS else "val_loss",
            patience=config.training.early_stopping_patience,
            restore_best_weights=True,
        ),
    ]
    steps = steps_per_epoch(len(inputs.fit["movie_id"]), batch)
    started = time.perf_counter()
    history = model.fit(
        train_data,
        epochs=fit.epochs,
        steps_per_epoch=steps,
        validation_data=validation_data,
        validation_steps=steps_per_epoch(len(inputs.validation["movie_id"]), batch),
        callbacks=callbacks,
        verbose=config.training.verbose,
    )
    seconds = time.perf_counter() - started
    epochs = len(history.history["loss"])
    metrics = evaluate(name, model, config, vocab, inputs)
    metrics.update(train_seconds=seconds, epochs_run=epochs, train_examples_per_second=steps * batch * epochs / seconds)
    return TrainedModel(model, {k: [float(v) for v in vs] for k, vs in history.history.items()}, metrics)


def evaluate(
    name: str, model: tfrs.Model, config: ExperimentConfig, vocab: FeatureVocabulary, inputs: ModelInputs
) -> dict[str, float]:
    """Test-split metrics of one model: RMSE/MAE for rating models, the tutorials' factorized top-K for towers.

    The lists the job ships are scored separately, from the bundle (`protocol.py`).
    """
    test = with_history(inputs.test, inputs.test_histories)
    metrics = {}
    if name in RATING_MODELS:
        predictions = evaluation.batched(tf.function(model), test)
        metrics.update(evaluation.rating_figures(predictions, test["user_rating"], vocab.rating_mean))
    if name in TOWER_MODELS:
        candidate_tower = tf.function(model.candidate_tower)
        items = feature_arrays(inputs.items, ITEM_FEATURES)
        metrics.update(
            evaluation.factorized_top_k(
                tf.function(model.query_tower),
                candidate_tower,
                evaluation.batched(candidate_tower, items),
                items["movie_id"],
                evaluation.tensor_batches(test),
                config.training.eval_ks,
            )
        )
    return metrics


def _item_index(trained: dict[str, TrainedModel], train: InteractionData):
    towers = trained.get("retrieval") or trained.get("multitask")
    if towers is None:
        return None, None
    embeddings = evaluation.batched(
        tf.function(towers.model.candidate_tower), feature_arrays(train.items, ITEM_FEATURES)
    )
    return embeddings, train.items["movie_id"].to_numpy(zero_copy_only=False).astype(object)


def _feature_schema() -> dict:
    specs = tensor_specs(QUERY_FEATURES + ITEM_FEATURES)
    return {
        "user": list(USER_FEATURES),
        "context": list(CONTEXT_FEATURES),
        "history": HISTORY,
        "item": list(ITEM_FEATURES),
        "dtypes": {name: spec.dtype.name for name, spec in specs.items()},
    }
