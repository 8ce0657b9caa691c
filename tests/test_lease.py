"""One writer per output directory: the lease, by hand, and real jobs started on top of each other."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobs.publish import output_lease
from recsys_core import lease as leases
from recsys_core.lease import LeaseHeld
from recsys_core.serving import outputs
from tests.support import REPO


@pytest.fixture(autouse=True)
def quick_settle(monkeypatch):
    monkeypatch.setattr(leases, "SETTLE_SECONDS", 0.2)


def _held_by(path, **changes):
    """A lease file as another run would have written it."""
    lease = {"run": "other-run", "host": "elsewhere", "pid": 1, "token": "t", "expires_at": time.time() + 60}
    path.write_text(json.dumps({**lease, **changes}))


def test_a_live_lease_refuses_a_second_run_and_names_the_holder(tmp_path):
    first = output_lease(str(tmp_path), "night-1", seconds=30)
    with first:
        with pytest.raises(LeaseHeld, match=r"run night-1 on .* \(pid \d+\) holds .*_lease\.json.*delete .* to take"):
            output_lease(str(tmp_path), "night-2", seconds=30).acquire()
        first.check()  # still the holder's
    assert not (tmp_path / "_lease.json").exists()  # released at the end
    with output_lease(str(tmp_path), "night-2", seconds=30):
        assert json.loads((tmp_path / "_lease.json").read_text())["run"] == "night-2"


def test_an_expired_or_dead_holders_lease_is_taken_over(tmp_path, caplog):
    path = tmp_path / "_lease.json"
    _held_by(path, expires_at=time.time() - 1)  # a holder on another machine stopped renewing
    with output_lease(str(tmp_path), "next", seconds=30):
        assert json.loads(path.read_text())["run"] == "next"
    assert "taking over the lease of run other-run (expired)" in caplog.text
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _held_by(path, host=socket.gethostname(), pid=int(dead.stdout))  # killed on this machine, not yet expired
    with output_lease(str(tmp_path), "after-a-kill", seconds=30):
        assert json.loads(path.read_text())["run"] == "after-a-kill"


def test_a_live_holder_elsewhere_is_respected_until_it_expires(tmp_path):
    _held_by(tmp_path / "_lease.json", host="elsewhere", pid=os.getpid())
    with pytest.raises(LeaseHeld, match="other-run on elsewhere"):
        output_lease(str(tmp_path), "mine", seconds=30).acquire()


def test_of_runs_that_start_together_exactly_one_holds_the_lease(tmp_path):
    for attempt in range(5):
        root = tmp_path / str(attempt)
        root.mkdir()
        start, results = threading.Barrier(2), []

        def contend(name, root=root, start=start, results=results):
            contender = output_lease(str(root), name, seconds=30)
            start.wait()
            try:
                contender.acquire()
                results.append(name)
            except LeaseHeld:
                pass

        threads = [threading.Thread(target=contend, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 1


def test_a_holder_that_lost_its_lease_does_not_publish(tmp_path):
    mine = output_lease(str(tmp_path), "slow-night", seconds=0.8)
    mine.acquire()
    _held_by(tmp_path / "_lease.json", run="took-over")  # another run took over while this one stalled
    time.sleep(0.5)  # a heartbeat notices
    with pytest.raises(LeaseHeld, match="taken over by run took-over"):
        mine.check()
    mine.release()
    assert json.loads((tmp_path / "_lease.json").read_text())["run"] == "took-over"  # not removed: not ours


def test_the_heartbeat_keeps_a_long_run_alive(tmp_path):
    with output_lease(str(tmp_path), "long", seconds=0.8) as held:
        first = json.loads((tmp_path / "_lease.json").read_text())["expires_at"]
        time.sleep(1.2)  # longer than the lease: renewed meanwhile
        assert json.loads((tmp_path / "_lease.json").read_text())["expires_at"] > first + 0.4
        held.check()
        with pytest.raises(LeaseHeld):
            output_lease(str(tmp_path), "second", seconds=0.8).acquire()


@pytest.fixture(scope="module")
def small_warehouse(ml100k, tmp_path_factory):
    """A Parquet export of 60 MovieLens users: a night of a few seconds."""
    root = tmp_path_factory.mktemp("small")
    users = ml100k.users.slice(0, 60)
    ratings = ml100k.ratings.filter(pc.is_in(ml100k.ratings["user_id"], users["user_id"]))
    pq.write_table(ratings, root / "interactions.parquet")
    pq.write_table(users, root / "users.parquet")
    pq.write_table(ml100k.items, root / "items.parquet")
    return root


def _start(bundle, data, output, run_date):
    flags = ["--bundle", bundle, "--output", str(output), "--run-date", run_date, "--data-source", "parquet",
             "--data-path", str(data), "--reranker", "none"]  # fmt: skip
    command = [sys.executable, "-m", "jobs.batch_recommend", *flags]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_overlapping_nights_run_one_at_a_time_and_every_pointer_names_files_that_exist(
    ml100k_bundle, small_warehouse, tmp_path
):
    output = tmp_path / "tables"
    outcomes = []
    # A night, then another started `offset` seconds later on the same root: the next date, or the same one
    # (a scheduler's retry). Offset 0: both start together.
    for number, offset in enumerate((0.0, 0.3, 1.0, 2.0, 3.5, 5.0)):
        first, second = f"2026-11-{10 + 2 * number:02d}", f"2026-11-{10 + 2 * number + number % 2:02d}"
        running = _start(ml100k_bundle, small_warehouse, output, first)
        time.sleep(offset)
        late = _start(ml100k_bundle, small_warehouse, output, second)
        codes = [process.wait(timeout=300) for process in (running, late)]
        errors = [process.stderr.read() for process in (running, late)]
        outcomes.append(codes)
        assert sorted(codes) == [0, 2], (offset, codes, [e[-1500:] for e in errors])
        refused = errors[codes.index(2)]
        assert "another run writes here" in refused and "Traceback" not in refused
        for pointer_file in (output / "_published").glob("*.json"):
            pointer = json.loads(pointer_file.read_text())
            for table, paths in pointer["files"].items():
                for path in paths:
                    assert (output / path).is_file(), (offset, pointer_file.name, path)
    for pointer_file in (output / "_published").glob("dt=*.json"):
        run_date = pointer_file.stem.removeprefix("dt=")
        for table in outputs.PUBLISHED:
            outputs.read_published(str(output), table, run_date)  # every published table reads whole
    assert not (output / "_lease.json").exists()
    assert len(outcomes) == 6
