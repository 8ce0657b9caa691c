"""Fit, evaluate and export every configured model under one `tf.distribute` strategy."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core import bundle, faults
from recsys_core.config import ExperimentConfig
from recsys_core.console import keras_verbosity
from recsys_core.data import DataError, InteractionData, load_data, prepared, resolve_schema, streaming
from recsys_core.data.parquet_source import ParquetTables, open_parquet_tables
from recsys_core.data.pipeline import ModelInputs, make_dataset, steps_per_epoch
from recsys_core.data.prepared import Phase, PreparedSplits
from recsys_core.distribute import dtype_policy, is_chief, make_strategy, split_cpu
from recsys_core.evaluation import offline, protocol
from recsys_core.features.arrays import feature_arrays, item_inputs
from recsys_core.features.vocabulary import FeatureVocabulary
from recsys_core.fingerprint import json_sha256
from recsys_core.lease import Lease
from recsys_core.models.builders import build_model, build_optimizer
from recsys_core.registry import RATING_MODELS, TOWER_MODELS
from recsys_core.schema import ITEM_ID, RATING, FeatureSchema
from recsys_core.serving.list_features import ItemFactors
from recsys_core.training import export, plots

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainedModel:
    """A fitted model with its per-epoch history and metrics (training figures, then test figures)."""

    model: tfrs.Model
    history: dict[str, list[float]]
    metrics: dict[str, float]


def run_experiment(config: ExperimentConfig) -> str | None:
    """Trains, evaluates and exports; returns the bundle directory, or None on non-chief workers.

    1. Every model is fitted on the training split less a validation part, which
       stops it early (`protocol.py` then chooses the re-ranker and its blend
       weight on that validation part, from a bundle of these models).
    2. With `training.refit` (the default), every model is fitted again on the
       whole training split for its best number of epochs.
    3. The test split is scored once, at the end, with the final models.

    The splits come from tables in memory (`prepared.in_memory`) or, with
    `data.out_of_core`, from Parquet files streamed without holding the interactions
    (`streaming.prepare`); either way the fits read example files.

    The bundle is assembled in a hidden staging directory and published when
    complete (`bundle.publish`): readers never see a partial bundle. The output
    directory may be on any `tf.io.gfile` file system (local, gs://, ram://).
    A run killed part-way is resumed by the same command: each fit restarts from
    its last finished epoch (backups in `.resume-<hash of config and data>/`).
    Multi-worker runs resume alike when their workers are restarted: every worker
    restores the chief's backup. Non-chief workers take part in every collective
    step (saving included) but write to scratch.
    """
    config.validate()
    if config.training.cpu_devices:
        split_cpu(config.training.cpu_devices)
    strategy = make_strategy(config.training.strategy, config.training.tpu)
    tf.keras.utils.set_random_seed(config.training.seed)

    schema = resolve_schema(config.data)
    if not schema.rating and set(config.training.models) & set(RATING_MODELS):
        raise DataError(
            f"{schema.describe()} declares no ratings (implicit feedback), so rating models cannot be "
            "trained; use --models retrieval or add a rating column"
        )
    # The data is found (and, in memory, read) before anything is written: a wrong path writes nothing.
    data = open_parquet_tables(config.data.path, schema) if config.data.out_of_core else load_data(config.data, schema)
    version = bundle.new_version()
    root = bundle.absolute(config.training.output_dir)
    lease = bundle.output_lease(root, version) if is_chief(strategy) else None
    with lease or contextlib.nullcontext():  # no other run cleans up, resumes or publishes here meanwhile
        return _prepared_and_trained(config, strategy, data, root, version, lease)


def _prepared_and_trained(
    config: ExperimentConfig,
    strategy: tf.distribute.Strategy,
    data: InteractionData | ParquetTables,
    root: str,
    version: str,
    lease: Lease | None,
) -> str | None:
    """Prepares the splits (in memory, or streamed from Parquet `data`) into example files, then
    `_train_and_export`."""
    length = config.retrieval.history_length
    if is_chief(strategy):
        bundle.remove_incomplete(root)
    examples, seed = _examples_directory(config.training.examples_dir, version), config.training.seed
    log.info("example files: %s", examples)
    try:
        if config.data.out_of_core:
            splits = streaming.prepare(data, config.data, length, examples, seed, config.training.refit)
        else:
            splits = prepared.in_memory(data, config.data, length, examples, seed)
        log.info(
            "%d fitting, %d validation and %d test ratings; %d replicas",
            splits.rows["fit"],
            splits.rows["validation"],
            splits.rows["test"],
            strategy.num_replicas_in_sync,
        )
        return _train_and_export(config, strategy, splits, root, version, lease)
    finally:
        bundle.remove(examples)


def _train_and_export(
    config: ExperimentConfig,
    strategy: tf.distribute.Strategy,
    splits: PreparedSplits,
    root: str,
    version: str,
    lease: Lease | None,
) -> str | None:
    """Fits, selects, refits, evaluates and publishes (see `run_experiment`); `lease`: the chief's, checked
    before the bundle is published (a run that stalled past its expiry publishes nothing)."""
    chief = is_chief(strategy)
    staging = bundle.staging_directory(root, version) if chief else tempfile.mkdtemp(prefix="recsys-worker-")
    resume = _resume_directory(root, config, splits.lineage)
    protocol_data = splits.protocol
    manifest = {
        "bundle_version": version,
        "models": list(config.training.models),
        "config": config.to_dict(),
        "data_lineage": splits.lineage,
        "split": {"kind": config.data.split, **splits.rows, "refit_on_train": config.training.refit},
        "query_policy": {"history_length": config.retrieval.history_length, "query_time": "last_interaction"},
        "index_k": config.training.index_k,
        "num_replicas": strategy.num_replicas_in_sync,
    }
    if splits.sample:
        manifest["protocol_sample"] = splits.sample
    towers = any(name in TOWER_MODELS for name in config.training.models)
    try:
        phase = splits.phase("fit")
        trained = {
            name: fit_model(name, config, phase.vocabulary, strategy, phase.inputs, staging, resume_dir=resume)
            for name in config.training.models
        }
        _write_plots(trained, next(iter(phase.inputs.test_batches())), os.path.join(staging, bundle.PLOTS))
        selection_bundle = os.path.join(staging, "selection") if config.training.refit else staging
        _export(selection_bundle, trained, phase, {**manifest, "metrics": {}})
        list_ranker = None
        if chief and towers:
            manifest["reranking"], list_ranker = protocol.select(
                selection_bundle, config, protocol_data["fit"], protocol_data["validation"]
            )
            if list_ranker is not None:
                recorded = manifest["reranking"]["list_ranker"]
                manifest["list_ranker"] = {key: recorded[key] for key in ("rating_model", "extra_candidates")}
        if config.training.refit:
            bundle.remove(selection_bundle)
            phase = splits.phase("train")
            trained = {
                name: fit_model(
                    name,
                    config,
                    phase.vocabulary,
                    strategy,
                    phase.inputs,
                    staging,
                    epochs=result.metrics["best_epoch"],
                    resume_dir=resume,
                )
                for name, result in trained.items()
            }
        for name, result in trained.items():
            result.metrics.update(evaluate(name, result.model, config, phase.vocabulary, phase.inputs))
        manifest["metrics"] = {name: result.metrics for name, result in trained.items()}
        manifest["vocabulary_sizes"] = phase.vocabulary.sizes()
        factors = None
        if list_ranker is not None:  # its item-to-item factors, over the whole training split
            ease_l2, rank = manifest["reranking"]["ease_l2"], config.list_ranker.affinity_rank
            factors = protocol.item_factors(protocol_data["train"], ease_l2, rank)
        _export(staging, trained, phase, manifest, list_ranker, factors)
        if chief:
            train, test = protocol_data["train"], protocol_data["test"]
            manifest["metrics"]["baselines"] = protocol.rating_baselines(train, test)
            if towers:
                lists, gain = protocol.lists_on_test(staging, config, manifest["reranking"], train, test)
                manifest["metrics"]["lists"] = lists
                if gain is not None:
                    manifest["metrics"]["list_ranker_gain"] = gain
            bundle.update_manifest(staging, manifest)
    except BaseException:
        bundle.remove(staging)
        raise
    if not chief:
        bundle.remove(staging)
        return None
    if lease:
        lease.check()
    final = bundle.publish(staging, root, version)
    bundle.remove(resume)
    return final


def _examples_directory(parent: str, version: str) -> str:
    """A new directory for this process's example files: local scratch, or under `parent` (any gfile URL)."""
    if not parent:
        return tempfile.mkdtemp(prefix="recsys-examples-")
    return os.path.join(bundle.absolute(parent), f"examples-{version}-{os.getpid()}")


def _resume_directory(root: str, config: ExperimentConfig, lineage: dict) -> str:
    """Where the fits back themselves up: the same for the same command on the same data, so a rerun resumes."""
    return os.path.join(root, f".resume-{json_sha256({'config': config.to_dict(), 'data': lineage})[:12]}")


def _write_plots(trained: dict[str, TrainedModel], test_batch: dict[str, tf.Tensor], directory: str) -> None:
    """Training curves (with validation) and DLRM/DCN interaction heatmaps (over `test_batch`), as PNG files
    in `directory`."""
    for name, result in trained.items():
        bundle.write_bytes(os.path.join(directory, f"{name}_training.png"), plots.history_png(name, result.history))
        if hasattr(getattr(result.model, "scorer", None), "interaction_matrix"):  # DLRM and DCN
            matrix = result.model.scorer.interaction_matrix(test_batch).numpy()
            names = result.model.scorer.embeddings.input_names
            png = plots.interactions_png(matrix, names, f"{name}: mean |<e_i, e_j>|")
            bundle.write_bytes(os.path.join(directory, f"{name}_interactions.png"), png)


def _export(
    directory: str,
    trained: dict[str, TrainedModel],
    phase: Phase,
    manifest: dict,
    list_ranker: tf.keras.Model | None = None,
    item_factors: ItemFactors | None = None,
) -> None:
    items, schema = phase.inputs.items, phase.inputs.schema
    item_embeddings, item_ids = _item_index(trained, items, schema)
    models = {name: result.model for name, result in trained.items()}
    module, signatures = export.build_signatures(
        models, schema, item_embeddings, item_ids, manifest["index_k"], list_ranker
    )
    bundle.write_text(os.path.join(directory, bundle.VOCABULARY), phase.vocabulary.to_json())
    if item_factors is not None:
        bundle.write_bytes(os.path.join(directory, bundle.ITEM_FACTORS), item_factors.to_bytes())
    bundle.save(directory, module, signatures, schema, manifest)


def fit_model(
    name: str,
    config: ExperimentConfig,
    vocab: FeatureVocabulary,
    strategy: tf.distribute.Strategy,
    inputs: ModelInputs,
    run_dir: str,
    epochs: int | None = None,
    resume_dir: str | None = None,
) -> TrainedModel:
    """Builds the named model inside `strategy.scope()` and fits it with per-replica input.

    With validation inputs, the validation loss (RMSE for rating models) stops the
    fit early and picks the epoch whose weights are kept; without (a refit), the
    model trains for `epochs`. With `resume_dir`, the fit backs itself up there at
    every epoch end (`_Resumable`) and a fit killed part-way resumes from the last
    finished epoch. A NaN loss stops the fit with a `TrainingError`. Under a mixed
    `training.precision` the fit computes in 16 bits; the model returned (evaluated and
    exported) is its float32 copy.

    Raises:
        TrainingError: the loss became NaN.
    """
    fit = getattr(config, name)
    with strategy.scope(), dtype_policy(config.training.precision):
        model = build_model(name, config, inputs.schema, vocab)
        model.compile(optimizer=build_optimizer(fit))
    batch = fit.batch_size
    stage = name if inputs.validation is not None else f"{name}-refit"  # in messages and fault points
    # Files per phase, then model: `fit/ranking`, `refit/ranking` (no directory is a prefix of its sibling's
    # name, which TF's ram:// file system cannot list).
    files = os.path.join("fit" if inputs.validation is not None else "refit", name)
    train_data = strategy.distribute_datasets_from_function(
        lambda context: make_dataset(inputs.train, inputs.histories, batch, config.training.seed, context)
    )
    scratch = None if is_chief(strategy) else os.path.join(run_dir, "resume", files)
    resumable = _Resumable(os.path.join(resume_dir, files) if resume_dir else None, model, scratch)
    if resumable.finished:
        log.info("%s: trained by an interrupted run; its weights are restored", stage)
    elif resumable.epochs:
        log.info("%s: resuming after epoch %d, from an interrupted run's backup", stage, resumable.epochs)
    callbacks, validation, monitor = _callbacks(name, stage, files, config, strategy, inputs, run_dir)
    callbacks.append(resumable)  # last: its final checkpoint holds the weights early stopping kept
    steps = steps_per_epoch(inputs.train.rows, batch)
    started = time.perf_counter()
    if not resumable.finished:
        model.fit(
            train_data,
            initial_epoch=resumable.epochs,
            epochs=epochs or fit.epochs,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=keras_verbosity(config.training.verbose),
            **validation,
        )
    seconds = resumable.seconds + time.perf_counter() - started
    history = resumable.history()
    metrics = _fit_metrics(name, history, seconds, steps * batch, monitor)
    if model.dtype_policy.name != "float32":
        model = float32_copy(name, config, vocab, strategy, inputs, model)
    return TrainedModel(model, history, metrics)


def _callbacks(
    name: str,
    stage: str,
    files: str,
    config: ExperimentConfig,
    strategy: tf.distribute.Strategy,
    inputs: ModelInputs,
    run_dir: str,
) -> tuple[list[tf.keras.callbacks.Callback], dict, str]:
    """The fit's callbacks (NaN stop, TensorBoard, per-epoch checkpoints, the crash-test hook and, with
    validation inputs, early stopping), its validation arguments of `fit`, and the history key it monitors."""
    batch = getattr(config, name).batch_size
    callbacks = [
        _StopOnNaN(),
        tf.keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, bundle.TENSORBOARD, files)),
        tf.keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, bundle.CHECKPOINTS, files, "epoch-{epoch:02d}"), save_weights_only=True
        ),
    ]
    if os.environ.get(faults.VARIABLE, "").startswith("train:"):
        callbacks.append(_KillMidEpoch(stage, steps_per_epoch(inputs.train.rows, batch)))
    monitor = "val_rmse" if name in RATING_MODELS else "val_loss"
    if inputs.validation is None:
        return callbacks, {}, monitor
    validation = dict(
        validation_data=strategy.distribute_datasets_from_function(
            lambda context: make_dataset(inputs.validation, inputs.histories, batch, None, context)
        ),
        validation_steps=steps_per_epoch(inputs.validation.rows, batch),
    )
    callbacks.append(
        tf.keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.training.early_stopping_patience, restore_best_weights=True
        )
    )
    return callbacks, validation, monitor


