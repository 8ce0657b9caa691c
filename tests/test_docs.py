"""The README and docs/ name only what exists: local links, source files, modules and scripts, commands."""

import importlib.metadata
import importlib.util
import pathlib
import re

from tests.support import REPO

PAGES = [pathlib.Path(REPO, "README.md"), *sorted(pathlib.Path(REPO, "docs").glob("*.md"))]


def _named(pattern: str) -> set[tuple[str, str]]:
    """`(page, match)` for every match of `pattern` in every page."""
    return {(page.name, found) for page in PAGES for found in re.findall(pattern, page.read_text())}


def test_there_is_a_manual_beside_a_short_readme():
    assert len(PAGES) >= 8
    assert len(PAGES[0].read_text().splitlines()) <= 120


def test_every_local_link_resolves():
    for page in PAGES:
        prose = re.sub(r"```.*?```|`[^`\n]*`", "", page.read_text(), flags=re.DOTALL)  # code is not a link
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
            if "://" not in target and not target.startswith("mailto:"):
                assert (page.parent / target).exists(), (page.name, target)


def test_every_source_file_and_script_named_exists():
    files = _named(r"\b((?:recsys_core|jobs|tests|benchmarks)/[\w/]+\.(?:py|json))\b")
    files |= _named(r"python ([\w/]+\.py)\b")
    assert len(files) > 30
    missing = sorted((page, path) for page, path in files if not pathlib.Path(REPO, path).exists())
    assert not missing


def test_every_module_and_command_named_runs():
    modules = _named(r"python -m ([\w.]+)")
    assert {"jobs.batch_recommend", "jobs.nightly", "recsys_core.report"} <= {module for _, module in modules}
    assert not sorted((page, m) for page, m in modules if importlib.util.find_spec(m) is None)
    installed = {e.name for e in importlib.metadata.entry_points(group="console_scripts")}
    commands = _named(r"\b(recsys-(?:train|score|nightly|report|[a-z]+))\b")
    assert not sorted((page, c) for page, c in commands if c not in installed)
