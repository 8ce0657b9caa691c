"""The steps that hold the model bundle on the workers: loading it once per process, embedding the catalogue,
and scoring user blocks a few at a time (`transforms.EmbedItems`, `transforms.RecommendUsers`)."""

from __future__ import annotations

import dataclasses
import os
import threading

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.shared import Shared

from jobs.counters import NON_FINITE_ITEM_EMBEDDINGS, count_dead, counter
from recsys_core.data.activity import ItemActivity
from recsys_core.faults import fault_point
from recsys_core.serving import outputs
from recsys_core.serving.blocks_in_flight import BlocksInFlight
from recsys_core.serving.recommend import BundleScorer, ItemIndex, RecommendSettings, build_item_index, recommend_block

DEAD = "dead"  # the tagged output of dead letters, in every step that makes them
_SCORERS = Shared()  # one loaded bundle per worker process, whatever the number of DoFn instances
_PRELOADED: dict[str, BundleScorer | None] = {}  # keeps each worker's preloaded bundle alive (Shared holds weakly)
_PRELOAD_LOCK = threading.Lock()


def _load_bundle(bundle: str) -> BundleScorer:
    return _SCORERS.acquire(lambda: BundleScorer(bundle), tag=bundle)


def preload_bundle(bundle: str) -> None:
    """Starts loading the bundle in a background thread, once per worker process, so that the first stage
    that scores does not wait for it (loading takes seconds; `WithBundle` then gets the same object)."""
    with _PRELOAD_LOCK:
        if bundle in _PRELOADED:
            return
        _PRELOADED[bundle] = None

    def load() -> None:
        _PRELOADED[bundle] = _load_bundle(bundle)

    threading.Thread(target=load, name="preload-bundle", daemon=True).start()


class WithBundle(beam.DoFn):
    """Loads the bundle once per worker process, in `setup`."""

    def __init__(self, bundle: str) -> None:
        self._bundle = bundle

    def setup(self) -> None:
        self.scorer = _load_bundle(self._bundle)


class EmbedItemsFn(WithBundle):
    """`(items, dead letters)` -> the `ItemIndex` (main) and the dead letters (tagged `DEAD`)."""

    def process(self, deduplicated):
        items, dead = deduplicated
        count_dead(dead)
        index = build_item_index(self.scorer, items)
        broken = ~np.isfinite(index.embeddings).all(axis=1)
        counter(NON_FINITE_ITEM_EMBEDDINGS).inc(int(broken.sum()))
        if broken.any():  # the gate refuses the run; zero vectors let it finish and say why (NaN stops top-K)
            index = dataclasses.replace(index, embeddings=np.where(broken[:, None], 0.0, index.embeddings))
        yield index
        if dead.num_rows:
            yield beam.pvalue.TaggedOutput(DEAD, dead)


class RecommendFn(WithBundle):
    """Scores blocks a few at a time (`BlocksInFlight`), emitting each block's tables in arrival order.

    Every block submitted in a bundle is emitted before the bundle finishes, so a retried bundle loses none.
    """

    def __init__(self, bundle: str, settings: RecommendSettings) -> None:
        super().__init__(bundle)
        self._settings = settings

    def setup(self) -> None:
        super().setup()
        self._with_activity = None  # (index, activity, the index carrying that activity)
        self._flight = BlocksInFlight(self._score, 2 * _tensorflow_threads())

    def start_bundle(self) -> None:
        self._flight.forget()  # a failed bundle's blocks, if any: its retry scores them again

    def process(self, named_block, index: ItemIndex, activity: ItemActivity):
        fault_point("job:score")
        name, block = named_block
        for done in self._flight.submit(name, (block, self._index_with(index, activity))):
            yield from self._emit(*done, lambda value: value)

    def finish_bundle(self):
        for done in self._flight.drain():
            yield from self._emit(*done, GlobalWindows.windowed_value)

    def teardown(self) -> None:
        self._flight.close()

    def _score(self, block_and_index):
        return recommend_block(self.scorer, *block_and_index, self._settings)

    def _emit(self, name: str, result, wrap):
        recommendations, embeddings, counts = result
        for key, value in counts.items():  # users_scored, fallback_users, ..., nan_scores
            counter(key).inc(value)
        yield wrap((name, recommendations))
        yield beam.pvalue.TaggedOutput(outputs.USER_EMBEDDINGS, wrap((name, embeddings)))

    def _index_with(self, index: ItemIndex, activity: ItemActivity) -> ItemIndex:
        """The index carrying `activity`, built once per worker: side inputs are the same objects for
        every block (a new ItemIndex per block would also recompute its cached item-id bytes)."""
        cached = self._with_activity
        if cached is None or cached[0] is not index or cached[1] is not activity:
            cached = (index, activity, dataclasses.replace(index, activity=activity))
            self._with_activity = cached
        return cached[2]


def _tensorflow_threads() -> int:
    """The cores this worker's TensorFlow may use: `TF_NUM_INTRAOP_THREADS` where the job set it per local
    worker, else every core."""
    return int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or os.cpu_count() or 1
