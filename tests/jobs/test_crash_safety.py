"""A bad night cannot hurt consumers: the real job and trainer killed (SIGKILL) at chosen points, then rerun.

Each fault is injected with `RECSYS_FAULT=<point>` (`recsys_core/faults.py`) in a
subprocess that dies as a killed machine would: no exception handler, no cleanup.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobs import batch_recommend, publish
from recsys_core.data import DataError
from recsys_core.serving import outputs
from tests.support import REPO

YESTERDAY, TODAY = "2026-11-21", "2026-11-22"
JOB_FAULTS = ("job:read", "job:score", "job:write", "job:mid_write", "cleanup:partway", "publish:before_pointer",
              "publish:before_rename", "publish:before_latest")  # fmt: skip
RECORDED = len(JOB_FAULTS) - 1  # killed after the run's record is written: all but the clean-up


@pytest.fixture(scope="module")
def warehouse(ml100k, tmp_path_factory):
    """A Parquet export of 300 MovieLens users, their ratings and every item."""
    root = tmp_path_factory.mktemp("warehouse")
    users = ml100k.users.slice(0, 300)
    pq.write_table(
        ml100k.ratings.filter(pc.is_in(ml100k.ratings["user_id"], users["user_id"])), root / "interactions.parquet"
    )
    pq.write_table(users, root / "users.parquet")
    pq.write_table(ml100k.items, root / "items.parquet")
    return root


def _with_interactions(warehouse, directory, interactions):
    """The warehouse's users and items beside other `interactions` (a table), in `directory`."""
    directory.mkdir()
    for table in ("users", "items"):
        (directory / f"{table}.parquet").write_bytes((warehouse / f"{table}.parquet").read_bytes())
    pq.write_table(interactions, directory / "interactions.parquet")
    return directory


def _flags(bundle, output, run_date, data, *extra):
    return ["--bundle", bundle, "--output", str(output), "--run-date", run_date, "--data-source", "parquet",
            "--data-path", str(data), "--reranker", "ranking", *extra]  # fmt: skip


