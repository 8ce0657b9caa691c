"""The declared feature schema: which columns the users and items tables hold, and what each feeds.

A schema is a JSON file (see `recsys_core/schemas/`), loaded into `FeatureSchema`:

    {"name": "shop",
     "rating": true,
     "features": [
        {"name": "category", "entity": "item", "kind": "categorical"},
        {"name": "price", "entity": "item", "kind": "numeric", "log": true},
        {"name": "signup_time", "entity": "user", "kind": "timestamp"}]}

Every table has fixed id columns: `interactions` (`user_id`, `item_id`, `rating`,
`timestamp`), `users` (`user_id` + the user features), `items` (`item_id` + the
item features). This module imports nothing heavy: data readers, feature layers,
models, the bundle and the job all read it, so the import graph runs one way.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pyarrow as pa

USER_ID = "user_id"
ITEM_ID = "item_id"
RATING = "rating"
TIMESTAMP = "timestamp"
# The query tower's history input: the user's most recent item ids `[batch, n]`, padded with b"".
HISTORY = "user_history"
PADDING = b""  # pads list-valued string inputs (history, multi-valued categoricals)
# Per training example: the share of training interactions naming its item (logQ correction).
CANDIDATE_PROBABILITY = "candidate_probability"

KINDS = ("categorical", "multi_categorical", "text", "numeric", "timestamp")
ENTITIES = ("user", "item")
# Who reads a feature: the two towers (retrieval, multitask), the ranking model, DLRM and DCN.
CONSUMERS = ("towers", "ranking", "dlrm")
_CATEGORICAL_DTYPES = ("string", "int64", "bool")
_ARROW = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_(), "float32": pa.float32()}
SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")

INTERACTIONS_SCHEMA = pa.schema(
    [(USER_ID, pa.string()), (ITEM_ID, pa.string()), (RATING, pa.float32()), (TIMESTAMP, pa.int64())]
)


class SchemaError(ValueError):
    """A schema file, or a table checked against it, is wrong; the message names the column and the file."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One column of the users or items table.

    Attributes:
        name: column name in the table and input name of the bundle's signatures.
        entity: "user" or "item".
        kind: categorical (vocabulary fit on training data, one OOV bucket),
            multi_categorical (a list of strings, mean-embedded), text (words,
            mean-embedded), numeric (normalised, clipped to the training range) or
            timestamp (seconds; the model reads the days between it and the
            interaction, e.g. the age of an account).
        dtype: categorical values are "string", "int64" or "bool"; the other kinds
            have one dtype each (see `arrow_type`).
        feeds: which models read it (`CONSUMERS`); () keeps it in the tables only.
        log: numeric only: `log1p` before normalising (prices, counts).
        buckets: numeric only: also embed its training-quantile bucket (0: no).
        default: fills null or missing values; None makes the column required.
        valid_range: numeric only: `[low, high]`; the job dead-letters rows outside it.
    """

    name: str
    entity: str
    kind: str
    dtype: str = "string"
    feeds: tuple[str, ...] = CONSUMERS
    log: bool = False
    buckets: int = 0
    default: object = None
    valid_range: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        """Its entry in a schema file (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, entry: dict) -> Feature:
        """The feature of a schema file's entry (keys checked by `FeatureSchema.from_dict`)."""
        return cls(**{k: tuple(v) if k in ("feeds", "valid_range") and v is not None else v for k, v in entry.items()})

    def arrow_type(self) -> pa.DataType:
        """The column's type in the users or items table."""
        if self.kind == "categorical":
            return _ARROW[self.dtype]
        if self.kind == "multi_categorical":
            return pa.list_(pa.string())
        if self.kind == "numeric":
            return pa.float32()
        if self.kind == "timestamp":
            return pa.int64()
        return pa.string()

    def tensor_dtype(self) -> str:
        """dtype of the signature input: categoricals keep theirs, numerics are float32."""
        return {pa.float32(): "float32", pa.int64(): "int64", pa.bool_(): "bool"}.get(self.arrow_type(), "string")


