"""`python -m recsys_core.report`: aggregation over runs, and one real run end to end."""

import json

import pytest

from recsys_core.report import figures


def _manifest(seed, ndcg, rmse, bias_rmse):
    lists = {
        key: {
            **{metric: ndcg for metric in ("ndcg_at_10", "recall_at_10", "recall_at_100")},
            **{f"recall_at_{k}": ndcg for k in (1, 5, 10, 20, 50, 100)},
            **{f"popularity_share_{b}": 0.2 for b in ("1-10", "11-50", "51-100", "101-200", "201+")},
        }
        for key in ("final", "retrieval", "most_popular", "ease")
    }
    return {
        "seed": seed,
        "reranking": {"reranker": "ranking", "blend_weight": 0.2, "popularity_weight": 0.5, "ease_l2": 300.0},
        "metrics": {
            "ranking": {"rmse": rmse, "mae": 0.7, "global_mean_rmse": 1.12},
            "baselines": {"user_item_bias": {"rmse": bias_rmse, "mae": 0.74, "global_mean_rmse": 1.12}},
            "lists": lists,
        },
    }


def test_seed_42_stands_alone_and_other_seeds_give_mean_and_spread():
    runs = {
        "random": [_manifest(42, 0.40, 0.90, 0.93), _manifest(1, 0.41, 0.91, 0.94), _manifest(2, 0.43, 0.93, 0.96)],
        "temporal": [_manifest(42, 0.30, 1.0, 1.03)],
    }
    built = figures.build_report(runs)
    assert list(built["splits"]) == ["random, seed 42", "random, other seeds", "temporal"]
    tutorial = built["splits"]["random, seed 42"]["systems"]
    assert tutorial[figures.SYSTEMS["final"]]["ndcg_at_10"] == {"mean": 0.40, "std": 0.0, "values": [0.40]}
    others = built["splits"]["random, other seeds"]["systems"]
    assert others[figures.SYSTEMS["final"]]["ndcg_at_10"]["mean"] == pytest.approx(0.42)
    assert others[figures.SYSTEMS["final"]]["ndcg_at_10"]["std"] == pytest.approx(0.01)  # population std of .41, .43
    assert others["ranking"]["rmse"]["mean"] == pytest.approx(0.92)
    assert others["user + item bias"]["rmse"]["values"] == [0.94, 0.96]
    assert others["global mean"]["rmse"]["mean"] == pytest.approx(1.12)
    curve = built["splits"]["temporal"]["recall_curve"][figures.SYSTEMS["ease"]]
    assert curve == {"k": [1, 5, 10, 20, 50, 100], "recall": [0.30] * 6}
    assert "seed 1: re-ranker ranking at weight 0.2" in built["splits"]["random, other seeds"]["description"]
    json.dumps(built)  # what report.json holds


def test_splits_with_new_users_show_the_lists_over_users_with_and_without_history():
    temporal = _manifest(42, 0.34, 1.0, 1.03)
    for system in temporal["metrics"]["lists"].values():
        system["with_history"] = {"users": 109, "ndcg_at_10": 0.15}
        system["without_history"] = {"users": 192, "ndcg_at_10": 0.51}
    temporal["reranking"]["popularity_window_days"] = 14.0
    built = figures.build_report({"random": [_manifest(42, 0.40, 0.90, 0.93)], "temporal": [temporal]})
    rows = built["splits"]["temporal"]["systems"]
    assert rows[f"{figures.SYSTEMS['final']} · users with history"]["ndcg_at_10"]["mean"] == 0.15
    assert rows[f"{figures.SYSTEMS['ease']} · users without history"]["ndcg_at_10"]["mean"] == 0.51
    assert not any("history" in label for label in built["splits"]["random, seed 42"]["systems"])
    assert "popularity window 14 days" in built["splits"]["temporal"]["description"]


@pytest.mark.slow
def test_report_command_trains_scores_and_writes_both_files(ml100k_path, tmp_path):
    args = ["--output-dir", str(tmp_path), "--seeds", "42", "--splits", "random", "--epochs", "1"]
    args += ["--models", "retrieval,ranking", "--override", f"data.path={ml100k_path}"]
    args += ["--override", "list_ranker.members=1", "--override", "training.refit=false"]
    assert figures.main(args) == 0
    written = json.loads((tmp_path / "report.json").read_text())
    systems = written["splits"]["random, seed 42"]["systems"]
    assert systems["most popular unseen"]["ndcg_at_10"]["mean"] == pytest.approx(0.221, abs=1e-3)
    assert systems["global mean"]["rmse"]["mean"] == pytest.approx(1.1248, abs=1e-3)
    assert 0.0 < systems[figures.SYSTEMS["final"]]["recall_at_10"]["mean"] <= 1.0
    page = (tmp_path / "report.html").read_text()
    assert 'id="metrics-' in page and page.count("data:image/png;base64,") >= 3
    assert "ranking_training.png" in written["images"]
