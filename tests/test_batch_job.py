"""The Beam job on the DirectRunner, end to end on MovieLens-100K."""

import json

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from jobs import batch_recommend
from recsys_core import outputs
from recsys_core.features.schema import ITEM_FEATURES, feature_arrays, query_arrays

RUN_DATE = "2026-11-22"
FINAL_K = 20


def _run(bundle, output, *extra):
    return batch_recommend.run(["--bundle", bundle, "--output", str(output), "--run-date", RUN_DATE, *extra])


@pytest.fixture(scope="module")
def job(ml100k_bundle, tmp_path_factory):
    output = tmp_path_factory.mktemp("tables")
    manifest = _run(ml100k_bundle, output)
    recommendations = pd.read_parquet(output / outputs.RECOMMENDATIONS).sort_values(["user_id", "rank"])
    return output, manifest, recommendations.reset_index(drop=True)


def test_every_user_gets_final_k_ranked_unseen_real_items(job, ml100k):
    _, manifest, recs = job
    assert recs["user_id"].nunique() == 943
    assert (recs.groupby("user_id").size() == FINAL_K).all()
    assert (recs.groupby("user_id")["rank"].apply(list) == [list(range(1, FINAL_K + 1))] * 943).all()
    # Re-ranked: predicted ratings never increase down the list.
    assert (recs.groupby("user_id")["ranking_score"].diff().dropna() <= 0).all()
    assert set(recs["source"]) == {"model"}
    rated = set(zip(ml100k.ratings["user_id"].to_pylist(), ml100k.ratings["movie_id"].to_pylist(), strict=True))
    assert not any((u, i) in rated for u, i in zip(recs["user_id"], recs["item_id"], strict=True))
    assert set(recs["item_id"]) <= set(ml100k.items["movie_id"].to_pylist())
    assert manifest["counters"]["users_scored"] == 943
    assert manifest["counters"]["items_excluded"] == 100_000
    assert manifest["row_counts"][outputs.RECOMMENDATIONS] == 943 * FINAL_K


def test_all_tables_are_partitioned_and_marked_complete(job):
    output, manifest, _ = job
    for table, rows in (
        (outputs.RECOMMENDATIONS, 943 * FINAL_K),
        (outputs.USER_EMBEDDINGS, 943),
        (outputs.ITEM_EMBEDDINGS, 1682),
        (outputs.SIMILAR_ITEMS, 1682 * 20),
    ):
        partition = output / table / f"dt={RUN_DATE}"
        assert (partition / "_SUCCESS").exists()
        assert json.loads((partition / "_manifest.json").read_text())["run_id"] == manifest["run_id"]
        dataset = ds.dataset(output / table, format="parquet", partitioning="hive")
        assert dataset.count_rows() == rows
        assert dataset.schema.remove(dataset.schema.get_field_index("dt")).equals(outputs.SCHEMAS[table])
        assert dataset.to_table(columns=["dt"])["dt"].unique().to_pylist() == [RUN_DATE]
    assert not list((output / "_staging").iterdir())
    embeddings = pq.read_table(output / outputs.ITEM_EMBEDDINGS)["embedding"].to_pylist()
    assert len(embeddings[0]) == 32 and np.isfinite(embeddings).all()


def test_similar_items_exclude_the_item_itself(job):
    output, _, _ = job
    similar = pd.read_parquet(output / outputs.SIMILAR_ITEMS)
    assert (similar["item_id"] != similar["similar_item_id"]).all()
    ordered = similar.sort_values(["item_id", "rank"])
    assert (ordered.groupby("item_id")["score"].diff().dropna() <= 1e-6).all()


def test_recommendations_equal_an_in_process_computation(job, ml100k, ml100k_bundle):
    _, manifest, recs = job
    model = tf.saved_model.load(f"{ml100k_bundle}/saved_model")
    users, items = ml100k.users, ml100k.items
    timestamp = manifest["parameters"]["query_timestamp"]
    queries = model.signatures["query_embedding"](**_tensors(query_arrays(users, np.full(users.num_rows, timestamp))))
    candidates = model.signatures["candidate_embedding"](**_tensors(feature_arrays(items, ITEM_FEATURES)))
    scores = tf.matmul(queries["embedding"], candidates["embedding"], transpose_b=True).numpy()
    user_index = {u: i for i, u in enumerate(users["user_id"].to_pylist())}
    item_index = {m: i for i, m in enumerate(items["movie_id"].to_pylist())}
    for user, movie in zip(ml100k.ratings["user_id"].to_pylist(), ml100k.ratings["movie_id"].to_pylist(), strict=True):
        scores[user_index[user], item_index[movie]] = -np.inf
    retrieval, top = tf.math.top_k(scores, k=100)
    rows = np.repeat(np.arange(users.num_rows), 100)
    pairs = {
        **query_arrays(users.take(rows), np.full(len(rows), timestamp)),
        **feature_arrays(items.take(top.numpy().ravel()), ITEM_FEATURES),
    }
    ratings = model.signatures["ranking"](**_tensors(pairs))["rating"].numpy().reshape(-1, 100)
    expected = {}
    for row, user in enumerate(users["user_id"].to_pylist()):
        order = np.lexsort((top.numpy()[row], -retrieval.numpy()[row], -ratings[row]))[:FINAL_K]
        expected[user] = [items["movie_id"][int(i)].as_py() for i in top.numpy()[row][order]]
    ours = recs.groupby("user_id")["item_id"].apply(list).to_dict()
    assert ours == expected


def _tensors(arrays):
    return {name: tf.constant(values) for name, values in arrays.items()}


def test_multi_process_direct_runner_gives_the_same_tables(job, ml100k_bundle, tmp_path):
    _, _, recs = job
    _run(ml100k_bundle, tmp_path, "--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    again = pd.read_parquet(tmp_path / outputs.RECOMMENDATIONS).sort_values(["user_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        again[["user_id", "rank", "item_id", "source"]], recs[["user_id", "rank", "item_id", "source"]]
    )
    np.testing.assert_allclose(again["ranking_score"], recs["ranking_score"], rtol=1e-5)


@pytest.mark.parametrize("flag", [["--reranker", "none"], ["--reranker", "dlrm"]])
def test_other_rerankers(ml100k_bundle, tmp_path, flag):
    manifest = _run(ml100k_bundle, tmp_path, "--final-k", "5", "--top-k", "10", *flag)
    recs = pd.read_parquet(tmp_path / outputs.RECOMMENDATIONS).sort_values(["user_id", "rank"])
    assert manifest["row_counts"][outputs.RECOMMENDATIONS] == 943 * 5
    score = "retrieval_score" if flag[1] == "none" else "ranking_score"
    assert (recs.groupby("user_id")[score].diff().dropna() <= 1e-6).all()
    assert recs["ranking_score"].isna().all() == (flag[1] == "none")
