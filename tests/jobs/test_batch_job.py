"""The Beam job on the DirectRunner, end to end on MovieLens-100K."""

import dataclasses
import glob
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from jobs import batch_recommend
from jobs.gate import GateError
from recsys_core.data import DataError
from recsys_core.data.movielens import movielens_schema
from recsys_core.features.arrays import feature_arrays, item_inputs, query_arrays
from recsys_core.serving import outputs
from tests.support import REPO, published

RUN_DATE = "2026-11-22"
FINAL_K = 20


def _run(bundle, output, *extra):
    return batch_recommend.run(["--bundle", bundle, "--output", str(output), "--run-date", RUN_DATE, *extra])


@pytest.fixture(scope="module")
def job(ml100k_bundle, tmp_path_factory):
    output = tmp_path_factory.mktemp("tables")
    # The bundle's weights for `ranking` (its default, `auto`, may choose no re-ranker: see test_evaluation).
    manifest = _run(ml100k_bundle, output, "--reranker", "ranking")
    recommendations = published(output, outputs.RECOMMENDATIONS).sort_values(["user_id", "rank"])
    return output, manifest, recommendations.reset_index(drop=True)


def test_every_user_gets_final_k_ranked_unseen_real_items(job, ml100k):
    _, manifest, recs = job
    assert recs["user_id"].nunique() == 943
    assert (recs.groupby("user_id").size() == FINAL_K).all()
    assert (recs.groupby("user_id")["rank"].apply(list) == [list(range(1, FINAL_K + 1))] * 943).all()
    # Ordered by the final score, which blends the ranking and retrieval scores.
    assert (recs.groupby("user_id")["score"].diff().dropna() <= 1e-6).all()
    assert manifest["parameters"]["reranker"] == "ranking"
    # Scored in 2026 with a model of 1998 ratings: predictions stay on the rating scale.
    assert recs["ranking_score"].between(0.5, 5.5).all()
    assert set(recs["source"]) == {"model"}
    rated = set(zip(ml100k.ratings["user_id"].to_pylist(), ml100k.ratings["item_id"].to_pylist(), strict=True))
    assert not any((u, i) in rated for u, i in zip(recs["user_id"], recs["item_id"], strict=True))
    assert set(recs["item_id"]) <= set(ml100k.items["item_id"].to_pylist())
    assert manifest["counters"]["users_scored"] == 943
    assert manifest["counters"]["items_excluded"] == 100_000
    assert manifest["row_counts"][outputs.RECOMMENDATIONS] == 943 * FINAL_K


def test_all_tables_are_published_together_behind_one_pointer(job):
    output, manifest, _ = job
    pointer = json.loads((output / "_published" / f"dt={RUN_DATE}.json").read_text())
    assert pointer["manifest"] == manifest
    assert json.loads((output / "_published" / "latest.json").read_text()) == pointer
    for table, rows in (
        (outputs.RECOMMENDATIONS, 943 * FINAL_K),
        (outputs.USER_EMBEDDINGS, 943),
        (outputs.ITEM_EMBEDDINGS, 1682),
        (outputs.SIMILAR_ITEMS, 1682 * 20),
        (outputs.DEAD_LETTER, 0),
    ):
        files = manifest["tables"][table]["files"]
        paths = [f"{table}/dt={RUN_DATE}/v={pointer['version']}/{f['name']}" for f in files]
        assert pointer["files"][table] == paths
        assert sum(f["rows"] for f in files) == rows == manifest["row_counts"][table]
        for path, described in zip(paths, files, strict=True):  # the manifest's hashes are the files' bytes
            assert hashlib.sha256((output / path).read_bytes()).hexdigest() == described["sha256"]
        table_rows = outputs.read_published(str(output), table)
        assert table_rows.num_rows == rows and table_rows.schema.equals(outputs.SCHEMAS[table])
    assert not (output / "_staging").exists() or not list((output / "_staging").iterdir())
    [record] = [json.loads(p.read_text()) for p in (output / "_runs").iterdir()]
    assert record["version"] == pointer["version"]
    assert record["status"] == "succeeded" and record["run_id"] == manifest["run_id"]
    assert record["counters"]["users_scored"] == 943 and record["manifest_sha256"]
    embeddings = outputs.read_published(str(output), outputs.ITEM_EMBEDDINGS)["embedding"].to_pylist()
    assert len(embeddings[0]) == 32 and np.isfinite(embeddings).all()


