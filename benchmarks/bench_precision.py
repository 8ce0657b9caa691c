"""Training speed and test figures of each model in float32, `mixed_bfloat16` and with XLA auto-clustering.

    python benchmarks/bench_precision.py [--data-path ../shared/data/ml-100k] [--epochs 5] [--rounds 2]

Every model is fitted on the tutorials' 80 % training split of MovieLens-100K, from the same
example files, once per setting and round, the settings taking turns (the machine is noisy).
Reports per model and setting the median examples/s over epochs after the first (which
traces, and compiles for XLA), its ratio to float32 in the same run, and the test figures of
the model as exported (the float32 copy): RMSE, or factorized top-100 accuracy for retrieval.

XLA runs as TensorFlow's auto-clustering (`tf.config.optimizer.set_jit`): whole-step
`jit_compile` cannot compile our models, which look their string ids up inside.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

os.environ.setdefault("TF_XLA_FLAGS", "--tf_xla_cpu_global_jit")  # auto-clustering on CPUs too

import recsys_core  # noqa: E402, F401  (selects Keras 2 before TensorFlow is imported)

# isort: split
import tensorflow as tf  # noqa: E402
from common import EpochTimer  # noqa: E402

from recsys_core.config import experiment  # noqa: E402
from recsys_core.data.grouplens import read_grouplens  # noqa: E402
from recsys_core.data.pipeline import ModelInputs, make_dataset, steps_per_epoch  # noqa: E402
from recsys_core.data.prepared import in_memory  # noqa: E402
from recsys_core.distribute import dtype_policy  # noqa: E402
from recsys_core.models.builders import build_model, build_optimizer  # noqa: E402
from recsys_core.training.trainer import evaluate, float32_copy  # noqa: E402

SETTINGS = ("float32", "mixed_bfloat16", "xla")


def fit_once(name: str, setting: str, inputs: ModelInputs, vocab, epochs: int) -> dict:
    """Examples/s per epoch of one fit in `setting`, and the exported model's test figures."""
    config = experiment("ml100k")
    strategy = tf.distribute.get_strategy()
    with dtype_policy("float32" if setting == "xla" else setting):
        model = build_model(name, config, inputs.schema, vocab)
        model.compile(optimizer=build_optimizer(getattr(config, name)))
    batch = getattr(config, name).batch_size
    steps, timer = steps_per_epoch(inputs.train.rows, batch), EpochTimer()
    dataset = make_dataset(inputs.train, inputs.histories, batch, config.training.seed)
    tf.config.optimizer.set_jit("autoclustering" if setting == "xla" else False)
    try:
        model.fit(dataset, epochs=epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    finally:
        tf.config.optimizer.set_jit(False)
    if model.dtype_policy.name != "float32":
        model = float32_copy(name, config, vocab, strategy, inputs, model)
    figures = evaluate(name, model, config, vocab, inputs)
    return {"examples_per_second": [steps * batch / s for s in timer.seconds], **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", default="../shared/data/ml-100k")
    parser.add_argument("--models", default="retrieval,ranking,dlrm")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = read_grouplens(args.data_path)
    config = experiment("ml100k")  # its seed-42 split; the refit's inputs: the whole training split
    examples = tempfile.mkdtemp(prefix="bench-precision-")
    phase = in_memory(data, config.data, config.retrieval.history_length, examples, seed=0).phase("train")
    vocab, inputs = phase.vocabulary, phase.inputs
    result = {}
    for name in args.models.split(","):
        runs = {setting: [] for setting in SETTINGS}
        for _ in range(args.rounds):
            for setting in SETTINGS:
                runs[setting].append(fit_once(name, setting, inputs, vocab, args.epochs))
                print(name, setting, json.dumps(runs[setting][-1]), flush=True)
        speed = {s: statistics.median(x for run in r for x in run["examples_per_second"][1:]) for s, r in runs.items()}
        result[name] = {
            setting: {
                "examples_per_second": round(speed[setting]),
                "of_float32": round(speed[setting] / speed["float32"], 3),
                **{
                    key: round(statistics.mean(run[key] for run in r), 4)
                    for key in ("rmse", "factorized_top_100")
                    if key in r[0]
                },
            }
            for setting, r in runs.items()
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
