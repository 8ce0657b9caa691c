"""The static evaluation report: a `report` dict (plus PNG images) as `report.html` and `report.json`.

The HTML page is self-contained: its CSS is inline and every image, including the
plots drawn here from the dict, is embedded as a base64 `data:` URL, so it opens
offline. Its one small script only records on `<body>` how many images loaded
(`data-images-loaded`, `data-images-total`) and how wide the page is (`data-page-width`: wide tables
scroll inside their box, the page does not), which the browser test reads.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import os
import re
import struct

from recsys_core.bundle import write_text
from recsys_core.training import plots

MISSING = "–"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_ACCURACY = ("ndcg", "recall", "precision", "map", "hit_rate")
_BEYOND_ACCURACY = ("coverage", "gini", "novelty", "diversity")
_RATING = ("rmse", "mae")
_LABELS = {
    "ndcg": "nDCG",
    "recall": "Recall",
    "precision": "Precision",
    "map": "MAP",
    "hit_rate": "Hit rate",
    "coverage": "Coverage",
    "gini": "Gini",
    "novelty": "Novelty",
    "diversity": "Diversity",
    "rmse": "RMSE",
    "mae": "MAE",
}
# Column groups, in table order; `_describe` puts every metric in one of them.
_GROUPS = (
    "top-10 lists",
    "top-10, relevant = rated ≥ 4",
    "other k",
    "beyond accuracy",
    "rating prediction",
    "other",
)
_WIDE_PX = 640  # wider images (multi-panel training curves) get a row of their own
_AT_K = re.compile(r"(?P<rel4>rel4_)?(?P<base>[a-z_]+?)_at_(?P<k>\d+)")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; line-height: 1.5; }
h1 { margin-bottom: 0; }
h2 { margin-top: 40px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.meta, .note { color: #59636e; font-size: 14px; }
.protocol p { max-width: 80ch; }
.table-wrap { overflow-x: auto; }
table.metrics { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
table.metrics th, table.metrics td { padding: 4px 8px; border-bottom: 1px solid #e5e7eb; text-align: right; }
table.metrics thead th { background: #f3f4f6; font-weight: 600; vertical-align: bottom; white-space: nowrap; }
table.metrics thead th .k { display: block; font-weight: 500; color: #59636e; }
table.metrics tr.groups th { text-align: center; color: #59636e; font-weight: 500; white-space: normal;
                             border-bottom: 1px solid #c9ced4; }
table.metrics tbody th { text-align: left; white-space: nowrap; font-weight: 600; }
table.metrics tbody tr:nth-child(even) { background: #fafbfc; }
table.metrics .group-start { border-left: 1px solid #c9ced4; }
table.metrics td .std { display: block; color: #8c959f; font-size: 11px; }
table.metrics td.missing { color: #c4c9cf; text-align: center; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; margin-top: 16px;
           align-items: start; }
figure.wide { grid-column: 1 / -1; }
figure { margin: 0; padding: 8px; border: 1px solid #e5e7eb; border-radius: 6px; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { text-align: center; color: #59636e; font-size: 13px; margin-top: 4px; }
"""

_SCRIPT = """
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter((image) => image.complete && image.naturalWidth > 0).length;
  document.body.dataset.pageWidth = document.documentElement.scrollWidth;  // wide tables scroll in their box
});
"""


def _describe(metric: str) -> tuple[int, tuple, str]:
    """Where a metric's column goes and its header.

    Args:
        metric: A metric key, e.g. "ndcg_at_10", "rel4_recall_at_50", "gini_at_20", "rmse".

    Returns:
        The index of its group in `_GROUPS`, its sort key within the group, and its column header.
    """
    if metric in _RATING:
        return 4, (_RATING.index(metric),), _LABELS[metric]
    match = _AT_K.fullmatch(metric)
    if match:
        base, k, rel4 = match["base"], int(match["k"]), bool(match["rel4"])
        if base in _ACCURACY:
            label = f"{_LABELS[base]}@{k}"
            if k == 10:
                return int(rel4), (_ACCURACY.index(base),), label
            return 2, (k, rel4, _ACCURACY.index(base)), label + (" (≥ 4)" if rel4 else "")
        if base in _BEYOND_ACCURACY and not rel4:
            return 3, (k, _BEYOND_ACCURACY.index(base)), f"{_LABELS[base]}@{k}"
    return 5, (metric,), metric