def test_similar_items_exclude_the_item_itself(job):
    output, _, _ = job
    similar = published(output, outputs.SIMILAR_ITEMS)
    assert (similar["item_id"] != similar["similar_item_id"]).all()
    ordered = similar.sort_values(["item_id", "rank"])
    assert (ordered.groupby("item_id")["score"].diff().dropna() <= 1e-6).all()


def test_recommendations_equal_an_in_process_computation(job, ml100k, ml100k_bundle):
    """Recomputes every list with plain TF and numpy from the bundle's signatures and the README's policy:
    each user queried at their last rating with their last `history_length` items (same-second ratings
    in item id order), top-100 unseen by dot
    product, then ordered by `w * z(rating) + (1 - w) * z(retrieval) + p * z(log(1 + count))` over the
    user's candidates."""
    _, manifest, recs = job
    model = tf.saved_model.load(f"{ml100k_bundle}/saved_model")
    parameters = manifest["parameters"]
    reranker, weight = parameters["reranker"], parameters["blend_weight"]
    length = parameters["query_policy"]["history_length"]
    users, items = ml100k.users, ml100k.items
    ratings = ml100k.ratings.to_pandas().sort_values(["timestamp", "item_id"], kind="stable")
    by_user = ratings.groupby("user_id")
    user_ids = users["user_id"].to_pylist()
    last_time = by_user["timestamp"].max()[user_ids].to_numpy()
    recent = by_user["item_id"].apply(lambda m: [i.encode() for i in m.tolist()[-length:]])[user_ids]
    history = np.full((len(user_ids), max(map(len, recent))), b"", dtype=object)
    for row, ids in enumerate(recent):
        history[row, : len(ids)] = ids
    schema = movielens_schema()
    signatures = json.loads((Path(ml100k_bundle) / "manifest.json").read_text())["signatures"]

    def call(name, arrays):
        return model.signatures[name](**_tensors({k: arrays[k] for k in signatures[name]["inputs"]}))

    queries = call("query_embedding", query_arrays(users, schema, last_time, history))
    candidates = call("candidate_embedding", feature_arrays(items, schema, item_inputs(schema)))
    scores = tf.matmul(queries["embedding"], candidates["embedding"], transpose_b=True).numpy()
    user_index = {u: i for i, u in enumerate(user_ids)}
    item_index = {m: i for i, m in enumerate(items["item_id"].to_pylist())}
    for user, movie in zip(ratings["user_id"], ratings["item_id"], strict=True):
        scores[user_index[user], item_index[movie]] = -np.inf
    retrieval, top = (t.numpy() for t in tf.math.top_k(scores, k=100))
    rows = np.repeat(np.arange(users.num_rows), 100)
    pairs = {
        **query_arrays(users.take(rows), schema, last_time[rows], history[rows]),
        **feature_arrays(items.take(top.ravel()), schema, item_inputs(schema)),
    }
    rated = call(reranker, pairs)["rating"].numpy().reshape(-1, 100)

    def z(values):
        return (values - values.mean(axis=1, keepdims=True)) / values.std(axis=1, keepdims=True)

    def count(rows):
        return rows["item_id"].value_counts().reindex(items["item_id"].to_pylist(), fill_value=0).to_numpy()

    # Popularity as of the newest rating: in the bundle's window (ties by all-time counts), or all time.
    counts, window = count(ratings), parameters["popularity_window_days"]
    if window:
        newest = ratings["timestamp"].max()
        counts = count(ratings[ratings["timestamp"] > newest - window * 86_400]) + counts / (counts.max() + 1)
    prior = z(np.log1p(counts[top].astype(np.float64)))
    final = weight * z(rated.astype(np.float64)) + (1 - weight) * z(retrieval.astype(np.float64))
    final += parameters["popularity_weight"] * prior
    expected = {}
    for row, user in enumerate(user_ids):
        order = np.lexsort((top[row], -retrieval[row], -final[row]))[:FINAL_K]
        expected[user] = [items["item_id"][int(i)].as_py() for i in top[row][order]]
    ours = recs.groupby("user_id")["item_id"].apply(list).to_dict()
    assert ours == expected


def _tensors(arrays):
    return {name: tf.constant(values) for name, values in arrays.items()}