def _fit_metrics(
    name: str, history: dict[str, list[float]], seconds: float, examples_per_epoch: int, monitor: str
) -> dict[str, float]:
    """Training time, epochs, speed and the best epoch of a fit's `history`; `TrainingError` on a NaN loss."""
    if any(np.isnan(history["loss"])):
        raise TrainingError(
            f"the {name} model's training loss became NaN at epoch {len(history['loss'])}; nothing was exported. "
            f"Lower its learning rate (--override {name}.learning_rate=...) or check the inputs for "
            "extreme values"
        )
    epochs_run = len(history["loss"])
    metrics = {"train_seconds": seconds, "epochs_run": epochs_run}
    metrics["train_examples_per_second"] = examples_per_epoch * epochs_run / seconds
    if monitor in history:
        metrics["best_epoch"] = int(np.argmin(history[monitor])) + 1
        metrics[f"best_{monitor}"] = float(np.min(history[monitor]))
    else:
        metrics["best_epoch"] = epochs_run
    return metrics


def float32_copy(
    name: str,
    config: ExperimentConfig,
    vocab: FeatureVocabulary,
    strategy: tf.distribute.Strategy,
    inputs: ModelInputs,
    model: tfrs.Model,
) -> tfrs.Model:
    """`model`, fitted under a mixed dtype policy, rebuilt in float32 with its weights (its variables are
    float32 already): bundles then score the same on any hardware."""
    with strategy.scope(), dtype_policy("float32"):
        copy = build_model(name, config, inputs.schema, vocab)
    copy(next(iter(make_dataset(inputs.train, inputs.histories, 2, None))))  # creates the variables
    copy.set_weights(model.get_weights())
    return copy


