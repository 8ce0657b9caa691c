"""What a training run works from, prepared once: per phase a vocabulary and model inputs, and the ratings
the offline protocol scores.

A run has two phases: `fit` (the training split less a validation part, which stops
the fits early and on which the protocol chooses the job's settings) and `train`
(the whole training split, for the refit). `in_memory` prepares them from tables in
memory; `streaming.prepare` from Parquet files too large for it. Both give a
`PreparedSplits`, which `training.run_experiment` uses alike.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa

from recsys_core.config import DataConfig
from recsys_core.data.pipeline import ExampleFiles, ModelInputs, example_chunks, user_histories
from recsys_core.data.splits import split
from recsys_core.data.tables import InteractionData, joined
from recsys_core.features.vocabulary import FeatureVocabulary, fit_vocabulary
from recsys_core.schema import FeatureSchema

PHASES = ("fit", "train")


@dataclasses.dataclass(frozen=True)
class Phase:
    """What the models of one phase are built with (`vocabulary`) and fitted and tested on (`inputs`)."""

    vocabulary: FeatureVocabulary
    inputs: ModelInputs


@dataclasses.dataclass(frozen=True)
class PreparedSplits:
    """A run's splits, ready to train on.

    Attributes:
        rows: ratings per split: `fit`, `validation`, `test`.
        protocol: `fit`, `validation`, `train` (fit + validation) and `test` ratings as tables, for the
            offline protocol (`protocol.py`): every rating, or those of a sample of users (`sample`).
        sample: None when `protocol` holds every user; else `users` of `of_users`, with `ratings` ratings.
        lineage: where the data came from, for manifests.
    """

    rows: dict[str, int]
    protocol: dict[str, InteractionData]
    sample: dict | None
    lineage: dict
    make_phase: Callable[[str], Phase]
    _phases: dict[str, Phase] = dataclasses.field(default_factory=dict)

    def phase(self, name: str) -> Phase:
        """The vocabulary and inputs of phase `name` (`fit` or `train`), prepared on first use."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; one of {PHASES}")
        if name not in self._phases:
            self._phases[name] = self.make_phase(name)
        return self._phases[name]


# The example files of a run, by split: (directory under the run's examples, the phase whose training ratings
# give their histories and frequencies). `fit` trains and `validation` stops the fitting phase's models; `train`
# (fit + validation) trains the refit's; `test` is scored by both.
EXAMPLE_FILES = {
    "fit": ("fit/train", "fit"),
    "validation": ("fit/validation", "fit"),
    "train": ("refit/train", "train"),
    "test": ("test", "train"),
}


def assemble_phase(
    name: str,
    vocabulary: FeatureVocabulary,
    files: Mapping[str, ExampleFiles],
    histories: Mapping[str, np.ndarray],
    items: pa.Table,
    schema: FeatureSchema,
) -> Phase:
    """Phase `name` (`fit` or `train`) from the example files of the splits (`EXAMPLE_FILES`) and each phase's
    `[users, length]` histories: it trains on its own split's files, stops on `validation` (fit only) and is
    tested on `test` with the whole training split's histories."""
    inputs = ModelInputs(
        train=files[name],
        validation=files["validation"] if name == "fit" else None,
        histories=histories[name],
        test=files["test"],
        test_histories=histories["train"],
        items=items,
        schema=schema,
    )
    return Phase(vocabulary, inputs)


def in_memory(data: InteractionData, config: DataConfig, length: int, directory: str, seed: int) -> PreparedSplits:
    """Splits `data` (`splits.split`: test, then validation from the rest) and prepares them (`from_parts`).

    Args:
        data: every rating, in memory.
        config: the split's kind, fractions and seed.
        length: history length of the model inputs.
        directory: where example files go (any `tf.io.gfile` location).
        seed: shuffles the example files' rows.
    """
    train, test = split(data, config.split, config.test_fraction, config.seed)
    fit, validation = split(train, config.split, config.validation_fraction, config.seed)
    return from_parts(fit, validation, test, length, directory, seed, train=train, lineage=data.lineage)


def from_parts(
    fit: InteractionData,
    validation: InteractionData,
    test: InteractionData,
    length: int,
    directory: str,
    seed: int = 0,
    train: InteractionData | None = None,
    lineage: dict | None = None,
) -> PreparedSplits:
    """Splits already made, in memory; a split's example files are written under `directory/EXAMPLE_FILES`
    when a phase first needs them, each once.

    Args:
        train: fit and validation as one, in the order its examples are written (default: fit, then validation).
        lineage: where the data came from (default: `fit`'s).
    """
    train = joined([fit, validation]) if train is None else train
    parts = {"fit": fit, "validation": validation, "train": train, "test": test}

    @functools.cache
    def files(name: str) -> ExampleFiles:
        path, phase = EXAMPLE_FILES[name]
        chunks = example_chunks(parts[name], parts[phase])
        return ExampleFiles.write(chunks, parts[name].ratings.num_rows, os.path.join(directory, path), seed)

    @functools.cache
    def histories(phase: str) -> np.ndarray:
        return user_histories(parts[phase], length)

    def make_phase(name: str) -> Phase:
        needed = (name, "test", "validation") if name == "fit" else (name, "test")
        return assemble_phase(
            name,
            fit_vocabulary(parts[name]),
            {split_name: files(split_name) for split_name in needed},
            {phase: histories(phase) for phase in {name, "train"}},
            train.items,
            train.schema,
        )

    return PreparedSplits(
        rows={"fit": fit.ratings.num_rows, "validation": validation.ratings.num_rows, "test": test.ratings.num_rows},
        protocol=parts,
        sample=None,
        lineage=fit.lineage if lineage is None else lineage,
        make_phase=make_phase,
    )