@pytest.mark.parametrize(
    "flags",
    [
        ["--item-shard-size", "300"],
        ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
        ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing", "--item-shard-size", "500"],
        ["--shuffle", "beam"],
    ],
    ids=["sharded", "two-workers", "two-workers-sharded", "group-by-key-shuffle"],
)
def test_sharded_and_multi_process_runs_give_the_same_tables(job, ml100k_bundle, tmp_path, flags):
    _, _, recs = job
    manifest = _run(ml100k_bundle, tmp_path, "--reranker", "ranking", "--block-size", "200", *flags)
    again = published(tmp_path, outputs.RECOMMENDATIONS).sort_values(["user_id", "rank"]).reset_index(drop=True)
    columns = ["user_id", "rank", "item_id", "source", "retrieval_score"]
    pd.testing.assert_frame_equal(again[columns], recs[columns])
    np.testing.assert_allclose(again["ranking_score"], recs["ranking_score"], rtol=1e-5)
    assert manifest["row_counts"] == _manifest_counts(job)


def _manifest_counts(job):
    return job[1]["row_counts"]


@pytest.mark.parametrize(
    ("flags", "ordered_by"),
    [
        (["--reranker", "none", "--popularity-weight", "0"], "retrieval_score"),
        (["--reranker", "dlrm", "--blend-weight", "1", "--popularity-weight", "0"], "ranking_score"),
        (["--reranker", "ranking", "--blend-weight", "0", "--popularity-weight", "0"], "retrieval_score"),
    ],
)
def test_other_rerankers(ml100k_bundle, tmp_path, flags, ordered_by):
    manifest = _run(ml100k_bundle, tmp_path, "--final-k", "5", "--top-k", "10", *flags)
    recs = published(tmp_path, outputs.RECOMMENDATIONS).sort_values(["user_id", "rank"])
    assert manifest["row_counts"][outputs.RECOMMENDATIONS] == 943 * 5
    assert (recs.groupby("user_id")[ordered_by].diff().dropna() <= 1e-6).all()
    assert recs["ranking_score"].isna().all() == (flags[1] == "none")


def _each_at_most(limit: int):
    """A Beam matcher: every element is at most `limit`; a failure names those that are not."""

    from apache_beam.testing.util import BeamAssertException

    def check(actual):
        larger = sorted(value for value in actual if value > limit)
        if larger:
            raise BeamAssertException(f"{len(larger)} elements above {limit}: {larger[:10]}")

    return check


@pytest.mark.parametrize("spill", [True, False], ids=["files", "group-by-key"])
def test_composites_under_test_pipeline(ml100k_bundle, ml100k, tmp_path, spill):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from jobs.sources import JobInputs
    from jobs.transforms import Activity, BuildUserBlocks, CheckRows, EmbedItems, ReadTable, RecommendUsers
    from recsys_core.data.activity import item_activity
    from recsys_core.data.tables import item_counts
    from recsys_core.serving.recommend import RecommendSettings
    from recsys_core.serving.validation import Rules

    users = ml100k.users.slice(0, 300)
    ratings = ml100k.ratings.filter(pa.compute.is_in(ml100k.ratings["user_id"], value_set=users["user_id"]))
    inputs = JobInputs(
        {}, {"interactions": ratings, "users": users, "items": ml100k.items}, 300, {"source": "t"}, {}, {}
    )
    rules = Rules(ml100k.schema, latest_timestamp=2_000_000_000)
    settings = RecommendSettings(top_k=30, final_k=7, reranker="dlrm", timestamp=893_000_000, run_id="t")
    item_ids = ml100k.items["item_id"]

    def as_lists(activity):
        return [activity.popularity.tolist(), activity.recent.tolist(), activity.first_seen.tolist(), activity.newest]

    with TestPipeline() as pipeline:
        checked = {
            t: pipeline | f"Read{t}" >> ReadTable(inputs, t) | f"Check{t}" >> CheckRows(t, rules)
            for t in ("interactions", "users", "items")
        }
        index = (checked["items"]["rows"] | EmbedItems(ml100k_bundle, rules))["index"]
        grouped = (checked["users"]["rows"], checked["interactions"]["rows"]) | BuildUserBlocks(
            rules, True, buckets=3, block_size=64, max_seen=10_000, index=index, spill=str(tmp_path) if spill else None
        )
        activity = checked["interactions"]["rows"] | Activity(index)
        assert_that(
            activity | beam.Map(as_lists),
            equal_to([as_lists(item_activity(ratings, item_ids))]),
            label="ActivityAsInTraining",
        )
        # A 14-day window, as training's protocol computes it from the same rows.
        recent = checked["interactions"]["rows"] | "RecentActivity" >> Activity(index, 14.0)
        expected_recent = item_activity(ratings, item_ids, 14.0)
        counts = item_counts(ratings, item_ids)
        assert 0 < (expected_recent.popularity >= 1).sum() < (counts >= 1).sum()  # the window counts fewer
        assert_that(
            recent | "RecentAsLists" >> beam.Map(as_lists),
            equal_to([as_lists(expected_recent)]),
            label="RecentActivityAsInTraining",
        )
        sizes = grouped["blocks"] | "BlockSizes" >> beam.Map(lambda named: named[1].users.num_rows)
        assert_that(sizes, _each_at_most(64), label="BlocksOfAtMost64")
        scored = grouped["blocks"] | RecommendUsers(ml100k_bundle, settings, index, activity)
        rows = scored[outputs.RECOMMENDATIONS] | "Rows" >> beam.FlatMap(lambda named: named[1].to_pylist())
        per_user = rows | "ByUser" >> beam.Map(lambda r: (r["user_id"], r["rank"])) | beam.combiners.Count.PerKey()
        counts = per_user | "Counts" >> beam.Values() | "DistinctCounts" >> beam.Distinct()
        assert_that(counts, equal_to([7]), label="SevenRowsEach")
        assert_that(per_user | "Users" >> beam.Keys(), equal_to(users["user_id"].to_pylist()), label="EveryUser")
        dims = scored[outputs.USER_EMBEDDINGS] | "Dims" >> beam.Map(lambda named: len(named[1]["embedding"][0]))
        assert_that(dims | "DistinctDims" >> beam.Distinct(), equal_to([32]), label="EmbeddingWidth")
        dead = [checked[t]["dead"] for t in checked] + [grouped["dead"]]
        assert_that(dead | beam.Flatten() | beam.Map(len), equal_to([]), label="NoDeadLetters")


