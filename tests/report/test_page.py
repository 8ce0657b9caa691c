"""The static evaluation report: its HTML structure, its files, and how a real headless Chromium renders it."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from recsys_core.report.page import PNG_SIGNATURE, render_html, write_report
from recsys_core.training import plots

LIST_METRICS = (
    "ndcg_at_10",
    "recall_at_10",
    "precision_at_10",
    "map_at_10",
    "hit_rate_at_10",
    "rel4_ndcg_at_10",
    "rel4_recall_at_10",
    "recall_at_50",
    "coverage_at_20",
    "gini_at_20",
    "novelty_at_20",
    "diversity_at_20",
)
# Means of the list systems in the random split, in LIST_METRICS order (the temporal split's are 0.05 lower).
LIST_MEANS = {
    "final lists (re-ranked)": (0.412, 0.221, 0.305, 0.262, 0.901, 0.398, 0.240, 0.452, 0.310, 0.862, 5.10, 0.71),
    "retrieval top-K": (0.371, 0.201, 0.281, 0.228, 0.874, 0.350, 0.214, 0.447, 0.352, 0.801, 5.32, 0.74),
    "most popular unseen": (0.305, 0.160, 0.232, 0.180, 0.820, 0.290, 0.171, 0.388, 0.041, 0.975, 3.90, 0.52),
    "EASE": (0.398, 0.219, 0.300, 0.251, 0.893, 0.385, 0.236, 0.461, 0.383, 0.840, 5.02, 0.69),
}
RATING_MEANS = {"ranking": (0.912, 0.718), "user+item bias": (0.945, 0.747)}
SEEDS = (42, 1, 2, 3)
EXPECTED_COLUMNS = [*LIST_METRICS, "rmse", "mae"]


def _metric(mean: float, std: float = 0.010) -> dict:
    values = [round(mean + offset * std, 4) for offset in (-1.0, 0.0, 1.0, 0.0)]
    return {"mean": mean, "std": std, "values": values}


def _split(description: str, shift: float) -> dict:
    systems = {}
    for name, means in LIST_MEANS.items():
        metrics = {metric: _metric(round(mean - shift, 3)) for metric, mean in zip(LIST_METRICS, means, strict=True)}
        systems[name] = dict(sorted(metrics.items(), key=lambda item: item[0] != "recall_at_50"))  # out of order
    for name, (rmse, mae) in RATING_MEANS.items():
        systems[name] = {"rmse": _metric(rmse + shift, 0.004), "mae": _metric(mae + shift, 0.003)}
    ks = [1, 5, 10, 20, 50, 100]
    return {
        "description": description,
        "seeds": list(SEEDS),
        "systems": systems,
        "recall_curve": {
            name: {"k": ks, "recall": [round(means[1] * (k / 10) ** 0.45 - shift, 4) for k in ks]}
            for name, means in LIST_MEANS.items()
        },
        "popularity": {
            "bins": ["1-10", "11-50", "51-100", "101-200", "201+"],
            "shares": {
                "final lists (re-ranked)": [0.02, 0.14, 0.24, 0.33, 0.27],
                "retrieval top-K": [0.03, 0.17, 0.26, 0.31, 0.23],
                "most popular unseen": [0.0, 0.0, 0.0, 0.12, 0.88],
                "EASE": [0.01, 0.12, 0.22, 0.35, 0.30],
            },
        },
    }


def fake_report() -> dict:
    return {
        "title": "Offline evaluation of the shipped lists",
        "created_at": "2026-11-26T14:00:00+00:00",
        "protocol": [
            "Every system is fitted on the training part of each split and scored on the held-out ratings; "
            "list metrics count a held-out item as relevant, the rel4 variants only when it was rated >= 4.",
            "Seen items are never recommended. A title such as <script>alert('x')</script> & co must stay text.",
        ],
        "splits": {
            "random": _split("random 80/20 split, seeds 42, 1, 2, 3", 0.0),
            "temporal": _split("temporal split: each user's last 20% of ratings held out", 0.05),
        },
        "images": ["retrieval_training.png", "dlrm_interactions.png"],
    }


class PageParser(HTMLParser):
    """Collects the metrics tables, the `<img>` tags and the attributes of `<body>`.

    Attributes:
        tables: `{table id: {"columns": [metric, ...], "rows": {system: {metric: (cell text, bold)}}}}`.
        images: The attributes of every `<img>`.
        body: The attributes of `<body>`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self.images: list[dict[str, str]] = []
        self.body: dict[str, str] = {}
        self._table: dict | None = None  # the open metrics table
        self._in_body_rows = False
        self._row: list[tuple[str, bool]] | None = None
        self._cell: list | None = None  # [text, bold]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "body":
            self.body = attributes
        elif tag == "img":
            self.images.append(attributes)
        elif tag == "table" and "metrics" in attributes.get("class", "").split():
            self._table = self.tables[attributes["id"]] = {"columns": [], "rows": {}}
        elif self._table is None:
            return
        elif tag == "th" and "data-metric" in attributes:
            self._table["columns"].append(attributes["data-metric"])
        elif tag == "tbody":
            self._in_body_rows = True
        elif tag == "tr" and self._in_body_rows:
            self._row = []
        elif tag in ("th", "td") and self._row is not None:
            self._cell = ["", False]
        elif tag == "strong" and self._cell is not None:
            self._cell[1] = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self._cell is not None:
            self._row.append((self._cell[0], self._cell[1]))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            (system, _), *cells = self._row
            self._table["rows"][system] = dict(zip(self._table["columns"], cells, strict=True))
            self._row = None
        elif tag == "tbody":
            self._in_body_rows = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[0] += data


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    """Two extra PNGs, drawn by the training code's plot functions."""
    history = {"loss": [3.1, 2.2, 1.9], "retrieval_loss": [3.0, 2.1, 1.8], "val_retrieval_loss": [3.2, 2.6, 2.4]}
    matrix = np.array([[0.0, 0.3, 0.1], [0.3, 0.0, 0.5], [0.1, 0.5, 0.0]])
    return {
        "retrieval_training.png": plots.history_png("retrieval", history),
        "dlrm_interactions.png": plots.interactions_png(matrix, ("user", "item", "genre"), "DLRM"),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory, images) -> tuple[str, str]:
    """`write_report` of the fake report into a directory that does not exist yet: the paths it returns."""
    return write_report(str(tmp_path_factory.mktemp("run") / "evaluation"), fake_report(), images)


