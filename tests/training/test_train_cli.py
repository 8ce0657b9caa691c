"""End to end through the real entry point, `train.py`."""

import json
import os
import re
import subprocess
import sys
import uuid

import pandas as pd
import pytest
import tensorflow as tf

import train
from tests.support import REPO


def _bundles(root):
    return sorted(entry for entry in os.listdir(root) if entry != "LATEST") if os.path.isdir(root) else []


def test_smoke_run_writes_a_complete_bundle_and_logs_a_person_reads(tmp_path):
    # As a scheduler runs it: stdout and stderr are files, not a terminal.
    command = [sys.executable, "train.py", "--experiment", "smoke", "--output-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stdout  # one line per epoch, no progress bars
    assert "Epoch 2/2" in done.stdout
    native = re.findall(r"^[IWEF]\d{4} .*$|^.*(?:InitializeLog|cuInit).*$", done.stderr, re.M)
    assert not native, native  # C++ (absl) notices of TensorFlow on a CPU machine
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == len(set(warnings)), warnings
    assert "get_config" not in done.stderr  # every custom layer and model has one (none muted)
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
        assert (bundle / "checkpoints" / "fit" / name / "epoch-02.index").exists()
        assert any(files for _, _, files in os.walk(bundle / "tensorboard" / "fit" / name))
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


def test_bundles_on_a_non_local_file_system_go_from_training_to_the_job(tmp_path, capfd):
    """TF's in-memory `ram://` file system stands in for gs://: the same `tf.io.gfile` calls, no network.
    The example files the fits read go there too, and are removed at the end."""
    from jobs import batch_recommend
    from recsys_core import bundle
    from recsys_core.serving import outputs

    root, scratch = f"ram://runs-{uuid.uuid4().hex}", f"ram://scratch-{uuid.uuid4().hex}"
    args = ["--experiment", "smoke", "--models", "retrieval,ranking", "--output-dir", root, "--verbose", "0"]
    assert train.main([*args, "--override", f"training.examples_dir={scratch}"]) == 0
    assert f"example files: {scratch}/examples-" in capfd.readouterr().err
    assert not tf.io.gfile.exists(scratch) or not tf.io.gfile.listdir(scratch)
    version = bundle.read_text(f"{root}/LATEST")
    assert tf.io.gfile.listdir(root) == sorted(["LATEST", version])  # published, no staging left behind
    remote = f"{root}/{version}"
    for path in ("saved_model/saved_model.pb", "manifest.json", "plots/ranking_training.png"):
        assert tf.io.gfile.exists(f"{remote}/{path}"), path
    assert tf.io.gfile.glob(f"{remote}/checkpoints/fit/ranking/epoch-02.index")
    assert [f for _, _, files in tf.io.gfile.walk(f"{remote}/tensorboard/refit/retrieval") for f in files]

    local = tmp_path / "copy"
    bundle.copy_tree(remote, str(local))
    lists = {}
    for name, source in (("remote", root), ("local", str(local))):
        output = tmp_path / name
        batch_recommend.run(["--bundle", source, "--output", str(output), "--run-date", "2026-11-22"])
        lists[name] = outputs.read_published(str(output), outputs.RECOMMENDATIONS).to_pandas()
    assert len(lists["remote"]) == 300 * 20  # every synthetic user, a full list each
    pd.testing.assert_frame_equal(lists["remote"].drop(columns="run_id"), lists["local"].drop(columns="run_id"))


def test_out_of_core_parquet_runs_end_to_end_and_scores_a_user_sample(ml100k, tmp_path):
    """MovieLens-100K as sharded Parquet, streamed (`--out-of-core`): every rating trains the models, the
    protocol scores the users of a 30 000-rating sample, and the lists still beat most-popular."""
    import pyarrow.parquet as pq

    data = tmp_path / "warehouse"
    (data / "interactions").mkdir(parents=True)
    for shard in range(4):
        pq.write_table(ml100k.ratings.slice(shard * 25_000, 25_000), data / "interactions" / f"part-{shard}.parquet")
    pq.write_table(ml100k.users, data / "users.parquet")
    pq.write_table(ml100k.items, data / "items.parquet")
    args = ["--data-source", "parquet", "--data-path", str(data), "--schema", "movielens", "--out-of-core"]
    args += ["--models", "retrieval,ranking", "--epochs", "2", "--output-dir", str(tmp_path / "runs")]
    args += ["--override", "data.protocol_ratings=30000", "--override", "list_ranker.members=1"]
    assert train.main([*args, "--verbose", "0"]) == 0
    manifest = json.loads((tmp_path / "runs" / _bundles(tmp_path / "runs")[0] / "manifest.json").read_text())
    split = manifest["split"]
    assert split["fit"] + split["validation"] + split["test"] == 100_000
    assert abs(split["test"] - 20_000) < 600 and manifest["data_lineage"]["num_ratings"] == 100_000
    sample = manifest["protocol_sample"]
    assert 25_000 < sample["ratings"] <= 30_000 and sample["of_users"] == 943
    metrics = manifest["metrics"]
    assert metrics["ranking"]["rmse"] < 0.96
    assert metrics["lists"]["final"]["ndcg_at_10"] > 1.3 * metrics["lists"]["most_popular"]["ndcg_at_10"]
    assert manifest["vocabulary_sizes"]["user_id"] == 943
