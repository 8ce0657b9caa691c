"""End to end through the real entry point, `train.py`."""

import json
import os

import pytest

import train


def _bundles(root):
    return sorted(entry for entry in os.listdir(root) if entry != "LATEST") if os.path.isdir(root) else []


def test_smoke_run_writes_a_complete_bundle(tmp_path):
    assert train.main(["--experiment", "smoke", "--output-dir", str(tmp_path), "--verbose", "0"]) == 0
    (version,) = _bundles(tmp_path)
    assert (tmp_path / "LATEST").read_text() == version
    bundle = tmp_path / version
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["bundle_version"] == version
    assert manifest["models"] == ["retrieval", "ranking", "dlrm"]
    assert manifest["data_lineage"]["source"] == "synthetic"
    assert manifest["vocabulary_sizes"]["user_id"] == 300
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics == manifest["metrics"]
    assert 0 < metrics["ranking"]["rmse"] < metrics["ranking"]["global_mean_rmse"]
    for name in ("retrieval", "ranking", "dlrm"):
        assert (bundle / "plots" / f"{name}_training.png").stat().st_size > 1000
        assert (bundle / "checkpoints" / name / "epoch-02.index").exists()
        assert any(files for _, _, files in os.walk(bundle / "tensorboard" / name))
    assert (bundle / "plots" / "dlrm_interactions.png").stat().st_size > 1000
    assert (bundle / "saved_model" / "saved_model.pb").exists()


def test_real_movielens_ranking_beats_the_global_mean(ml100k_path, tmp_path):
    args = ["--data-path", ml100k_path, "--models", "ranking", "--epochs", "2", "--output-dir", str(tmp_path)]
    assert train.main(args + ["--verbose", "0"]) == 0
    metrics = json.loads((tmp_path / _bundles(tmp_path)[0] / "metrics.json").read_text())["ranking"]
    assert metrics["global_mean_rmse"] == pytest.approx(1.1248, abs=1e-3)  # the tutorials' split
    assert metrics["rmse"] < 0.96


def test_missing_data_stops_with_a_message_and_writes_nothing(tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    code = train.main(["--data-path", str(missing), "--output-dir", str(tmp_path / "runs")])
    assert code == 1
    assert f"MovieLens data not found at {missing}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_bad_flag_value_is_named(tmp_path, capsys):
    assert train.main(["--override", "ranking.l2=lots", "--output-dir", str(tmp_path)]) == 2
    assert "'lots' is not a valid float" in capsys.readouterr().err
