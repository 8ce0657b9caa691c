"""The evaluation report: train and score on several splits, then write `report.html` and `report.json`.

    python -m recsys_core.report                           # ML-100K: random split, seeds 42, 1, 2, 3; temporal split
    python -m recsys_core.report --output-dir report --seeds 42,7 --splits random --epochs 1

Every figure comes from `train.py`'s own run (`training.run_experiment`): the
job's lists scored by `protocol.py`, the rating models' test RMSE, the baselines
computed in the same run. Seed 42 of the random split is the TFRS tutorials'
split and is shown on its own; the other seeds give the mean ± spread.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys

import numpy as np
import tensorflow as tf

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from recsys_core.bundle import MANIFEST, PLOTS, read_text
from recsys_core.config import EXPERIMENTS, apply_overrides, experiment
from recsys_core.console import configure_logging
from recsys_core.evaluation.offline import POPULARITY_BINS
from recsys_core.registry import MODELS, RATING_MODELS

TUTORIAL_SEED = 42
SYSTEMS = {  # metrics.json key -> row label
    "final": "job's final lists (chosen re-ranker)",
    "final_ranking": "job, re-ranked by ranking",
    "final_dlrm": "job, re-ranked by dlrm",
    "final_dcn": "job, re-ranked by dcn",
    "final_multitask": "job, re-ranked by multitask",
    "final_none": "job, popularity prior only",
    "final_list": "job, ordered by the list ranker",
    "retrieval": "job's retrieval top-K (no re-rank)",
    "most_popular": "most popular unseen",
    "most_popular_recent": "most popular unseen, last N days",
    "ease": "EASE",
}
# Systems shown again over the users with and without training history, where a split has both.
BY_HISTORY = ("final", "most_popular", "most_popular_recent", "ease")
HISTORY_LABELS = {"with_history": "users with history", "without_history": "users without history"}
RATING_SYSTEMS = {name: name for name in RATING_MODELS}
_SHOWN = (
    "ndcg_at_10",
    "recall_at_10",
    "precision_at_10",
    "map_at_10",
    "hit_rate_at_10",
    "rel4_ndcg_at_10",
    "rel4_recall_at_10",
    "ndcg_at_20",
    "recall_at_20",
    "recall_at_100",
    "coverage_at_20",
    "gini_at_20",
    "novelty_at_20",
    "diversity_at_20",
)
_CURVE = ("recall_at_1", "recall_at_5", "recall_at_10", "recall_at_20", "recall_at_50", "recall_at_100")
_PROTOCOL = [
    "Each run trains every model with train.py on the training split less a validation part (20 %, carved "
    "from training the same way the test split is carved from the data). The validation part stops each "
    "model's training early and chooses the re-ranker, its blend weight and the EASE regularisation; the "
    "test split is read once, at the end.",
    "The lists are what the nightly job writes: the job's own kernel (recommend_block) runs on the exported "
    "bundle with every training interaction as the users' history, queries each user at their last "
    "interaction, takes the top-K unseen items, re-orders them by the chosen blend of standardised retrieval "
    "score, predicted rating and item popularity (a re-ranker is kept only if it beats no re-ranker on "
    "validation by two standard errors) or by the list ranker (a model trained with a listwise loss on the "
    "validation users' candidate lists, kept if its out-of-fold lists beat the blends' out-of-fold lists) and "
    "keeps the final 20. Popularity counts the interactions of the last N days before the newest "
    "one (N, or all time, chosen on validation). Users the bundle cannot serve get the job's popularity "
    "fallback, as in production; where a split has users without training history, the main lists are also "
    "shown over the users with and without it.",
    "Relevant items are every test item of the user (the '@k' columns) or only the test items rated 4 or 5 "
    "('rated ≥ 4'). Metrics are per-user means over every test user; training items are never recommended "
    "and so never count. Beyond-accuracy figures describe the top-20 lists: catalogue coverage, the Gini "
    "coefficient of item exposure, novelty (mean -log2 training popularity share) and intra-list diversity "
    "(mean pairwise genre cosine distance).",
    "Baselines run in the same process on the same split through the same metric code: most popular unseen "
    "items, all time and in the chosen window (the job's fallback kernel), EASE (closed form, seen items "
    "excluded) and, for rating prediction, "
    "user + item biases. Rating models are scored by RMSE and MAE on every test rating.",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="report", help="where report.html, report.json and bundles go")
    parser.add_argument("--experiment", default="ml100k", choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", default="42,1,2,3", help="random-split seeds; 42 is the tutorials' split")
    parser.add_argument("--temporal-seeds", default="42", help="training seeds of the temporal split (one cut)")
    parser.add_argument("--splits", default="random,temporal", help="random and/or temporal")
    parser.add_argument("--models", default="retrieval,ranking,dlrm,dcn")
    parser.add_argument("--epochs", type=int, help="cap every model's epochs (for a quick look)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def run_all(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Trains one bundle per (split, seed); returns each bundle's manifest, grouped by split kind."""
    from recsys_core.training.trainer import run_experiment

    runs: dict[str, list[dict]] = {}
    for kind in [s.strip() for s in args.splits.split(",") if s.strip()]:
        seeds = args.seeds if kind == "random" else args.temporal_seeds
        for seed in [int(s) for s in seeds.split(",") if s.strip()]:
            config = experiment(args.experiment)
            overrides = [f"data.split={kind}", f"training.models={args.models}", "training.verbose=0"]
            # The temporal cut does not depend on a seed: there the seed varies the training.
            overrides.append(f"data.seed={seed}" if kind == "random" else f"training.seed={seed}")
            overrides.append(f"training.output_dir={os.path.join(args.output_dir, 'bundles', f'{kind}-{seed}')}")
            if args.epochs:
                overrides += [f"{spec.section}.epochs={args.epochs}" for spec in MODELS.values()]
            config = apply_overrides(config, overrides + args.override).validate()
            logging.info("training on the %s split, seed %d", kind, seed)
            bundle = run_experiment(config)
            manifest = json.loads(read_text(os.path.join(bundle, MANIFEST)))
            runs.setdefault(kind, []).append({"seed": seed, "path": bundle, **manifest})
    return runs