class TrainingError(RuntimeError):
    """Training cannot produce a usable model (e.g. a NaN loss); no bundle is written."""


class _Resumable(tf.keras.callbacks.Callback):
    """Backs a fit up in `directory` (when given) so that a rerun continues where an interrupted one stopped.

    Under a multi-worker strategy every worker saves (checkpoints are collective
    there) and restores from `directory`, but only the chief writes it: the other
    workers write to their `scratch`, as Keras's `BackupAndRestore` does.

    At every epoch end: a checkpoint of the model and its optimizer, then the
    epoch's logs. At the end of the fit: the final weights (after early stopping
    restored its best) and `finished`. Built over an existing backup, it restores
    the weights (as the variables are created): `fit(initial_epoch=self.epochs)`
    continues a fit, and a finished one is not fitted again. Epoch hooks only
    (Keras's `BackupAndRestore` adds a Python call after every batch and wants
    the model built before `fit`); early stopping's patience starts again after a
    resume.
    """

    def __init__(self, directory: str | None, model: tf.keras.Model, scratch: str | None = None) -> None:
        super().__init__()
        self._epochs, self.finished, self.seconds = {}, False, 0.0
        self._directory = (scratch or directory) if directory else None  # where this worker writes, if anywhere
        if not directory:
            return
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        self._manager = tf.train.CheckpointManager(self._checkpoint, self._directory, max_to_keep=2)
        self._logs = os.path.join(self._directory, "epochs.json")
        backup = os.path.join(directory, "epochs.json")
        if tf.io.gfile.exists(backup):  # written after the checkpoint it describes: that one is complete
            with tf.io.gfile.GFile(backup) as handle:
                saved = json.load(handle)
            self._epochs = {int(k): v for k, v in saved["epochs"].items()}
            self.finished, self.seconds = saved["finished"], saved["seconds"]
            last = "final" if self.finished else f"ckpt-{len(self._epochs) - 1}"
            self._checkpoint.restore(os.path.join(directory, last))
        self._started = time.perf_counter()

    @property
    def epochs(self) -> int:
        """Epochs finished so far, including those of an interrupted run."""
        return len(self._epochs)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self._epochs[epoch] = {k: float(v) for k, v in (logs or {}).items()}
        if self._directory:
            self._manager.save(checkpoint_number=epoch)
            self._save_logs(finished=False)

    def on_train_end(self, logs=None) -> None:
        if self._directory:
            self._checkpoint.write(os.path.join(self._directory, "final"))
            self._save_logs(finished=True)

    def _save_logs(self, finished: bool) -> None:
        seconds = self.seconds + time.perf_counter() - self._started
        bundle.write_json(self._logs, {"epochs": self._epochs, "finished": finished, "seconds": seconds})

    def history(self) -> dict[str, list[float]]:
        """{metric: [value per epoch]} over every epoch of the fit, resumed or not (Keras's own history
        starts again at the resumed epoch)."""
        epochs = [self._epochs[e] for e in sorted(self._epochs)]
        return {k: [e.get(k, float("nan")) for e in epochs] for k in epochs[-1]}


