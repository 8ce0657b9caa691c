"""ScaNN retrieval against the exact kernel: the same contract, a measured recall, the same index every build."""

import numpy as np
import pytest

from recsys_core.serving.ann import ScannConfig, ScannIndex, recall
from recsys_core.serving.scoring import top_k_unseen


@pytest.fixture(scope="module")
def clustered():
    """4 000 items and 300 queries around 40 centres in 16 dimensions (trained embeddings cluster), seen lists."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(40, 16))
    items = (centres[rng.integers(0, 40, 4000)] + 0.5 * rng.normal(size=(4000, 16))).astype(np.float32)
    queries = (centres[rng.integers(0, 40, 300)] + 0.5 * rng.normal(size=(300, 16))).astype(np.float32)
    seen = [rng.choice(4000, size=rng.integers(0, 120), replace=False) for _ in range(300)]
    return items, queries, seen


def test_recall_counts_the_exact_items_the_approximate_lists_hold():
    approximate = np.array([[1, 2, 3], [4, 5, -1]])
    exact = np.array([[3, 2, 9], [4, 6, 7]])
    assert recall(approximate, exact) == (3, 6)


def test_default_partitions_grow_with_the_catalogue():
    assert ScannConfig().resolved(1_000) == (0, 0)  # small catalogues: no partitioning
    assert ScannConfig().resolved(100_000) == (316, 16)
    assert ScannConfig().resolved(4_000) == (63, 16)
    assert ScannConfig(leaves=50, leaves_to_search=80).resolved(100_000) == (50, 50)


def test_scann_keeps_the_exact_kernels_contract_and_finds_most_of_its_items(clustered):
    items, queries, seen = clustered
    scores, indices = ScannIndex(items).top_k(queries, seen, 50)
    _, exact = top_k_unseen(queries, items, seen, 50)
    assert scores.shape == indices.shape == (300, 50)
    for row, excluded in enumerate(seen):
        assert not np.isin(indices[row], excluded).any()  # seen items skipped, even the heavy users'
        assert len(set(indices[row].tolist())) == 50 and (indices[row] >= 0).all()
        assert (np.diff(scores[row]) <= 0).all()
        np.testing.assert_allclose(scores[row], queries[row] @ items[indices[row]].T, rtol=1e-4, atol=1e-4)
    hits, relevant = recall(indices, exact)
    assert hits / relevant >= 0.95


def test_the_same_items_build_the_same_index(clustered):
    items, queries, seen = clustered
    first = ScannIndex(items).top_k(queries, seen, 20)[1]
    np.testing.assert_array_equal(ScannIndex(items).top_k(queries, seen, 20)[1], first)


def test_searching_few_partitions_lowers_the_recall(clustered):
    items, queries, seen = clustered
    _, exact = top_k_unseen(queries, items, seen, 50)
    _, narrow = ScannIndex(items, ScannConfig(leaves=60, leaves_to_search=1, reorder=1)).top_k(queries, seen, 50)
    hits, relevant = recall(narrow, exact)
    assert hits / relevant < 0.9  # what the job's recall gate exists to catch