def summarise(manifests: list[dict]) -> dict:
    """Mean, spread and per-run values of every shown figure, per system, over `manifests` (one per seed)."""
    systems: dict[str, dict] = {}

    def add(label: str, metric: str, values: list[float]) -> None:
        if values:
            systems.setdefault(label, {})[metric] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
                "values": values,
            }

    lists = [m["metrics"].get("lists", {}) for m in manifests]
    for key, label in SYSTEMS.items():
        for metric in _SHOWN:
            add(label, metric, [run[key][metric] for run in lists if key in run and metric in run[key]])
    if any("without_history" in run.get("final", {}) for run in lists):
        for group, words in HISTORY_LABELS.items():
            for key in BY_HISTORY:
                figures = [run[key][group] for run in lists if group in run.get(key, {})]
                for metric in _SHOWN:
                    add(f"{SYSTEMS[key]} · {words}", metric, [f[metric] for f in figures if metric in f])
    for key, label in RATING_SYSTEMS.items():
        for metric in ("rmse", "mae"):
            add(label, metric, [m["metrics"][key][metric] for m in manifests if key in m["metrics"]])
    bias = [m["metrics"]["baselines"]["user_item_bias"] for m in manifests]
    for metric in ("rmse", "mae"):
        add("user + item bias", metric, [b[metric] for b in bias])
    add("global mean", "rmse", [b["global_mean_rmse"] for b in bias])
    curves = {
        SYSTEMS[key]: {
            "k": [int(c.rsplit("_", 1)[1]) for c in _CURVE if c in lists[0][key]],
            "recall": [float(np.mean([run[key][c] for run in lists])) for c in _CURVE if c in lists[0][key]],
        }
        for key in SYSTEMS
        if lists and key in lists[0]
    }
    shares = {
        SYSTEMS[key]: [float(np.mean([run[key][f"popularity_share_{b}"] for run in lists])) for b in POPULARITY_BINS]
        for key in SYSTEMS
        if lists and key in lists[0]
    }
    choices = [m.get("reranking", {}) for m in manifests]
    return {
        "seeds": [m["seed"] for m in manifests],
        "systems": systems,
        "recall_curve": curves,
        "popularity": {"bins": list(POPULARITY_BINS), "shares": shares},
        "choices": [
            {
                k: c.get(k)
                for k in ("reranker", "blend_weight", "popularity_weight", "popularity_window_days", "ease_l2")
            }
            for c in choices
        ],
    }


def build_report(runs: dict[str, list[dict]]) -> dict:
    """The report dict of `report_page.render_html` from the manifests of every run."""
    splits = {}
    for kind, manifests in runs.items():
        if kind == "random":
            tutorial = [m for m in manifests if m["seed"] == TUTORIAL_SEED]
            others = [m for m in manifests if m["seed"] != TUTORIAL_SEED]
            if tutorial:
                splits["random, seed 42"] = {
                    **summarise(tutorial),
                    "description": "The TFRS tutorials' random 80/20 split (seed 42), one run.",
                }
            if others:
                seeds = ", ".join(str(m["seed"]) for m in others)
                splits["random, other seeds"] = {
                    **summarise(others),
                    "description": f"Random 80/20 splits with seeds {seeds}: mean ± standard deviation over seeds.",
                }
        else:
            seeds = ", ".join(str(m["seed"]) for m in manifests)
            splits[kind] = {
                **summarise(manifests),
                "description": "Global temporal split: the last 20 % of ratings by time are the test set; most test "
                f"users have no training history and get the job's popularity fallback. Training seeds {seeds}.",
            }
    for split in splits.values():
        chosen = "; ".join(
            f"seed {seed}: re-ranker {c['reranker']} at weight {c['blend_weight']}, popularity weight "
            f"{c['popularity_weight']}, popularity window {_window(c.get('popularity_window_days'))}, "
            f"EASE λ {c['ease_l2'] if c['ease_l2'] is not None else '(EASE left out)'}"
            for seed, c in zip(split["seeds"], split["choices"], strict=True)
        )
        split["description"] += f" Chosen on validation: {chosen}."
    return {
        "title": "Offline evaluation of the shipped lists",
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "protocol": _PROTOCOL,
        "splits": splits,
    }


def _window(days: float | None) -> str:
    return "all time" if not days else f"{days:g} days"


def diagnostic_images(runs: dict[str, list[dict]]) -> dict[str, bytes]:
    """Training curves and interaction heatmaps of the first run, as PNG bytes by file name."""
    first = next(iter(runs.values()))[0]
    directory = os.path.join(first["path"], PLOTS)
    images = {}
    if tf.io.gfile.isdir(directory):
        for name in sorted(tf.io.gfile.listdir(directory)):
            if name.endswith(".png"):
                with tf.io.gfile.GFile(os.path.join(directory, name), "rb") as handle:
                    images[name] = handle.read()
    return images


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    from recsys_core.report.page import write_report

    runs = run_all(args)
    report = build_report(runs)
    images = diagnostic_images(runs)
    report["images"] = sorted(images)
    json_path, html_path = write_report(args.output_dir, report, images)
    print(f"report: {html_path}\nfigures: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
