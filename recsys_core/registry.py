"""The one list of models: name -> config section, builder, whether it has towers, whether it rates.

Importing it is cheap (no TensorFlow): the config, the CLI and the job read it;
`build` imports the builder when a model is actually made.
"""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the rest of the code needs to know about one model.

    Attributes:
        name: as in `--models` and the bundle's signatures.
        section: its config section (`ExperimentConfig.<section>`).
        builder: `module:function` taking `(config, schema, stats)` and returning a `tfrs.Model`.
        towers: it has query and candidate towers (retrieval, item index, job lists).
        rates: it predicts ratings (RMSE, a re-ranker signature).
        reads: which schema features it reads (`Feature.feeds`).
    """

    name: str
    section: str
    builder: str
    towers: bool
    rates: bool
    reads: str

    def build(self, config, schema, stats):
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)(self.name, config, schema, stats)


_BUILDERS = "recsys_core.models.builders"
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("retrieval", "retrieval", f"{_BUILDERS}:build_retrieval", towers=True, rates=False, reads="towers"),
        ModelSpec("ranking", "ranking", f"{_BUILDERS}:build_ranking", towers=False, rates=True, reads="ranking"),
        ModelSpec("dlrm", "dlrm", f"{_BUILDERS}:build_dlrm", towers=False, rates=True, reads="dlrm"),
        ModelSpec("dcn", "dcn", f"{_BUILDERS}:build_dlrm", towers=False, rates=True, reads="dlrm"),
        ModelSpec("multitask", "multitask", f"{_BUILDERS}:build_multitask", towers=True, rates=True, reads="towers"),
    )
}
MODEL_NAMES = tuple(MODELS)
RATING_MODELS = tuple(name for name, spec in MODELS.items() if spec.rates)
TOWER_MODELS = tuple(name for name, spec in MODELS.items() if spec.towers)


def spec(name: str) -> ModelSpec:
    """The named model's spec; `ValueError` naming the known models otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name]
