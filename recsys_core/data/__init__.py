"""Data sources, splits and tf.data input pipelines.

Every source yields `InteractionData` (see `tables.py`) whose users and items
tables follow a feature schema (`recsys_core/schema.py`); `load_data` picks one
from a `DataConfig`. A run's splits are prepared from it (`prepared.py`), or,
for Parquet data larger than memory, streamed from the files (`streaming.py`).
"""

from __future__ import annotations

from recsys_core.config import DataConfig
from recsys_core.data.tables import DataError, InteractionData
from recsys_core.schema import FeatureSchema, SchemaError, load_schema

# The schema each source produces unless `data.schema` names another (Parquet tables only).
DEFAULT_SCHEMAS = {"grouplens": "movielens", "tfds": "movielens", "synthetic": "movielens", "shop": "shop"}


def resolve_schema(config: DataConfig) -> FeatureSchema:
    """`data.schema` (a built-in name or a .json path), or the source's own schema; Parquet defaults to ids only."""
    return load_schema(config.schema or DEFAULT_SCHEMAS.get(config.source, "ids"))


def load_data(config: DataConfig, schema: FeatureSchema | None = None) -> InteractionData:
    """Reads the interactions the config names (`grouplens`, `tfds`, `parquet`, `synthetic` or `shop`).

    Args:
        config: the data section of the experiment.
        schema: the schema the tables must follow (the bundle's, in the job);
            defaults to `resolve_schema(config)`.

    Raises:
        DataError: a file, row or value is bad, or a column the schema declares is missing.
    """
    schema = schema or resolve_schema(config)
    if config.source == "parquet":
        from recsys_core.data.parquet_source import read_parquet_tables

        return read_parquet_tables(config.path, schema)
    if config.source == "grouplens":
        from recsys_core.data.grouplens import read_grouplens

        data = read_grouplens(config.path)
    elif config.source == "tfds":
        from recsys_core.data.tfds_source import read_tfds

        data = read_tfds(config.tfds_name)
    elif config.source in ("synthetic", "shop"):
        from recsys_core.data.shop import synthetic_shop
        from recsys_core.data.synthetic import synthetic_interactions

        generate = synthetic_shop if config.source == "shop" else synthetic_interactions
        data = generate(
            config.synthetic_users,
            config.synthetic_items,
            config.synthetic_interactions_per_user,
            config.synthetic_seed,
        )
    else:
        raise ValueError(f"data.source={config.source!r} is not one of: grouplens, tfds, parquet, synthetic, shop")
    return data.conform(schema)


__all__ = ["DataError", "InteractionData", "SchemaError", "load_data", "resolve_schema"]