class _StopOnNaN(tf.keras.callbacks.Callback):
    """Stops the fit at the end of an epoch whose loss is NaN (Keras's `TerminateOnNaN` adds a Python call
    after every batch)."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if np.isnan((logs or {}).get("loss", 0.0)):
            self.model.stop_training = True


class _KillMidEpoch(tf.keras.callbacks.Callback):
    """Fault injection (`RECSYS_FAULT=train:<stage>`, e.g. `train:ranking-refit`): dies half-way through the
    stage's second epoch."""

    def __init__(self, stage: str, steps: int) -> None:
        super().__init__()
        self._stage, self._steps, self._epoch = stage, steps, 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self._epoch >= 1 and batch >= self._steps // 2:
            faults.fault_point(f"train:{self._stage}")


def evaluate(
    name: str, model: tfrs.Model, config: ExperimentConfig, vocab: FeatureVocabulary, inputs: ModelInputs
) -> dict[str, float]:
    """Test-split metrics of one model: RMSE/MAE for rating models, the tutorials' factorized top-K for towers.

    The lists the job ships are scored separately, from the bundle (`protocol.py`).
    """
    metrics = {}
    if name in RATING_MODELS:
        rate = tf.function(model, reduce_retracing=True)
        pairs = [(rate(batch).numpy(), batch[RATING].numpy()) for batch in inputs.test_batches()]
        predictions, labels = (np.concatenate(column) for column in zip(*pairs, strict=True))
        metrics.update(offline.rating_figures(predictions, labels, vocab.rating_mean))
    if name in TOWER_MODELS:
        candidate_tower = tf.function(model.candidate_tower)
        items = feature_arrays(inputs.items, inputs.schema, item_inputs(inputs.schema, "towers"))
        metrics.update(
            offline.factorized_top_k(
                tf.function(model.query_tower, reduce_retracing=True),
                candidate_tower,
                offline.batched(candidate_tower, items),
                items[ITEM_ID],
                inputs.test_batches(),
                config.training.eval_ks,
            )
        )
    return metrics


def _item_index(trained: dict[str, TrainedModel], items: pa.Table, schema: FeatureSchema):
    towers = next((trained[name] for name in TOWER_MODELS if name in trained), None)
    if towers is None:
        return None, None
    arrays = feature_arrays(items, schema, item_inputs(schema, "towers"))
    embeddings = offline.batched(tf.function(towers.model.candidate_tower), arrays)
    return embeddings, items[ITEM_ID].to_numpy(zero_copy_only=False).astype(object)
