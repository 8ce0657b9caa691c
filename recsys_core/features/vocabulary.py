"""Vocabularies and statistics, fit on the training split only.

Anything seen only in the test split (or first seen at scoring time) maps to
the out-of-vocabulary bucket of its lookup layer.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow.compute as pc

from recsys_core.data.tables import GENRES, OCCUPATIONS, InteractionData

_TIME_BUCKETS = 32
_MAX_TITLE_TOKENS = 20_000


@dataclasses.dataclass
class FeatureVocabulary:
    """Everything the preprocessing layers need, fit on training ratings.

    Attributes:
        user_ids / movie_ids / zip_codes / title_tokens: lookup vocabularies.
        timestamp_boundaries: quantile bucket edges of training timestamps.
        timestamp_mean, timestamp_std, age_mean, age_std: normalisation statistics.
        timestamp_range, age_range: training min and max; values outside are clipped
            (e.g. scoring "now" with a model trained on older data).
        rating_mean: mean training rating (initial bias of rating heads).
        num_occupations, num_genres: sizes of the TFDS label sets.
    """

    user_ids: list[str]
    movie_ids: list[str]
    zip_codes: list[str]
    title_tokens: list[str]
    timestamp_boundaries: list[float]
    timestamp_mean: float
    timestamp_std: float
    age_mean: float
    age_std: float
    timestamp_range: tuple[float, float]
    age_range: tuple[float, float]
    rating_mean: float
    num_occupations: int = len(OCCUPATIONS)
    num_genres: int = len(GENRES)

    def sizes(self) -> dict[str, int]:
        """Vocabulary sizes, for the bundle manifest."""
        return {
            "user_ids": len(self.user_ids),
            "movie_ids": len(self.movie_ids),
            "zip_codes": len(self.zip_codes),
            "title_tokens": len(self.title_tokens),
            "timestamp_buckets": len(self.timestamp_boundaries) + 1,
            "occupations": self.num_occupations,
            "genres": self.num_genres,
        }

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FeatureVocabulary:
        fields = json.loads(text)
        return cls(**{k: tuple(v) if k.endswith("_range") else v for k, v in fields.items()})


def fit_vocabulary(train: InteractionData) -> FeatureVocabulary:
    """Fits vocabularies and statistics on the training ratings (and their users/items only)."""
    import tensorflow as tf

    examples = train.examples
    titles = pc.unique(examples["movie_title"]).to_numpy(zero_copy_only=False).astype(object)
    text = tf.keras.layers.TextVectorization(max_tokens=_MAX_TITLE_TOKENS)
    text.adapt(titles)
    timestamps = examples["timestamp"].to_numpy().astype(np.float64)
    users = train.users.filter(pc.is_in(train.users["user_id"], value_set=pc.unique(examples["user_id"])))
    ages = users["raw_user_age"].to_numpy().astype(np.float64)
    boundaries = np.unique(np.quantile(timestamps, np.linspace(0, 1, _TIME_BUCKETS + 1)[1:-1]))
    return FeatureVocabulary(
        user_ids=_sorted_unique(examples["user_id"]),
        movie_ids=_sorted_unique(examples["movie_id"]),
        zip_codes=_sorted_unique(examples["user_zip_code"]),
        title_tokens=[t for t in text.get_vocabulary() if t not in ("", "[UNK]")],
        timestamp_boundaries=boundaries.tolist(),
        timestamp_mean=float(timestamps.mean()),
        timestamp_std=float(timestamps.std() or 1.0),
        age_mean=float(ages.mean()),
        age_std=float(ages.std() or 1.0),
        timestamp_range=(float(timestamps.min()), float(timestamps.max())),
        age_range=(float(ages.min()), float(ages.max())),
        rating_mean=float(examples["user_rating"].to_numpy().mean()),
    )


def _sorted_unique(column) -> list[str]:
    return sorted(pc.unique(column).to_pylist())
