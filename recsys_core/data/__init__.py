"""Data sources, splits and tf.data input pipelines.

Every source yields `InteractionData` (see `tables.py`); `load_data` picks one
from a `DataConfig`.
"""

from __future__ import annotations

from recsys_core.config import DataConfig
from recsys_core.data.tables import DataError, InteractionData


def load_data(config: DataConfig) -> InteractionData:
    """Reads the interactions the config names (`grouplens`, `tfds`, `parquet` or `synthetic`)."""
    if config.source == "grouplens":
        from recsys_core.data.grouplens import read_grouplens

        return read_grouplens(config.path)
    if config.source == "tfds":
        from recsys_core.data.tfds_source import read_tfds

        return read_tfds(config.tfds_name)
    if config.source == "parquet":
        from recsys_core.data.parquet_source import read_parquet_tables

        return read_parquet_tables(config.path)
    if config.source == "synthetic":
        from recsys_core.data.synthetic import synthetic_interactions

        return synthetic_interactions(
            config.synthetic_users,
            config.synthetic_items,
            config.synthetic_interactions_per_user,
            config.synthetic_seed,
        )
    raise ValueError(f"data.source={config.source!r} is not one of: grouplens, tfds, parquet, synthetic")


__all__ = ["DataError", "InteractionData", "load_data"]
