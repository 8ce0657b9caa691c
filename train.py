"""Train the retrieval, ranking and DLRM models and export a model bundle.

    python train.py                                   # ml100k experiment, local defaults
    python train.py --experiment smoke                # seconds, synthetic data
    python train.py --models retrieval,dcn --epochs 3 --strategy mirrored
    python train.py --override retrieval.temperature=0.05 --override data.split=temporal

See README.md for data sources and distributed training.
"""

from __future__ import annotations

import argparse
import json
import sys

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from recsys_core.config import DATA_SOURCES, EXPERIMENTS, PRECISIONS, SPLITS, STRATEGIES, apply_overrides, experiment
from recsys_core.console import configure_logging
from recsys_core.registry import MODEL_NAMES, MODELS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="ml100k", choices=sorted(EXPERIMENTS), help="named experiment")
    parser.add_argument("--models", help=f"comma-separated, of: {','.join(MODEL_NAMES)}")
    parser.add_argument("--data-source", choices=DATA_SOURCES)
    parser.add_argument("--data-path", help="GroupLens directory or .zip, or directory of Parquet tables")
    parser.add_argument("--schema", help="feature schema of the tables: movielens, shop, ids or a .json file")
    parser.add_argument("--split", choices=SPLITS)
    parser.add_argument(
        "--out-of-core",
        action="store_true",
        default=None,
        help="Parquet only: stream the interactions in batches, never whole (data larger than memory)",
    )
    parser.add_argument("--epochs", type=int, help="epochs for every model")
    parser.add_argument("--batch-size", type=int, help="global batch size for every model")
    parser.add_argument("--learning-rate", type=float, help="learning rate for every model")
    parser.add_argument("--output-dir", help="where bundles go (one sub-directory per run)")
    parser.add_argument("--strategy", choices=STRATEGIES)
    parser.add_argument("--tpu", help="TPU name, grpc://host:port, or 'local' (with --strategy tpu)")
    parser.add_argument("--cpu-devices", type=int, help="split the CPU into N logical devices (for mirrored)")
    parser.add_argument("--precision", choices=PRECISIONS, help="compute in 16 bits (mixed_*); bundles are float32")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="e.g. ranking.l2=1e-3")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), help="Keras verbosity: 1 shows progress bars")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace):
    config = experiment(args.experiment)
    flags = {
        "training.models": args.models,
        "data.source": args.data_source,
        "data.path": args.data_path,
        "data.schema": args.schema,
        "data.split": args.split,
        "data.out_of_core": args.out_of_core,
        "training.output_dir": args.output_dir,
        "training.strategy": args.strategy,
        "training.tpu": args.tpu,
        "training.cpu_devices": args.cpu_devices,
        "training.precision": args.precision,
        "training.verbose": args.verbose,
    }
    for section in dict.fromkeys(spec.section for spec in MODELS.values()):
        flags[f"{section}.epochs"] = args.epochs
        flags[f"{section}.batch_size"] = args.batch_size
        flags[f"{section}.learning_rate"] = args.learning_rate
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None]
    return apply_overrides(config, overrides + args.override).validate()


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        config = build_config(args)
    except ValueError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    from recsys_core.data import DataError, SchemaError
    from recsys_core.distribute import StrategyError
    from recsys_core.lease import LeaseHeld
    from recsys_core.training.trainer import TrainingError, run_experiment

    try:
        bundle = run_experiment(config)
    except (DataError, SchemaError, StrategyError, TrainingError, LeaseHeld) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 1
    if bundle is None:
        print("non-chief worker done; the chief worker wrote the bundle")
        return 0
    from recsys_core.bundle import METRICS, read_text

    print(json.dumps(json.loads(read_text(f"{bundle}/{METRICS}")), indent=2))
    print(f"bundle: {bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
