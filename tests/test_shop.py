"""A second, non-MovieLens shape of data end to end: the synthetic shop as Parquet tables of a user's own,
described by a schema file, trained with `train.py` and scored by the Beam job through the same commands."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

import train
from jobs import batch_recommend
from recsys_core.data.shop import synthetic_shop
from recsys_core.schema import SCHEMA_DIR
from recsys_core.serving import outputs
from tests.support import published

RUN_DATE = "2026-11-22"


@pytest.fixture(scope="module")
def shop_tables(tmp_path_factory):
    """The shop written as a warehouse export: three Parquet tables and the schema file beside them."""
    root = tmp_path_factory.mktemp("warehouse")
    data = synthetic_shop(num_users=1500, num_items=300, orders_per_user=20, seed=11)
    (root / "interactions").mkdir()
    pq.write_table(data.ratings, root / "interactions" / "part-0.parquet")
    pq.write_table(data.users, root / "users.parquet")
    pq.write_table(data.items, root / "items.parquet")
    shutil.copy(f"{SCHEMA_DIR}/shop.json", root / "my_shop.json")
    return root, data


@pytest.fixture(scope="module")
def shop_bundle(shop_tables, tmp_path_factory):
    root, _ = shop_tables
    output = tmp_path_factory.mktemp("shop-bundles")
    args = ["--data-source", "parquet", "--data-path", str(root), "--schema", str(root / "my_shop.json")]
    args += ["--models", "retrieval,ranking,dlrm,dcn", "--output-dir", str(output), "--verbose", "0"]
    args += ["--override", "retrieval.epochs=8", "--override", "training.refit=false"]
    assert train.main(args + ["--override", "list_ranker.members=1"]) == 0
    return str(output / (output / "LATEST").read_text())


def test_the_shop_trains_every_model_and_its_planted_effects_show(shop_bundle):
    manifest = json.loads(open(f"{shop_bundle}/manifest.json").read())
    assert manifest["feature_schema"]["name"] == "shop"
    metrics = manifest["metrics"]
    lists = metrics["lists"]
    # The models learn what the baselines cannot see: country and age shift taste, brands shift ratings.
    assert lists["final"]["ndcg_at_10"] > 1.2 * lists["most_popular"]["ndcg_at_10"]
    assert lists["retrieval"]["recall_at_100"] > lists["most_popular"]["recall_at_100"]
    bias = metrics["baselines"]["user_item_bias"]["rmse"]
    for name in ("ranking", "dlrm", "dcn"):
        assert metrics[name]["rmse"] < bias, name
    # The signatures take the shop's own columns, as the schema feeds them.
    signatures = manifest["signatures"]
    assert {"category", "brand", "tags", "price", "title"} <= set(signatures["candidate_embedding"]["inputs"])
    assert {"country", "age", "signup_time"} <= set(signatures["query_embedding"]["inputs"])
    assert "title" not in signatures["dlrm"]["inputs"] and "price" in signatures["dlrm"]["inputs"]


def test_the_job_scores_the_shop_and_refuses_tables_that_do_not_match(shop_bundle, shop_tables, tmp_path):
    root, data = shop_tables
    manifest = batch_recommend.run(["--bundle", shop_bundle, "--output", str(tmp_path), "--run-date", RUN_DATE])
    recs = published(tmp_path, outputs.RECOMMENDATIONS)
    assert recs["user_id"].nunique() == data.users.num_rows == manifest["user_count"]
    assert set(recs["item_id"]) <= set(data.items["item_id"].to_pylist())
    assert (recs.groupby("user_id").size() == 20).all()

    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    pq.write_table(data.items.drop_columns(["brand"]), broken / "items.parquet")
    args = ["--bundle", shop_bundle, "--output", str(tmp_path / "out"), "--run-date", RUN_DATE]
    with pytest.raises(ValueError, match=r"items file .*items\.parquet has no column 'brand'.*feature_schema\.json"):
        batch_recommend.run(args + ["--data-path", str(broken)])
    assert not (tmp_path / "out" / outputs.RECOMMENDATIONS).exists()