def _job_with_fault(flags, fault):
    env = {**os.environ, "RECSYS_FAULT": fault}
    return subprocess.run([sys.executable, "-m", "jobs.batch_recommend", *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def _killed_job(flags, fault):
    done = _job_with_fault(flags, fault)
    assert done.returncode == -signal.SIGKILL, f"{fault}: exit {done.returncode}\n{done.stderr[-2000:]}"


def _files(output, run_date):
    """{path: sha256} of every file under any table's partition of `run_date`."""
    found = {}
    for table in outputs.PUBLISHED:
        for path in (output / table / f"dt={run_date}").rglob("*"):
            if path.is_file():
                found[str(path.relative_to(output))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _visible(output, run_date):
    """What a reader following the contract sees for `run_date`: None, or the run_id of a complete run."""
    try:
        pointer = outputs.read_pointer(str(output), run_date)
    except FileNotFoundError:
        return None
    for table, described in pointer["manifest"]["tables"].items():
        for path, f in zip(pointer["files"][table], described["files"], strict=True):  # each file there, whole
            assert hashlib.sha256((output / path).read_bytes()).hexdigest() == f["sha256"], (table, path)
        assert outputs.read_published(str(output), table, run_date).num_rows == pointer["manifest"]["row_counts"][table]
    return pointer["manifest"]["run_id"]


def test_killed_nights_leave_yesterday_untouched_and_a_rerun_completes(ml100k_bundle, warehouse, tmp_path):
    output, reference = tmp_path / "tables", tmp_path / "uninterrupted"
    yesterday = batch_recommend.run(_flags(ml100k_bundle, output, YESTERDAY, warehouse))
    before = _files(output, YESTERDAY)
    pointer_before = (output / "_published" / f"dt={YESTERDAY}.json").read_bytes()
    expected = batch_recommend.run(_flags(ml100k_bundle, reference, TODAY, warehouse))

    outcomes = {}
    for fault in JOB_FAULTS:
        _killed_job(_flags(ml100k_bundle, output, TODAY, warehouse), fault)
        assert _files(output, YESTERDAY) == before, fault  # yesterday's files, byte for byte
        assert (output / "_published" / f"dt={YESTERDAY}.json").read_bytes() == pointer_before, fault
        assert _visible(output, YESTERDAY) == yesterday["run_id"], fault
        today = _visible(output, TODAY)  # nothing, or the complete new run: never a part of one
        assert today in (None, expected["run_id"]), fault
        latest = outputs.read_pointer(str(output))["manifest"]["run_id"]
        outcomes[fault] = (today, latest)
    assert outcomes["publish:before_pointer"] == (None, yesterday["run_id"])
    assert outcomes["publish:before_rename"] == (None, yesterday["run_id"])  # a pointer half-written is unseen
    assert outcomes["publish:before_latest"] == (expected["run_id"], yesterday["run_id"])  # date visible, not latest

    # Rerunning yesterday, killed before its pointer moves: yesterday stays the complete old run.
    _killed_job(_flags(ml100k_bundle, output, YESTERDAY, warehouse), "publish:before_pointer")
    assert _files(output, YESTERDAY).items() >= before.items()
    assert _visible(output, YESTERDAY) == yesterday["run_id"]

    # A plain rerun completes; its output equals an uninterrupted run's, file for file and byte for byte.
    again = batch_recommend.run(_flags(ml100k_bundle, output, TODAY, warehouse))
    assert publish.manifest_hash(again) == publish.manifest_hash(expected)
    assert _visible(output, TODAY) == expected["run_id"] and outputs.read_pointer(str(output))["run_date"] == TODAY
    # The killed runs' files are gone; their records say they were killed.
    records = [json.loads(p.read_text()) for p in (output / "_runs").iterdir()]
    assert sorted(r["status"] for r in records) == ["killed"] * (RECORDED + 1) + ["succeeded"] * 2
    versions = {p.name for p in (output / outputs.RECOMMENDATIONS / f"dt={TODAY}").iterdir()}
    pointer = outputs.read_pointer(str(output), TODAY)
    assert versions <= {f"v={pointer['version']}", f"v={pointer['replaces']}"}
    assert not list(output.rglob("*.tmp-*")) and not list((output / publish.STAGING).rglob("*.*"))
    # The rerun compared its lists with yesterday's, the latest published: as pandas computes it.
    lists = [outputs.read_published(str(output), outputs.RECOMMENDATIONS, d).to_pandas() for d in (YESTERDAY, TODAY)]
    kept = lists[1].merge(lists[0], on=["user_id", "item_id"]).groupby("user_id").size()
    share = (kept.reindex(lists[1]["user_id"].unique(), fill_value=0) / lists[1].groupby("user_id").size()).mean()
    [rerun] = [r for r in records if r["status"] == "succeeded" and r["run_date"] == TODAY]
    assert rerun["list_overlap"] == {
        "previous_run_id": yesterday["run_id"], "users": 300, "mean_share": pytest.approx(share, abs=1e-6)
    }  # fmt: skip


def test_a_worker_process_killed_fails_the_night_and_publishes_nothing(ml100k_bundle, warehouse, tmp_path):
    """Two worker processes; the one that scores first dies (SIGKILL): the launcher lives, records the failure
    and exits with an error; yesterday stays whole (the next run's clean-up is the killed nights' above)."""
    output = tmp_path / "tables"
    yesterday = batch_recommend.run(_flags(ml100k_bundle, output, YESTERDAY, warehouse))
    two_workers = ("--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    done = _job_with_fault(_flags(ml100k_bundle, output, TODAY, warehouse, *two_workers), "job:score")
    assert done.returncode not in (0, -signal.SIGKILL), done.stderr[-2000:]  # the launcher failed, not killed
    assert _visible(output, TODAY) is None and _visible(output, YESTERDAY) == yesterday["run_id"]
    [failed] = [json.loads(p.read_text()) for p in (output / "_runs").iterdir() if TODAY in p.name]
    assert failed["status"] == "failed" and "RuntimeError" in failed["reason"]


def test_the_same_night_twice_writes_the_same_bytes(ml100k_bundle, warehouse, tmp_path):
    """Whatever the item shards, over several user buckets and blocks, with dead letters among the rows. Two
    worker processes write the same rows; TensorFlow's CPU matmul rounds the last bit of a few scores otherwise
    with one thread than with several, so their files may differ in those bits."""
    import numpy as np
    import pyarrow as pa

    ratings = pq.read_table(warehouse / "interactions.parquet")
    bad = ratings.slice(0, 3).set_column(2, "rating", pa.array([9.0, float("nan"), 4.0], pa.float32()))
    bad = bad.set_column(1, "item_id", pa.array(["1", "2", "no-such-item"]))
    dirty = _with_interactions(warehouse, tmp_path / "dirty", pa.concat_tables([ratings, bad]))

    def night(root, *flags):  # 300 users: 5 buckets, blocks of at most 64
        return batch_recommend.run(_flags(ml100k_bundle, tmp_path / root, TODAY, dirty, "--block-size", "64", *flags))

    first = night("a")
    assert first["row_counts"][outputs.DEAD_LETTER] == 3 and first["counters"]["rows_written_recommendations"]
    assert night("a") == first
    sharded = night("b", "--item-shard-size", "400")
    assert sharded == first and publish.manifest_hash(sharded) == publish.manifest_hash(first)
    for table in outputs.PUBLISHED:
        files = [outputs.published_files(str(tmp_path / root), table) for root in ("a", "b")]
        assert len(files[0]) == len(files[1]) > 0
        for a, b in zip(*files, strict=True):
            assert open(a, "rb").read() == open(b, "rb").read(), (a, b)
    workers = night("c", "--item-shard-size", "400", "--direct_num_workers", "2", "--direct_running_mode",
                    "multi_processing")  # fmt: skip
    assert workers["row_counts"] == first["row_counts"] and workers["run_id"] == first["run_id"]
    for table in outputs.PUBLISHED:
        ours, theirs = (outputs.read_published(str(tmp_path / root), table) for root in ("a", "c"))
        for column in ours.column_names:
            if pa.types.is_floating(ours[column].type) or pa.types.is_list(ours[column].type):
                numbers = [np.asarray(t[column].to_pylist(), np.float64) for t in (ours, theirs)]  # null: NaN
                np.testing.assert_allclose(*numbers, rtol=1e-6, atol=1e-6, err_msg=f"{table}.{column}")
            else:
                assert ours[column] == theirs[column], f"{table}.{column}"


def test_an_empty_interactions_table_publishes_nothing(ml100k, ml100k_bundle, warehouse, tmp_path):
    data = _with_interactions(warehouse, tmp_path / "empty", ml100k.ratings.slice(0, 0))
    with pytest.raises(DataError, match="interactions.parquet has no rows"):
        batch_recommend.run(_flags(ml100k_bundle, tmp_path / "out", TODAY, data))
    assert not (tmp_path / "out" / "_published").exists()


def test_a_near_empty_night_fails_the_gate_and_says_why(ml100k, ml100k_bundle, warehouse, tmp_path):
    """Ten interactions for 300 users: nearly everyone would get the popularity fallback."""
    data = _with_interactions(warehouse, tmp_path / "thin", pq.read_table(warehouse / "interactions.parquet")[:10])
    output = tmp_path / "out"
    yesterday = batch_recommend.run(_flags(ml100k_bundle, output, YESTERDAY, warehouse))
    with pytest.raises(DataError, match=r"publish gate.*of users get the popularity fallback"):
        batch_recommend.run(_flags(ml100k_bundle, output, TODAY, data))
    assert _visible(output, TODAY) is None
    assert outputs.read_pointer(str(output))["manifest"]["run_id"] == yesterday["run_id"]  # latest unchanged
    [gated] = [json.loads(p.read_text()) for p in (output / "_runs").iterdir() if "gated" in p.read_text()]
    assert gated["status"] == "gated" and "--max-fallback-share 0.5" in gated["reason"]
    assert gated["counters"]["fallback_users"] > 250
    # A floor on the bundle's offline metrics is a gate too.
    with pytest.raises(DataError, match="the bundle has no metric 'retrieval.no_such_metric'"):
        batch_recommend.run(
            _flags(ml100k_bundle, output, TODAY, warehouse, "--min-bundle-metric", "retrieval.no_such_metric=0.1")
        )


def test_lists_that_collapse_and_bundle_metrics_past_their_bounds_fail_the_gate(ml100k_bundle, warehouse, tmp_path):
    """One real night with three faults; the gate names each."""
    import shutil

    # Everyone given nearly one list, as by a collapsed query tower: here one interaction for 300 users puts
    # all but one of them on the popularity fallback, let through by --max-fallback-share 1.
    thin = _with_interactions(warehouse, tmp_path / "thin", pq.read_table(warehouse / "interactions.parquet")[:1])
    # A bundle whose evaluation diverged (a NaN RMSE), and whose DLRM is past a ceiling.
    broken = tmp_path / "bundle"
    shutil.copytree(ml100k_bundle, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["metrics"]["ranking"]["rmse"] = float("nan")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    output = tmp_path / "out"
    ceilings = ("--max-bundle-metric", "ranking.rmse=2", "--max-bundle-metric", "dlrm.rmse=0.5")
    with pytest.raises(DataError, match="publish gate") as refused:
        batch_recommend.run(_flags(str(broken), output, TODAY, thin, "--max-fallback-share", "1", *ceilings))
    message = str(refused.value)
    assert re.search(r"the lists hold \d+ distinct items of 1682 .*has the query tower collapsed", message)
    assert "the bundle's ranking.rmse is nan (--max-bundle-metric 2.0)" in message
    assert re.search(r"the bundle's dlrm\.rmse is \d\.\d{4}, above the ceiling 0\.5", message)
    assert _visible(output, TODAY) is None


def test_a_bundle_whose_embeddings_diverged_fails_the_gate(ml100k_bundle, warehouse, tmp_path):
    """A real night with a bundle whose towers' embedding tables hold NaN (as after a diverged fit): every user and
    item embedding is NaN, and no list can be full."""
    import shutil

    import numpy as np
    import tensorflow as tf

    broken = tmp_path / "bundle"
    shutil.copytree(ml100k_bundle, broken, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    prefix = str(broken / "saved_model" / "variables" / "variables")
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(reader.get_variable_to_shape_map())
    tensors = [reader.get_tensor(name) for name in names]
    for i, name in enumerate(names):  # the two towers' id and token tables: hundreds of rows each
        if name.startswith(("index/", "models/retrieval/")) and tensors[i].ndim == 2 and tensors[i].shape[0] > 500:
            tensors[i] = np.full_like(tensors[i], np.nan)
    for stale in (broken / "saved_model" / "variables").iterdir():
        stale.unlink()
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    with pytest.raises(DataError, match="publish gate") as refused:
        batch_recommend.run(_flags(str(broken), tmp_path / "out", TODAY, warehouse))
    message = str(refused.value)
    assert "300 user embeddings are NaN or infinite" in message
    assert "1682 item embeddings are NaN or infinite" in message  # counted, and no longer a crash of top-K
    assert "only 0.0% of users have a full list (--min-full-list-share 0.9)" in message
    assert _visible(tmp_path / "out", TODAY) is None


def test_a_bundle_trained_on_other_features_is_refused_before_any_work(ml100k_bundle, tmp_path):
    from recsys_core.data.shop import synthetic_shop

    shop = synthetic_shop(50, 40, 6, seed=1)
    data = tmp_path / "shop"
    data.mkdir()
    for name, table in (("interactions", shop.ratings), ("users", shop.users), ("items", shop.items)):
        pq.write_table(table, data / f"{name}.parquet")
    with pytest.raises(DataError, match=r"users\.parquet.*(user_gender|raw_user_age|bucketized_user_age)"):
        batch_recommend.run(_flags(ml100k_bundle, tmp_path / "out", TODAY, data))
    assert not (tmp_path / "out" / "_published").exists()
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "out" / "_runs").iterdir()]
    assert record["status"] == "failed" and "users.parquet" in record["reason"]


def test_a_killed_training_run_resumes_from_its_checkpoint(tmp_path):
    """Killed half-way through the ranking model's second epoch, after the retrieval model finished."""
    runs = tmp_path / "runs"
    command = [sys.executable, "train.py", "--experiment", "smoke", "--models", "retrieval,ranking", "--epochs",
               "4", "--override", "training.refit=false", "--output-dir", str(runs), "--verbose", "0"]  # fmt: skip
    env = {**os.environ, "RECSYS_FAULT": "train:ranking"}
    killed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (runs / "LATEST").exists()  # no bundle, not even a partial one, is visible
    [resume] = list(runs.glob(".resume-*"))
    assert json.loads((resume / "fit" / "retrieval" / "epochs.json").read_text())["finished"]
    assert json.loads((resume / "fit" / "ranking" / "epochs.json").read_text())["epochs"].keys() == {"0"}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "retrieval: trained by an interrupted run" in done.stderr
    assert "ranking: resuming after epoch 1" in done.stderr
    bundle = runs / (runs / "LATEST").read_text()
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["ranking"]["epochs_run"] == 4  # the epoch before the kill counts, and is not run again
    assert metrics["ranking"]["rmse"] < metrics["baselines"]["user_item_bias"]["global_mean_rmse"]
    assert metrics["retrieval"]["factorized_top_10"] > 0.2  # restored, not untrained (chance: 10 / 120 = 0.08)
    assert sorted(p.name for p in runs.iterdir()) == sorted([bundle.name, "LATEST"])  # no backup, no partial bundle


def test_a_nan_loss_stops_training_with_a_message_and_no_bundle(tmp_path, capsys):
    import train

    args = ["--experiment", "smoke", "--models", "retrieval", "--epochs", "2", "--learning-rate", "1e30"]
    assert train.main(args + ["--output-dir", str(tmp_path), "--verbose", "0"]) == 1
    assert "training loss became NaN" in capsys.readouterr().err
    assert not (tmp_path / "LATEST").exists() and not [p for p in tmp_path.iterdir() if "incomplete" in p.name]