def test_run_accepts_a_test_pipeline(ml100k_bundle, tmp_path):
    from apache_beam.testing.test_pipeline import TestPipeline

    manifest = batch_recommend.run(
        ["--bundle", ml100k_bundle, "--output", str(tmp_path), "--run-date", RUN_DATE, "--final-k", "3"],
        pipeline=TestPipeline(),
    )
    assert manifest["row_counts"][outputs.RECOMMENDATIONS] == 943 * 3
    assert manifest["input_rows"]["interactions"] == {"read": 100_000, "used": 100_000, "dead_lettered": 0}


def test_bad_bundles_stop_before_any_beam_work(tmp_path, capsys):
    output = tmp_path / "out"
    with pytest.raises(ValueError, match="does not exist; train one"):
        _run(str(tmp_path / "missing"), output)
    (tmp_path / "incomplete").mkdir()
    (tmp_path / "incomplete" / "vocabulary.json").write_text("{}")
    assert batch_recommend.main(["--bundle", str(tmp_path / "incomplete"), "--output", str(output)]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--run-date", "2026-13-01"], "--run-date '2026-13-01' is not a date"),
        (["--run-date", "20261122"], "--run-date '20261122' is not a date of the form YYYY-MM-DD"),
        (["--run-date", "2026-W48-1"], "--run-date '2026-W48-1' is not a date of the form YYYY-MM-DD"),
        (["--run-date", "2026-1-05"], "is not a date of the form YYYY-MM-DD"),
        (["--max-bundle-metric", "ranking.rmse"], "--max-bundle-metric 'ranking.rmse' is not of the form"),
        (["--min-bundle-metric", "ranking.rmse=nan"], "--min-bundle-metric 'ranking.rmse=nan' is not of the form"),
        (["--min-distinct-item-share", "2"], "--min-distinct-item-share"),
        (["--lease-seconds", "0"], "--lease-seconds must be at least 1"),
        (["--final-k", "50", "--top-k", "10"], "--final-k 50 exceeds --top-k 10"),
        (["--reranker", "dcn"], "--reranker 'dcn' is not in bundle"),
        (["--blend-weight", "1.5"], "--blend-weight must be within 0..1"),
        (["--popularity-weight", "-1"], "--popularity-weight must be at least 0"),
        (["--popularity-window-days", "-7"], "--popularity-window-days must be at least 0"),
        (["--top-k", "0"], "--top-k must be at least 1"),
    ],
)
def test_bad_options_are_named(ml100k_bundle, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        batch_recommend.run(["--bundle", ml100k_bundle, "--output", str(tmp_path / "out"), *flags])


def test_a_list_ranker_reading_other_features_is_refused_at_launch(ml100k_bundle):
    """A bundle from a version whose list ranker read other features (say, before the time features)."""
    from jobs.options import _reranking
    from recsys_core.bundle import read_manifest
    from recsys_core.manifest import Signature

    current = read_manifest(ml100k_bundle)
    manifest = dataclasses.replace(
        current,
        path="old",
        signatures={**current.signatures, "list": Signature({}, {})},
        reranking=dataclasses.replace(current.reranking, list_ranker_features=("rating",)),
    )
    with pytest.raises(ValueError, match=r"bundle old: its list ranker reads the features \['rating'\].*retrain"):
        _reranking(manifest, "list", None, None)
    chosen = current.reranking  # the rest of the bundle still serves, with the weights chosen for it
    expected = ("none", chosen.blend_weights["none"], chosen.popularity_weights["none"])
    assert _reranking(manifest, "none", None, None) == expected


def test_unwritable_output_is_reported(ml100k_bundle, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="--output .*a-file/tables is not writable"):
        _run(ml100k_bundle, blocker / "tables")


def test_unreadable_users_table_is_reported_before_the_pipeline(ml100k_bundle, tmp_path):
    data = tmp_path / "warehouse"
    data.mkdir()
    interactions = pa.table({"user_id": ["1"], "item_id": ["1"], "rating": [4.0], "timestamp": [880_000_000]})
    pq.write_table(interactions, data / "interactions.parquet")
    (data / "users.parquet").write_bytes(b"PAR1 this is not parquet")
    output = tmp_path / "out"
    with pytest.raises(DataError, match=r"no file of the users table .* can be read: .*users\.parquet: Parquet magic"):
        _run(ml100k_bundle, output, "--data-source", "parquet", "--data-path", str(data))
    assert [p.name for p in output.iterdir()] == ["_runs"]  # only the run's record, which says why
    [record] = [json.loads(p.read_text()) for p in (output / "_runs").iterdir()]
    assert record["status"] == "failed" and "users.parquet" in record["reason"]


def test_sdist_carries_every_module_the_job_imports(tmp_path):
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (archive,) = tmp_path.glob("*.tar.gz")
    names = {name.split("/", 1)[1] for name in tarfile.open(archive).getnames() if "/" in name}
    modules = {
        os.path.relpath(p, REPO)
        for d in ("jobs", "recsys_core")
        for p in glob.glob(f"{REPO}/{d}/**/*.py", recursive=True)
    }
    assert modules <= names
    assert "train.py" in names and "setup.py" in names


def test_scann_index_ships_near_exact_lists_with_its_recall_measured_and_gated(job, ml100k_bundle, tmp_path):
    _, _, exact = job
    # ML-100K's 1 682 items are below ScaNN's default partitioning size: ask for partitions, so the search is
    # approximate, and sample every 4th user of the block for the recall.
    scann = ["--reranker", "ranking", "--index", "scann", "--scann-leaves", "40", "--scann-leaves-to-search", "20"]
    manifest = _run(ml100k_bundle, tmp_path / "first", *scann, "--recall-sample-every", "4")
    retrieval = manifest["retrieval"]
    assert retrieval["index"] == "scann" and retrieval["recall_sampled_items"] == 236 * 100  # 943 users, one block
    assert 0.95 <= retrieval["recall_at_k"] <= 1.0
    recs = published(tmp_path / "first", outputs.RECOMMENDATIONS)
    shared = recs.merge(exact, on=["user_id", "item_id"])
    assert len(shared) / len(exact) >= 0.9  # the final top-20 lists, against the exact index's
    again = _run(ml100k_bundle, tmp_path / "again", *scann, "--recall-sample-every", "4")
    assert again["tables"] == manifest["tables"]  # the same index every build: byte-identical files
    narrow = [*scann[:-1], "1", "--scann-reorder", "1", "--min-recall", "0.99"]
    with pytest.raises(GateError, match="--min-recall 0.99"):
        _run(ml100k_bundle, tmp_path / "narrow", *narrow)
    assert not os.path.exists(outputs.pointer_path(str(tmp_path / "narrow"), RUN_DATE))
