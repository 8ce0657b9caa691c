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
import os
from collections.abc import Callable

from recsys_core.config import DataConfig
from recsys_core.data.pipeline import ModelInputs
from recsys_core.data.splits import split
from recsys_core.data.tables import InteractionData
from recsys_core.features.vocabulary import FeatureVocabulary, fit_vocabulary

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


def in_memory(data: InteractionData, config: DataConfig, length: int, directory: str, seed: int) -> PreparedSplits:
    """Splits `data` (`splits.split`); a phase's example files go under `directory/<phase>` when first used.

    Args:
        data: every rating, in memory.
        config: the split's kind, fractions and seed.
        length: history length of the model inputs.
        directory: where example files go (any `tf.io.gfile` location).
        seed: shuffles the example files' rows.
    """
    train, test = split(data, config.split, config.test_fraction, config.seed)
    fit, validation = split(train, config.split, config.validation_fraction, config.seed)

    def make_phase(name: str) -> Phase:
        inputs = (
            ModelInputs.build(fit, validation, test, length, os.path.join(directory, "fit"), seed)
            if name == "fit"
            else ModelInputs.build(train, None, test, length, os.path.join(directory, "refit"), seed)
        )
        return Phase(fit_vocabulary(fit if name == "fit" else train), inputs)

    return PreparedSplits(
        rows={"fit": fit.ratings.num_rows, "validation": validation.ratings.num_rows, "test": test.ratings.num_rows},
        protocol={"fit": fit, "validation": validation, "train": train, "test": test},
        sample=None,
        lineage=data.lineage,
        make_phase=make_phase,
    )
