"""A bundle's `manifest.json`, typed: what the job and the offline protocol read of a bundle, named once.

The trainer writes the manifest as JSON (`bundle.save`, `bundle.update_manifest`) and
reads it back through `BundleManifest.parse` before it is written, so a bundle whose
manifest would not parse is never published. Readers (`bundle.read_manifest`) get a
`BundleManifest`; the whole record stays in `record` for reports.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from recsys_core.schema import FeatureSchema

FEATURE_SCHEMA = "feature_schema.json"


class ManifestError(ValueError):
    """A manifest lacks a field or holds one of the wrong kind; the message names it and the file."""


@dataclasses.dataclass(frozen=True)
class Signature:
    """A serving signature: its inputs and outputs, name -> `{"dtype": ..., "shape": [...]}`."""

    inputs: Mapping[str, dict]
    outputs: Mapping[str, dict]


@dataclasses.dataclass(frozen=True)
class QueryPolicy:
    """How a user's query is built: the last `history_length` items, as of `query_time`."""

    history_length: int
    query_time: str


@dataclasses.dataclass(frozen=True)
class Reranking:
    """What the protocol chose on validation for the job's `--reranker auto` and its weights.

    Attributes:
        reranker: the chosen re-ranker (a rating model, the list ranker, or `list_features.NO_RERANKER`).
        blend_weights, popularity_weights: re-ranker -> its weights in the final order.
        popularity_window_days: the popularity prior's window (0: all time).
        list_ranker_features: the features the bundle's list ranker reads (empty without one).
        ease_l2: the L2 of the EASE baseline and of the list ranker's item factors (None: EASE did not fit).
    """

    reranker: str
    blend_weights: Mapping[str, float]
    popularity_weights: Mapping[str, float]
    popularity_window_days: float
    list_ranker_features: tuple[str, ...]
    ease_l2: float | None


@dataclasses.dataclass(frozen=True)
class ListRanker:
    """How the bundle's list ranker is fed: the rating model it reads, and the extra candidates it ranks."""

    rating_model: str | None
    extra_candidates: int


@dataclasses.dataclass(frozen=True)
class BundleManifest:
    """A bundle's manifest.

    Attributes:
        path: the bundle directory it was read from.
        signatures: signature name -> `Signature`.
        reranking, list_ranker: None in bundles without towers (no lists to re-rank) or without a list ranker.
        metrics, config, data_lineage: the training run's records, as written.
        record: the whole manifest as written.
    """

    path: str
    bundle_version: str
    format_version: int
    models: tuple[str, ...]
    signatures: Mapping[str, Signature]
    schema: FeatureSchema
    query_policy: QueryPolicy
    index_k: int
    reranking: Reranking | None
    list_ranker: ListRanker | None
    metrics: Mapping
    config: Mapping
    data_lineage: Mapping
    record: Mapping

    @classmethod
    def parse(cls, record: Mapping, path: str) -> BundleManifest:
        """The manifest of the bundle at `path` from its JSON `record`.

        Raises:
            ManifestError: a field is missing or of the wrong kind.
        """
        where, schema_file = os.path.join(path, "manifest.json"), os.path.join(path, FEATURE_SCHEMA)

        def field(key: str, read, optional: bool = False):
            try:
                value = record.get(key) if optional else record[key]
                return None if value is None and optional else read(value)
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise ManifestError(
                    f"{where}: field {key!r} is missing or malformed ({error!r}); the bundle is damaged"
                ) from error

        return cls(
            path=path,
            bundle_version=field("bundle_version", str),
            format_version=field("format_version", int),
            models=field("models", tuple),
            signatures=field("signatures", _signatures),
            schema=field("feature_schema", lambda value: FeatureSchema.from_dict(value, source=schema_file)),
            query_policy=field("query_policy", lambda value: QueryPolicy(**value)),
            index_k=field("index_k", int),
            reranking=field("reranking", _reranking, optional=True),
            list_ranker=field("list_ranker", lambda value: ListRanker(**value), optional=True),
            metrics=field("metrics", dict, optional=True) or {},
            config=field("config", dict),
            data_lineage=field("data_lineage", dict),
            record=record,
        )


def _signatures(record: Mapping) -> dict[str, Signature]:
    return {name: Signature(dict(spec["inputs"]), dict(spec["outputs"])) for name, spec in record.items()}


def _reranking(record: Mapping) -> Reranking:
    return Reranking(
        reranker=record["reranker"],
        blend_weights=dict(record["blend_weights"]),
        popularity_weights=dict(record["popularity_weights"]),
        popularity_window_days=float(record["popularity_window_days"]),
        list_ranker_features=tuple((record.get("list_ranker") or {}).get("features", ())),
        ease_l2=None if record.get("ease_l2") is None else float(record["ease_l2"]),
    )