@pytest.fixture(scope="module")
def page(images) -> str:
    return render_html(fake_report(), images)


def test_one_metrics_table_per_split_with_a_row_per_system_and_a_column_per_metric(page):
    tables = parse(page).tables

    assert list(tables) == ["metrics-random", "metrics-temporal"]
    for table in tables.values():
        assert table["columns"] == EXPECTED_COLUMNS
        assert list(table["rows"]) == [*LIST_MEANS, *RATING_MEANS]
        assert all(len(cells) == len(EXPECTED_COLUMNS) for cells in table["rows"].values())
    random, temporal = tables["metrics-random"]["rows"], tables["metrics-temporal"]["rows"]
    assert random["final lists (re-ranked)"]["ndcg_at_10"] == ("0.412 ± 0.010", True)
    assert temporal["final lists (re-ranked)"]["ndcg_at_10"] == ("0.362 ± 0.010", True)
    assert random["ranking"]["ndcg_at_10"] == ("–", False)
    assert random["EASE"]["rmse"] == ("–", False)


def test_a_single_seed_shows_its_figures_without_a_spread(images):
    report = fake_report()
    report["splits"]["random"]["seeds"] = [42]
    rendered = parse(render_html(report, images))
    random, temporal = (rendered.tables[f"metrics-{split}"]["rows"] for split in ("random", "temporal"))
    assert random["final lists (re-ranked)"]["ndcg_at_10"] == ("0.412", True)
    assert temporal["final lists (re-ranked)"]["ndcg_at_10"] == ("0.362 ± 0.010", True)


