"""The console commands the package declares (`setup.py`): installed beside Python, and each answers `--help`."""

import importlib.metadata
import pathlib
import subprocess
import sys

COMMANDS = {
    "recsys-train": "train:main",
    "recsys-score": "jobs.batch_recommend:main",
    "recsys-nightly": "jobs.nightly:main",
    "recsys-report": "recsys_core.report.figures:main",
}


def test_every_command_is_installed_and_answers_help():
    declared = importlib.metadata.entry_points(group="console_scripts")
    assert {e.name: e.value for e in declared if e.name.startswith("recsys-")} == COMMANDS
    bin_directory = pathlib.Path(sys.executable).parent
    running = {
        name: subprocess.Popen(
            [bin_directory / name, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in COMMANDS
    }
    for name, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        assert out.startswith(f"usage: {name} "), out[:200]


def test_python_m_still_runs_each_command():
    modules = ("train", "jobs.batch_recommend", "jobs.nightly", "recsys_core.report")
    running = {
        module: subprocess.Popen(
            [sys.executable, "-m", module, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for module in modules
    }
    for module, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0 and out.startswith("usage: "), (module, err[-2000:])


def test_the_nightly_summary_shows_each_items_title_beside_its_id(ml100k, ml100k_bundle, tmp_path, capsys):
    from jobs import nightly
    from recsys_core.serving import outputs

    flags = ["--bundle", ml100k_bundle, "--output", str(tmp_path), "--run-date", "2026-11-22", "--reranker", "ranking"]
    assert nightly.main(flags) == 0
    printed = capsys.readouterr().out
    lists = outputs.read_published(str(tmp_path), outputs.RECOMMENDATIONS).to_pandas()
    first = lists[lists["user_id"] == sorted(lists["user_id"].unique())[0]].sort_values("rank").head(5)
    titles = dict(zip(*(ml100k.items[c].to_pylist() for c in ("item_id", "movie_title")), strict=True))
    for item in first["item_id"]:
        assert any(item in line and titles[item] in line for line in printed.splitlines()), (item, printed)
