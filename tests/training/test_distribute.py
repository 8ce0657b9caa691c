"""Strategies, each run through `train.py` in its own process (device setup is per process)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from recsys_core.distribute import StrategyError, make_strategy
from tests.support import REPO, free_port

SMOKE = [sys.executable, "train.py", "--experiment", "smoke", "--models", "ranking,retrieval", "--verbose", "0"]


def _train(output_dir, *args, env=None, timeout=300):
    result = subprocess.run(
        SMOKE + ["--output-dir", str(output_dir), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return _manifest(output_dir)


def _manifest(output_dir):
    latest = (output_dir / "LATEST").read_text()
    return json.loads((output_dir / latest / "manifest.json").read_text())


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("default"))


def test_mirrored_over_two_cpu_devices_matches_default(default_run, tmp_path):
    mirrored = _train(tmp_path, "--strategy", "mirrored", "--cpu-devices", "2")
    assert (default_run["num_replicas"], mirrored["num_replicas"]) == (1, 2)
    ours, theirs = mirrored["metrics"], default_run["metrics"]
    # The rating loss is a global-batch mean, so both strategies take the same steps.
    assert ours["ranking"]["rmse"] == pytest.approx(theirs["ranking"]["rmse"], abs=0.01)
    # In-batch negatives come from each replica's half batch: close, not identical.
    lists, their_lists = ours["lists"]["retrieval"], theirs["lists"]["retrieval"]
    assert lists["recall_at_50"] == pytest.approx(their_lists["recall_at_50"], abs=0.05)
    assert ours["retrieval"]["factorized_top_50"] == pytest.approx(theirs["retrieval"]["factorized_top_50"], abs=0.05)


def test_mixed_bfloat16_under_mirrored_trains_as_float32_does(default_run, tmp_path):
    """16-bit compute over 2 replicas: the bundle's figures and the job's lists as in float32 on one device."""
    mixed = _train(tmp_path, "--strategy", "mirrored", "--cpu-devices", "2", "--precision", "mixed_bfloat16")
    assert mixed["config"]["training"]["precision"] == "mixed_bfloat16"
    ours, theirs = mixed["metrics"], default_run["metrics"]
    assert ours["ranking"]["rmse"] == pytest.approx(theirs["ranking"]["rmse"], abs=0.02)
    lists, their_lists = ours["lists"]["retrieval"], theirs["lists"]["retrieval"]
    assert lists["recall_at_50"] == pytest.approx(their_lists["recall_at_50"], abs=0.05)


def _multi_worker(output_dir, *args, env=None):
    """Runs `train.py` as 2 local `multi_worker_mirrored` workers; returns each one's (return code, stderr)."""
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    workers = []
    for index in range(2):
        task = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        command = [*SMOKE, "--models", "ranking", "--strategy", "multi_worker_mirrored", "--output-dir", output_dir]
        workers.append(
            subprocess.Popen(
                [*command, *map(str, args)],
                cwd=REPO,
                env={**os.environ, **task, **(env or {})},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [worker.communicate(timeout=400) for worker in workers]
    return [(worker.returncode, stderr) for worker, (_, stderr) in zip(workers, outputs, strict=True)]


def test_multi_worker_mirrored_trains_across_two_local_processes(default_run, tmp_path):
    for code, stderr in _multi_worker(tmp_path):
        assert code == 0, stderr[-3000:]
    # Only the chief (worker 0) publishes a bundle.
    assert sorted(os.listdir(tmp_path)) == sorted(["LATEST", (tmp_path / "LATEST").read_text()])
    manifest = _manifest(tmp_path)
    assert manifest["num_replicas"] == 2
    assert manifest["metrics"]["ranking"]["rmse"] == pytest.approx(default_run["metrics"]["ranking"]["rmse"], abs=0.03)


def test_a_killed_multi_worker_run_resumes_where_it_stopped(tmp_path):
    """Both workers killed half-way through the second epoch (a preempted cluster), then restarted."""
    args = ("--epochs", "3", "--override", "training.refit=false")
    for code, stderr in _multi_worker(tmp_path, *args, env={"RECSYS_FAULT": "train:ranking"}):
        assert code == -signal.SIGKILL, stderr[-3000:]
    assert not (tmp_path / "LATEST").exists()
    [resume] = list(tmp_path.glob(".resume-*"))
    assert json.loads((resume / "fit" / "ranking" / "epochs.json").read_text())["epochs"].keys() == {"0"}
    for code, stderr in _multi_worker(tmp_path, *args):
        assert code == 0, stderr[-3000:]
        assert "ranking: resuming after epoch 1" in stderr
    manifest = _manifest(tmp_path)
    assert manifest["num_replicas"] == 2
    ranking = manifest["metrics"]["ranking"]
    assert ranking["epochs_run"] == 3  # the epoch before the kill counts, and is not run again
    assert ranking["rmse"] < manifest["metrics"]["baselines"]["user_item_bias"]["global_mean_rmse"]
    assert sorted(os.listdir(tmp_path)) == sorted(["LATEST", (tmp_path / "LATEST").read_text()])  # no backup left


def test_tpu_without_a_reachable_tpu_stops_with_a_clear_message(tmp_path):
    with pytest.raises(StrategyError, match="needs --tpu"):
        make_strategy("tpu", "")
    with pytest.raises(StrategyError, match=r"no TPU reachable at grpc://127\.0\.0\.1:\d+"):
        make_strategy("tpu", f"grpc://127.0.0.1:{free_port()}")
    result = subprocess.run(
        SMOKE + ["--strategy", "tpu", "--tpu", "local", "--output-dir", str(tmp_path / "runs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "could not connect to TPU 'local'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_multi_worker_without_tf_config_is_explained(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(StrategyError, match="needs TF_CONFIG"):
        make_strategy("multi_worker_mirrored")