def test_the_best_mean_of_each_column_is_bold(page):
    rows = parse(page).tables["metrics-random"]["rows"]

    bold = {metric: [system for system, cells in rows.items() if cells[metric][1]] for metric in EXPECTED_COLUMNS}
    assert all(len(systems) == 1 for systems in bold.values()), bold
    assert bold["ndcg_at_10"] == ["final lists (re-ranked)"]
    assert bold["recall_at_50"] == ["EASE"]
    assert bold["coverage_at_20"] == ["EASE"]  # highest
    assert bold["novelty_at_20"] == ["retrieval top-K"]  # highest
    assert bold["gini_at_20"] == ["retrieval top-K"]  # lowest
    assert rows["ranking"]["rmse"] == ("0.912 ± 0.004", True)  # lowest
    assert rows["user+item bias"]["rmse"] == ("0.945 ± 0.004", False)
    assert bold["mae"] == ["ranking"]


def test_every_image_is_an_embedded_png_with_alt_text(page):
    images = parse(page).images

    assert len(images) == 2 * 3 + 2  # per split: recall curves, popularity shares, RMSE bars; then the extra images
    for image in images:
        assert image["class"] == "figure"
        assert image["alt"]
        prefix, _, data = image["src"].partition(",")
        assert prefix == "data:image/png;base64"
        assert base64.b64decode(data, validate=True).startswith(PNG_SIGNATURE)
    assert {"retrieval_training.png", "dlrm_interactions.png"} <= {image["alt"] for image in images}
    assert "<figcaption>retrieval_training.png</figcaption>" in page


def test_text_is_escaped_and_nothing_is_loaded_from_elsewhere(page):
    assert "<script>alert" not in page
    assert "A title such as &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co must stay text." in page
    assert "<link" not in page
    assert re.search(r"""(src|href)=["'](?!data:)""", page) is None


def test_an_image_that_is_not_a_png_is_refused():
    report = {**fake_report(), "splits": {}}

    with pytest.raises(ValueError, match="'photo.jpg' is not a PNG image"):
        render_html(report, {"photo.jpg": b"\xff\xd8\xff\xe0 a JPEG"})


def test_write_report_writes_the_json_and_the_page_atomically(written):
    json_path, html_path = written

    directory = os.path.dirname(json_path)
    assert sorted(os.listdir(directory)) == ["report.html", "report.json"]  # no `.partial` left behind
    assert os.path.dirname(html_path) == directory
    with open(json_path, encoding="utf-8") as handle:
        text = handle.read()
    assert json.loads(text) == fake_report()
    assert text == json.dumps(fake_report(), indent=2, sort_keys=True) + "\n"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no chromium, chromium-browser or google-chrome binary on PATH")
def test_headless_chromium_renders_the_tables_and_every_image(written, tmp_path):
    screenshot = tmp_path / "report.png"
    command = [
        _chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--window-size=800,2000",  # narrower than the metrics table
        f"--screenshot={screenshot}",
        "--dump-dom",
        f"file://{written[1]}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    rendered = parse(result.stdout)
    assert list(rendered.tables) == ["metrics-random", "metrics-temporal"]
    assert all(len(table["rows"]) == len(LIST_MEANS) + len(RATING_MEANS) for table in rendered.tables.values())
    assert rendered.body.get("data-images-total") == "8", rendered.body
    assert rendered.body.get("data-images-loaded") == "8", rendered.body
    assert int(rendered.body["data-page-width"]) <= 800  # the page never scrolls sideways; wide tables do
    assert screenshot.stat().st_size > 20_000
