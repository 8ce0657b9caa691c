"""Labelled composite transforms of the batch job. `expand` only wires; `recsys_core.recommend` computes."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from jobs.inputs import read_block, read_items
from recsys_core import outputs
from recsys_core.recommend import (
    BundleScorer,
    ItemIndex,
    RecommendSettings,
    UserBlock,
    build_item_index,
    recommend_block,
    similar_items,
)

NAMESPACE = "recsys"
_SCORERS = Shared()  # one loaded bundle per worker process, whatever the number of DoFn instances


class _WithBundle(beam.DoFn):
    """Loads the bundle once per worker process, in `setup`."""

    def __init__(self, bundle: str) -> None:
        self._bundle = bundle

    def setup(self) -> None:
        self.scorer = _SCORERS.acquire(lambda: BundleScorer(self._bundle), tag=self._bundle)


class _EmbedItemsFn(_WithBundle):
    def process(self, items_path: str):
        yield build_item_index(self.scorer, *read_items(items_path))


class _RecommendFn(_WithBundle):
    def __init__(self, bundle: str, settings: RecommendSettings) -> None:
        super().__init__(bundle)
        self._settings = settings
        self._counters = {
            name: Metrics.counter(NAMESPACE, name)
            for name in ("users_scored", "fallback_users", "items_excluded", "users_short_of_final_k")
        }

    def process(self, block: UserBlock, index: ItemIndex):
        recommendations, embeddings, counts = recommend_block(self.scorer, block, index, self._settings)
        for name, value in counts.items():
            self._counters[name].inc(value)
        yield recommendations
        yield beam.pvalue.TaggedOutput(outputs.USER_EMBEDDINGS, embeddings)


class ReadUserBlocks(beam.PTransform):
    """Staged block files -> `UserBlock`s (users with their seen items), spread over workers."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self._paths = paths

    def expand(self, pipeline):
        paths = pipeline | "Paths" >> beam.Create(self._paths, reshuffle=False) | "Spread" >> beam.Reshuffle()
        return paths | "Read" >> beam.Map(read_block)


class EmbedItems(beam.PTransform):
    """The staged items file -> one `ItemIndex` of all item embeddings and popularity."""

    def __init__(self, bundle: str, items_path: str) -> None:
        super().__init__()
        self._bundle, self._items_path = bundle, items_path

    def expand(self, pipeline):
        items = pipeline | "Path" >> beam.Create([self._items_path], reshuffle=False)
        return items | "CandidateTower" >> beam.ParDo(_EmbedItemsFn(self._bundle))


class RecommendUsers(beam.PTransform):
    """User blocks -> recommendations tables (main output) and user embeddings (tagged).

    Per block: query tower, exact top-K over all items with seen items excluded,
    re-rank, popularity fallback for users the model cannot serve.
    """

    def __init__(self, bundle: str, settings: RecommendSettings, index) -> None:
        super().__init__()
        self._bundle, self._settings, self._index = bundle, settings, index

    def expand(self, blocks):
        recommend = _RecommendFn(self._bundle, self._settings)
        return blocks | "EmbedRetrieveRerank" >> beam.ParDo(
            recommend, index=beam.pvalue.AsSingleton(self._index)
        ).with_outputs(outputs.USER_EMBEDDINGS, main=outputs.RECOMMENDATIONS)


class SimilarItems(beam.PTransform):
    """`ItemIndex` -> item-to-item neighbours table."""

    def __init__(self, k: int, model_version: str) -> None:
        super().__init__()
        self._k, self._version = k, model_version

    def expand(self, index):
        return index | "Neighbours" >> beam.Map(similar_items, self._k, self._version)


class ItemEmbeddings(beam.PTransform):
    """`ItemIndex` -> item embeddings table."""

    def __init__(self, model_version: str) -> None:
        super().__init__()
        self._version = model_version

    def expand(self, index):
        return index | "ToTable" >> beam.Map(
            lambda i, version: outputs.embeddings_table(
                outputs.ITEM_EMBEDDINGS_SCHEMA, i.items["item_id"], i.embeddings, version
            ),
            self._version,
        )


class WriteTable(beam.PTransform):
    """Arrow tables -> Parquet files under `prefix`, counting rows written."""

    def __init__(self, table: str, prefix: str) -> None:
        super().__init__()
        self._table, self._prefix = table, prefix

    def expand(self, tables):
        rows = Metrics.counter(NAMESPACE, f"rows_written_{self._table}")

        def count(table: pa.Table) -> pa.Table:
            rows.inc(table.num_rows)
            return table

        return (
            tables
            | "CountRows" >> beam.Map(count)
            | "Parquet"
            >> beam.io.WriteToParquetBatched(
                self._prefix, schema=outputs.SCHEMAS[self._table], file_name_suffix=".parquet"
            )
        )