def metric_columns(systems: dict[str, dict]) -> list[str]:
    """Every metric of any system, in table order.

    List metrics at 10 (nDCG, recall, precision, MAP, hit rate), their `rel4_` versions, the
    accuracy metrics at other cut-offs, beyond-accuracy metrics, RMSE and MAE, then unknown ones.

    Args:
        systems: `{system: {metric: {"mean": ..., "std": ...}}}`.

    Returns:
        The metric keys.
    """
    metrics = {metric for system in systems.values() for metric in system}
    return sorted(metrics, key=lambda metric: _describe(metric)[:2])


def _lower_is_better(metric: str) -> bool:
    return metric in _RATING or metric.startswith("gini_at_")


def _figure(png: bytes, caption: str, element_id: str) -> str:
    """A `<figure>` whose `<img class="figure">` embeds `png` as a base64 data URL; wide images span the whole row.

    Raises:
        ValueError: `png` is not a PNG image.
    """
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError(f"{caption!r} is not a PNG image")
    width, height = struct.unpack(">II", png[16:24])  # from the PNG's IHDR chunk
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    image = (
        f'<img class="figure" id="{html.escape(element_id)}" alt="{html.escape(caption)}" '
        f'width="{width}" height="{height}" src="{source}">'
    )
    css_class = ' class="wide"' if width > _WIDE_PX else ""
    return f"<figure{css_class}>{image}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _metrics_table(split_name: str, systems: dict[str, dict], spread: bool = True) -> str:
    """The split's table: a row per system, a column per metric, the best mean of each column in bold."""
    columns = metric_columns(systems)
    groups = [_describe(metric)[0] for metric in columns]
    group_starts = {index for index, group in enumerate(groups) if index == 0 or group != groups[index - 1]}
    best = {}
    for metric in columns:
        means = [system[metric]["mean"] for system in systems.values() if metric in system]
        if len(means) > 1:  # a lone value is nobody's best
            best[metric] = min(means) if _lower_is_better(metric) else max(means)

    group_row = ['<th scope="col" rowspan="2">system</th>']
    for group, members in itertools.groupby(groups):
        span, title = len(list(members)), html.escape(_GROUPS[group])
        group_row.append(f'<th scope="colgroup" colspan="{span}" class="group-start">{title}</th>')
    column_row = []
    for index, metric in enumerate(columns):
        css_class = ' class="group-start"' if index in group_starts else ""
        key = html.escape(metric)
        name, at, cut_off = _describe(metric)[2].partition("@")  # "@k" goes on a line of its own
        label = html.escape(name) + (f'<span class="k">@{html.escape(cut_off)}</span>' if at else "")
        column_row.append(f'<th scope="col"{css_class} data-metric="{key}" title="{key}">{label}</th>')

    rows = []
    for name, system in systems.items():
        cells = [f'<th scope="row">{html.escape(name)}</th>']
        for index, metric in enumerate(columns):
            classes = ["group-start"] if index in group_starts else []
            if metric not in system:
                cells.append(f'<td class="{" ".join([*classes, "missing"])}">{MISSING}</td>')
                continue
            value = system[metric]
            mean = f"{value['mean']:.3f}"
            if value["mean"] == best.get(metric):
                classes.append("best")
                mean = f"<strong>{mean}</strong>"
            attributes = f' class="{" ".join(classes)}"' if classes else ""
            if value.get("values"):
                attributes += f' title="per seed: {", ".join(f"{v:.3f}" for v in value["values"])}"'
            std = f'<span class="std"> ± {value["std"]:.3f}</span>' if spread else ""  # none from one seed
            cells.append(f"<td{attributes}>{mean}{std}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")

    return (
        f'<div class="table-wrap"><table class="metrics" id="metrics-{_slug(split_name)}">'
        f'<thead><tr class="groups">{"".join(group_row)}</tr><tr class="columns">{"".join(column_row)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _split_section(split_name: str, split: dict) -> str:
    """A split's heading, description, metrics table and figures."""
    systems = split["systems"]
    slug = _slug(split_name)
    seeds = split.get("seeds", [])
    spread = len(seeds) != 1
    if len(seeds) == 1:
        note = f"One run, seed {seeds[0]}. "
    elif seeds:
        note = f"Mean ± standard deviation over {len(seeds)} seeds ({', '.join(str(seed) for seed in seeds)}); "
        note += "hover a cell for the per-seed values. "
    else:
        note = "Mean ± standard deviation over seeds. "
    note += f"Bold: the best of the column (lowest RMSE, MAE and Gini, highest otherwise). {MISSING} = not measured."
    figures = []
    if split.get("recall_curve"):
        png = plots.recall_curves_png(split["recall_curve"], f"Recall@k, {split_name} split")
        figures.append(_figure(png, f"Recall@k by cut-off k, {split_name} split (means over seeds)", f"recall-{slug}"))
    if split.get("popularity"):
        png = plots.popularity_shares_png(split["popularity"]["bins"], split["popularity"]["shares"])
        caption = f"Training popularity of the recommended items, {split_name} split"
        figures.append(_figure(png, caption, f"popularity-{slug}"))
    if any("rmse" in system for system in systems.values()):
        png = plots.rating_bars_png(systems, "rmse")
        figures.append(_figure(png, f"RMSE of the rating predictors, {split_name} split", f"rmse-{slug}"))
    return (
        f'<section class="split" id="split-{slug}">'
        f"<h2>{html.escape(split_name.capitalize())} split</h2>"
        f"<p>{html.escape(split.get('description', ''))}</p>"
        f"{_metrics_table(split_name, systems, spread)}"
        f'<p class="note">{html.escape(note)}</p>'
        f'<div class="figures">{"".join(figures)}</div>'
        "</section>"
    )


def render_html(report: dict, images: dict[str, bytes]) -> str:
    """The report as one self-contained static HTML page.

    Args:
        report: The evaluation report: title, created_at, protocol paragraphs, and per split its
            description, seeds, per-system metrics (mean, std, values), recall curves and popularity shares.
        images: Extra PNG images (training curves, heatmaps) by file name, shown after the splits.

    Returns:
        The HTML document.
    """
    protocol = "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in report.get("protocol", []))
    splits = "".join(_split_section(name, split) for name, split in report["splits"].items())
    extra = ""
    if images:
        figures = "".join(_figure(png, name, f"image-{_slug(name)}") for name, png in images.items())
        extra = f'<section id="images"><h2>Training diagnostics</h2><div class="figures">{figures}</div></section>'
    title = html.escape(report["title"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{_CSS}</style>
<script>{_SCRIPT}</script>
</head>
<body>
<h1>{title}</h1>
<p class="meta">Created at {html.escape(report["created_at"])}</p>
<section class="protocol" id="protocol"><h2>Protocol</h2>{protocol}</section>
{splits}
{extra}
</body>
</html>
"""


def write_report(directory: str, report: dict, images: dict[str, bytes]) -> tuple[str, str]:
    """Writes `report.json` and `report.html` into `directory` (created if missing), each atomically.

    The page is rendered before anything is written, so a failing render leaves no files behind.

    Args:
        directory: Where to write.
        report: The evaluation report (JSON-serialisable), see `render_html`.
        images: Extra PNG images by file name, embedded in the page.

    Returns:
        The paths of `report.json` and `report.html`.
    """
    page = render_html(report, images)
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, "report.json")
    html_path = os.path.join(directory, "report.html")
    write_text(json_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    write_text(html_path, page)
    return json_path, html_path
