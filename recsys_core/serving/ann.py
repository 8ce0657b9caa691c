"""Approximate top-K retrieval with ScaNN (the optional `[scann]` extra), under the exact kernel's contract.

`ScannIndex.top_k` returns what `scoring.ExactIndex.top_k` returns (scores and item
indices `[queries, k]`, seen items skipped, -inf / -1 padding), so the job can use
either. The bundle keeps its exact `retrieve` signature; this index is built from the
item embeddings by every job run (the batch job embeds every item anyway).

Defaults follow ScaNN's guidance for a catalogue of N items: about sqrt(N) partitions,
a twentieth of them (at least 16) searched per query, asymmetric hashing of 2-dimension
blocks, and the best candidates re-scored exactly in float32. The job measures the
recall these give on every run and refuses to publish below `--min-recall`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from recsys_core.console import native_stderr_silenced
from recsys_core.serving.scoring import NEG_INF

INSTALL_HINT = "pip install '.[scann]' (ScaNN wheels exist for Linux x86-64 and macOS arm64)"


def scann_available() -> bool:
    try:
        import scann  # noqa: F401
    except ImportError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class ScannConfig:
    """ScaNN's knobs; None picks the default for the catalogue size.

    Attributes:
        leaves: partitions of the catalogue (default about sqrt(items); none below 2 000 items).
        leaves_to_search: partitions searched per query (default a twentieth of `leaves`, at least 16).
        reorder: candidates re-scored exactly, as a multiple of the depth asked for (default 4).
    """

    leaves: int | None = None
    leaves_to_search: int | None = None
    reorder: int = 4

    def resolved(self, num_items: int) -> tuple[int, int]:
        """`(leaves, leaves_to_search)` for a catalogue of `num_items` (leaves 0: no partitioning)."""
        leaves = self.leaves if self.leaves is not None else (round(math.sqrt(num_items)) if num_items >= 2000 else 0)
        searched = self.leaves_to_search if self.leaves_to_search is not None else max(16, -(-leaves // 20))
        return leaves, min(searched, leaves)


class ScannIndex:
    """A ScaNN searcher over item embeddings `[items, dim]` by dot product.

    Raises:
        ImportError: ScaNN is not installed (the message says how to install it).
    """

    def __init__(self, items: np.ndarray, config: ScannConfig = ScannConfig()) -> None:
        try:
            import scann
        except ImportError as error:
            raise ImportError(f"--index scann needs ScaNN: {INSTALL_HINT}") from error
        self._items = np.ascontiguousarray(items, np.float32)
        self._config = config
        leaves, self._leaves_to_search = config.resolved(len(self._items))
        builder = scann.scann_ops_pybind.builder(self._items, 1, "dot_product")
        if leaves > 1:
            builder = builder.tree(
                num_leaves=leaves,
                num_leaves_to_search=self._leaves_to_search,
                training_sample_size=len(self._items),
            )
        builder = builder.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(config.reorder)
        # k-means++ from a fixed seed: the same items give the same index, so a rerun writes the
        # same lists (ScaNN's default random initialisation does not).
        text = builder.create_config().replace("RANDOM_INITIALIZATION", "DEFAULT_KMEANS_PLUS_PLUS")
        text = text.replace("partitioning {", "partitioning {\n        clustering_seed: 1", 1)
        with native_stderr_silenced():  # ScaNN logs its training steps through absl, a few lines per build
            self._searcher = scann.scann_ops_pybind.create_searcher(self._items, text)

    def top_k(self, queries: np.ndarray, seen: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k items by dot product, skipping each query's seen items.

        Each query asks ScaNN for `k` plus its seen count (rounded up to a power of two,
        so that queries share calls), drops its seen items and keeps the first k.

        Returns:
            scores `[queries, k]` (descending, ties in ScaNN's order, which the same
            index repeats; -inf where fewer than k were found) and item indices
            `[queries, k]` (-1 there).
        """
        num_items = len(self._items)
        k = min(k, num_items)
        scores = np.full((len(queries), k), NEG_INF, np.float32)
        indices = np.full((len(queries), k), -1, np.int64)
        depths = np.array([min(num_items, 1 << (k + len(s) - 1).bit_length()) for s in seen], np.int64)
        for depth in np.unique(depths):
            rows = np.flatnonzero(depths == depth)
            found, distances = self._searcher.search_batched_parallel(
                np.ascontiguousarray(queries[rows], np.float32),
                final_num_neighbors=int(depth),
                pre_reorder_num_neighbors=int(min(num_items, depth * self._config.reorder)),
                leaves_to_search=self._leaves_to_search or None,
            )
            found = np.asarray(found, np.int64)  # [rows, depth], best first
            values = np.asarray(distances, np.float32)
            # Seen items: each (row, item) key looked up in the sorted keys of the rows' seen items.
            owners = np.repeat(rows, [len(seen[row]) for row in rows])
            seen_keys = np.sort(owners * num_items + np.concatenate([np.asarray(seen[row], np.int64) for row in rows]))
            keys = rows[:, None] * num_items + found
            at = np.minimum(np.searchsorted(seen_keys, keys), max(len(seen_keys) - 1, 0))
            dropped = (found < 0) | (seen_keys[at] == keys if len(seen_keys) else False)
            # The first k kept, in ScaNN's order (best first).
            rank = np.cumsum(~dropped, axis=1)
            picked_row, picked = np.nonzero(~dropped & (rank <= k))
            slot = rank[picked_row, picked] - 1
            scores[rows[picked_row], slot] = values[picked_row, picked]
            indices[rows[picked_row], slot] = found[picked_row, picked]
        return scores, indices


def recall(approximate: np.ndarray, exact: np.ndarray) -> tuple[int, int]:
    """`(hits, relevant)`: how many of the exact lists' items `[users, k]` (-1 empty) the approximate lists hold."""
    hits = sum(len(np.intersect1d(a[a >= 0], e[e >= 0])) for a, e in zip(approximate, exact, strict=True))
    return int(hits), int((exact >= 0).sum())