@dataclasses.dataclass(frozen=True)
class FeatureSchema:
    """The user and item features of one kind of data.

    Attributes:
        name: e.g. "movielens", "shop".
        features: the declared features, in table order.
        rating: whether interactions carry an explicit rating (rating models need one).
        rating_range: `[low, high]` of valid ratings; the job dead-letters others.
        source: the file it was read from, named in error messages.
    """

    name: str
    features: tuple[Feature, ...]
    rating: bool = True
    rating_range: tuple[float, float] = (0.0, 5.0)
    source: str = ""

    def __post_init__(self) -> None:
        seen = {USER_ID, ITEM_ID, RATING, TIMESTAMP, HISTORY}
        for feature in self.features:
            where = f"feature {feature.name!r} of schema {self.source or self.name}"
            if feature.name in seen:
                raise SchemaError(f"{where}: the name is used twice or is reserved ({', '.join(sorted(seen))})")
            seen.add(feature.name)
            for field, value, allowed in (
                ("entity", feature.entity, ENTITIES),
                ("kind", feature.kind, KINDS),
                *(("feeds", consumer, CONSUMERS) for consumer in feature.feeds),
            ):
                if value not in allowed:
                    raise SchemaError(f"{where}: {field} {value!r} is not one of: {', '.join(allowed)}")
            if feature.kind == "categorical" and feature.dtype not in _CATEGORICAL_DTYPES:
                raise SchemaError(f"{where}: categorical dtype {feature.dtype!r} is not one of: string, int64, bool")
            if (feature.log or feature.buckets or feature.valid_range) and feature.kind != "numeric":
                raise SchemaError(f"{where}: log, buckets and valid_range apply to numeric features only")

    def of(self, entity: str, consumer: str | None = None) -> tuple[Feature, ...]:
        """The features of `entity` ("user" or "item"), only those `consumer` reads if given."""
        return tuple(f for f in self.features if f.entity == entity and (consumer is None or consumer in f.feeds))

    def get(self, name: str) -> Feature:
        return next(f for f in self.features if f.name == name)

    def table_schema(self, entity: str) -> pa.Schema:
        """Arrow schema of the users (`entity="user"`) or items table."""
        key = USER_ID if entity == "user" else ITEM_ID
        return pa.schema([(key, pa.string())] + [(f.name, f.arrow_type()) for f in self.of(entity)])

    def describe(self) -> str:
        """How to name this schema in messages: its file, or its name."""
        return self.source or f"the {self.name} schema"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "rating": self.rating,
            "rating_range": list(self.rating_range),
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> FeatureSchema:
        fields = {f.name for f in dataclasses.fields(Feature)}
        features = []
        for entry in data.get("features", []):
            unknown = set(entry) - fields
            if unknown or "name" not in entry:
                raise SchemaError(
                    f"{source or data.get('name')}: feature {entry.get('name')!r} has unknown keys "
                    f"{sorted(unknown)} or no name; known keys: {', '.join(sorted(fields))}"
                )
            features.append(Feature.from_dict(entry))
        rating_range = tuple(data.get("rating_range", (0.0, 5.0)))
        return cls(data.get("name", "custom"), tuple(features), bool(data.get("rating", True)), rating_range, source)


def load_schema(name_or_path: str) -> FeatureSchema:
    """Reads a schema file, or a built-in one by name (`movielens`, `shop`, `ids`).

    Raises:
        SchemaError: the file is missing or malformed; the message names it.
    """
    path = name_or_path
    if not path.endswith(".json"):
        path = os.path.join(SCHEMA_DIR, f"{name_or_path}.json")
        if not os.path.isfile(path):
            known = sorted(n.removesuffix(".json") for n in os.listdir(SCHEMA_DIR))
            raise SchemaError(f"no built-in schema {name_or_path!r}; built-in: {', '.join(known)}, or a .json path")
    try:
        import tensorflow as tf  # gfile reads local paths and object stores alike

        with tf.io.gfile.GFile(path) as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError, tf.errors.OpError) as error:
        raise SchemaError(f"cannot read feature schema {path}: {error}") from error
    return FeatureSchema.from_dict(data, source=path)
