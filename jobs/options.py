"""Command-line options of the batch job, validated before any pipeline is built."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import tempfile
import uuid

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

from jobs import publish
from jobs.gate import Gate, parse_metric_bounds
from recsys_core.bundle import BundleError, is_local, read_manifest
from recsys_core.config import DATA_SOURCES, DataConfig, TrainingConfig
from recsys_core.data.activity import ALL_TIME
from recsys_core.lease import DEFAULT_SECONDS as DEFAULT_LEASE_SECONDS
from recsys_core.manifest import BundleManifest
from recsys_core.registry import RATING_MODELS
from recsys_core.serving.ann import INSTALL_HINT, ScannConfig, scann_available
from recsys_core.serving.list_features import LIST_FEATURES, LIST_RANKER, NO_RERANKER
from recsys_core.serving.recommend import RecommendSettings

SHUFFLES = ("auto", "files", "beam")
INDEXES = ("exact", "scann")


class RecommendOptions(PipelineOptions):
    """`--bundle`, `--output`, `--run-date` and the job's knobs; other flags go to Beam."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        # Not `required`: Beam parses every registered options class whenever any options are viewed.
        parser.add_argument("--bundle", help="bundle directory, or a training output dir with LATEST (required)")
        parser.add_argument("--output", help="root of the output tables, local path or gs:// (required)")
        option = functools.partial(_option, parser)
        option("run_date", help="partition date YYYY-MM-DD (today)")
        option("data_source", choices=DATA_SOURCES)
        option("data_path")
        option("tfds_name")
        option("top_k", type=int, default=TrainingConfig.top_k, help="retrieval depth")
        option("final_k", type=int, default=TrainingConfig.final_k, help="rows per user")
        parser.add_argument(
            "--reranker",
            default="auto",
            help="auto (the bundle's choice), list (the list ranker), ranking, dlrm, dcn, multitask or none",
        )
        option(
            "blend_weight",
            type=float,
            help="weight of the re-ranker in the final order, 0..1 (default: the bundle's choice for that re-ranker)",
        )
        option(
            "popularity_weight",
            type=float,
            help="weight of the items' popularity in the final order, >= 0 (default: the bundle's choice)",
        )
        option(
            "popularity_window_days",
            type=float,
            help="popularity (the fallback's order and the prior) counts the interactions of the last N days up "
            "to the newest one, ties broken by all-time counts; 0 counts all time (default: the bundle's choice)",
        )
        option("block_size", type=int, default=1024)
        option(
            "max_seen_per_block",
            type=int,
            default=200_000,
            help="most seen items in one block of users: heavy users make smaller blocks",
        )
        option(
            "item_shard_size",
            type=int,
            help="score the catalogue in shards of at most this many items, merging their top-K (same lists)",
        )
        option(
            "max_bad_share",
            type=float,
            default=0.01,
            help="largest share of invalid rows in any input table before the run fails (default 0.01)",
        )
        option("similar_k", type=int, default=20)
        option(
            "lease_seconds",
            type=float,
            default=DEFAULT_LEASE_SECONDS,
            help="how long the output root's lease outlives its last heartbeat: a run killed on another machine "
            "blocks the next one at most this long (one on this machine does not)",
        )
        parser.add_argument(
            "--index",
            choices=INDEXES,
            default="exact",
            help="top-K retrieval: exact (every item scored) or scann (approximate, needs the [scann] extra; "
            "its recall against exact is measured on a sample of users and gated by --min-recall)",
        )
        option("scann_leaves", type=int, help="ScaNN partitions (default about sqrt(items))")
        option(
            "scann_leaves_to_search",
            type=int,
            help="ScaNN partitions searched per user (default leaves / 20, at least 16)",
        )
        option(
            "scann_reorder",
            type=int,
            default=ScannConfig.reorder,
            help="candidates ScaNN re-scores exactly, as a multiple of the depth asked (default 4)",
        )
        option(
            "recall_sample_every",
            type=int,
            default=RecommendSettings.recall_sample_every,
            help="with --index scann, every N-th user of a block is also retrieved exactly to measure recall",
        )
        option(
            "min_recall",
            type=float,
            default=Gate.min_recall,
            help="publish gate: least recall@K of --index scann against exact top-K on the sampled users",
        )
        option(
            "min_full_list_share",
            type=float,
            default=Gate.min_full_list_share,
            help="publish gate: least share of users with --final-k items",
        )
        option(
            "max_fallback_share",
            type=float,
            default=Gate.max_fallback_share,
            help="publish gate: largest share of users served by the popularity fallback",
        )
        option(
            "min_distinct_items",
            type=int,
            default=Gate.min_distinct_items,
            help="publish gate: fewest distinct items over all lists",
        )
        option(
            "min_distinct_item_share",
            type=float,
            default=Gate.min_distinct_item_share,
            help="publish gate: least share of distinct items over all lists, of as many as they could hold (a "
            "collapsed query tower gives everyone the same list)",
        )
        option(
            "min_bundle_metric",
            action="append",
            default=[],
            help="publish gate: PATH=VALUE, a floor on the bundle's offline metric PATH (dotted, e.g. "
            "lists.final.ndcg_at_10), repeatable; a NaN metric fails it",
        )
        option(
            "max_bundle_metric",
            action="append",
            default=[],
            help="publish gate: PATH=VALUE, a ceiling on an error metric of the bundle (e.g. ranking.rmse), "
            "repeatable; a NaN metric fails it",
        )
        parser.add_argument(
            "--shuffle",
            choices=SHUFFLES,
            default="auto",
            help="how rows reach their user's bucket: files (Arrow files under --temp_location, keeps "
            "the DirectRunner's memory flat), beam (a GroupByKey, for Dataflow's shuffle) or auto (files on the "
            "DirectRunner, beam elsewhere)",
        )


def _option(parser, name: str, **kwargs) -> None:
    """`--name_with_underscores` (Beam's spelling) and `--name-with-dashes`, both into `name`."""
    parser.add_argument(f"--{name}", f"--{name.replace('_', '-')}", dest=name, **kwargs)


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """Checked options: everything the pipeline needs, nothing it must re-validate."""

    bundle: str
    manifest: BundleManifest
    output: str
    scratch: str  # where raw rows wait for their bucket: under the temp location, never under `output`
    run_date: str
    data: DataConfig
    recommend: RecommendSettings  # how each block is scored; its `run_id` is set when the run starts
    popularity_window_days: float
    block_size: int
    max_seen_per_block: int
    max_bad_share: float
    lease_seconds: float
    similar_k: int
    shuffle: str  # "files" or "beam"
    gate: Gate


def midnight(run_date: str) -> int:
    """Midnight UTC of `run_date`, in seconds: the query time of users without history."""
    day = datetime.date.fromisoformat(run_date)
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp())


def canonical_date(value: str) -> str:
    """`value` if it is a calendar date written YYYY-MM-DD, else `ValueError`: one day has one spelling, so it
    gets one partition, and dates order as text (`20261122` and `2026-W48-1` are ISO dates too, refused)."""
    try:
        if len(value) == 10 and datetime.date.fromisoformat(value).isoformat() == value:
            return value
    except ValueError:
        pass
    raise ValueError(f"--run-date {value!r} is not a date of the form YYYY-MM-DD")


def validate(options: RecommendOptions) -> JobSettings:
    """Checks every option against the bundle and the file system; raises `ValueError` naming the bad value."""
    args = options.view_as(RecommendOptions)
    for flag, value in (("--bundle", args.bundle), ("--output", args.output)):
        if not value:
            raise ValueError(f"{flag} is required")
    run_date = canonical_date(args.run_date or datetime.date.today().isoformat())
    _check_numbers(args)
    try:
        manifest = read_manifest(args.bundle)
    except BundleError as error:
        raise ValueError(str(error)) from None
    for needed in ("query_embedding", "candidate_embedding"):
        if needed not in manifest.signatures:
            raise ValueError(f"bundle {manifest.path} has no {needed} signature: train it with the retrieval model")
    reranker, blend_weight, popularity_weight = _reranking(
        manifest, args.reranker, args.blend_weight, args.popularity_weight
    )
    window = args.popularity_window_days
    if window is None:
        window = manifest.reranking.popularity_window_days if manifest.reranking else ALL_TIME
    if window < 0:
        raise ValueError(f"--popularity-window-days must be at least 0 (0: all time), got {window}")
    data = dataclasses.replace(
        _training_data(manifest),
        **{
            k: v
            for k, v in (("source", args.data_source), ("path", args.data_path), ("tfds_name", args.tfds_name))
            if v
        },
    )
    _check_writable(args.output)
    return JobSettings(
        bundle=manifest.path,
        manifest=manifest,
        output=args.output,
        scratch=publish.scratch_root(
            options.view_as(GoogleCloudOptions).temp_location or tempfile.gettempdir(), args.output
        ),
        run_date=run_date,
        data=data,
        recommend=RecommendSettings(
            top_k=args.top_k,
            final_k=args.final_k,
            reranker=reranker,
            timestamp=midnight(run_date),
            run_id="",
            blend_weight=blend_weight,
            popularity_weight=popularity_weight,
            item_shard_size=args.item_shard_size,
            index=args.index,
            scann=ScannConfig(args.scann_leaves, args.scann_leaves_to_search, args.scann_reorder),
            recall_sample_every=args.recall_sample_every,
        ),
        popularity_window_days=float(window),
        block_size=args.block_size,
        max_seen_per_block=args.max_seen_per_block,
        max_bad_share=args.max_bad_share,
        lease_seconds=args.lease_seconds,
        similar_k=args.similar_k,
        shuffle=args.shuffle if args.shuffle != "auto" else ("files" if runs_locally(options) else "beam"),
        gate=Gate(
            args.min_full_list_share,
            args.max_fallback_share,
            args.min_distinct_items,
            args.min_distinct_item_share,
            args.min_recall,
            parse_metric_bounds(args.min_bundle_metric),
            parse_metric_bounds(args.max_bundle_metric, "--max-bundle-metric"),
        ),
    )


def runs_locally(options: PipelineOptions) -> bool:
    """The default DirectRunner, whose engine (FnApiRunner) keeps every shuffled row in the launcher process."""
    return options.view_as(StandardOptions).runner in (None, "DirectRunner")


def _check_numbers(args: RecommendOptions) -> None:
    """Shares within 0..1, sizes at least 1, --final-k within --top-k, ScaNN installed where asked for."""
    for flag, share in (
        ("--max-bad-share", args.max_bad_share),
        ("--min-full-list-share", args.min_full_list_share),
        ("--max-fallback-share", args.max_fallback_share),
        ("--min-recall", args.min_recall),
        ("--min-distinct-item-share", args.min_distinct_item_share),
    ):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{flag} must be within 0..1, got {share}")
    sizes = (("--top-k", args.top_k), ("--final-k", args.final_k), ("--block-size", args.block_size))
    sizes += (("--lease-seconds", args.lease_seconds),)
    sizes += (("--max-seen-per-block", args.max_seen_per_block), ("--item-shard-size", args.item_shard_size or 1))
    sizes += (("--scann-reorder", args.scann_reorder), ("--recall-sample-every", args.recall_sample_every))
    sizes += tuple(
        (f, v)
        for f, v in (("--scann-leaves", args.scann_leaves), ("--scann-leaves-to-search", args.scann_leaves_to_search))
        if v is not None
    )
    for flag, value in sizes:
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if args.index == "scann" and not scann_available():
        raise ValueError(f"--index scann needs ScaNN, which is not installed: {INSTALL_HINT}")
    if args.final_k > args.top_k:
        raise ValueError(f"--final-k {args.final_k} exceeds --top-k {args.top_k}: re-ranking keeps a subset")


def _reranking(
    manifest: BundleManifest, reranker: str, blend_weight: float | None, popularity_weight: float | None
) -> tuple[str, float, float]:
    """The re-ranker and the weights of the final order: as asked, else as chosen on validation at training."""
    chosen = manifest.reranking
    if reranker == "auto":
        reranker = chosen.reranker if chosen else NO_RERANKER
    rerankers = [name for name in (*RATING_MODELS, LIST_RANKER) if name in manifest.signatures]
    if reranker != NO_RERANKER and reranker not in rerankers:
        raise ValueError(
            f"--reranker {reranker!r} is not in bundle {manifest.path}; it has: {['auto', *rerankers, NO_RERANKER]}"
        )
    features = list(chosen.list_ranker_features) if chosen else []
    if reranker == LIST_RANKER and features != list(LIST_FEATURES):
        raise ValueError(
            f"bundle {manifest.path}: its list ranker reads the features {features}, this version computes "
            f"{list(LIST_FEATURES)}; retrain it with this version (python train.py), or leave the list ranker out "
            "with --reranker ranking (or none)"
        )
    if blend_weight is None:
        recorded = chosen.blend_weights if chosen else {}
        blend_weight = recorded.get(reranker, 1.0 if reranker != NO_RERANKER else 0.0)
    if popularity_weight is None:
        popularity_weight = (chosen.popularity_weights if chosen else {}).get(reranker, 0.0)
    if not 0.0 <= blend_weight <= 1.0:
        raise ValueError(f"--blend-weight must be within 0..1, got {blend_weight}")
    if popularity_weight < 0:
        raise ValueError(f"--popularity-weight must be at least 0, got {popularity_weight}")
    return reranker, float(blend_weight), float(popularity_weight)


def _training_data(manifest: BundleManifest) -> DataConfig:
    """The data the bundle was trained on (path made absolute at training time): the job's default input."""
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    data = DataConfig(**{k: v for k, v in manifest.config["data"].items() if k in fields})
    return dataclasses.replace(data, path=manifest.data_lineage.get("path", data.path))


def _check_writable(output: str) -> None:
    if not is_local(output):
        return  # remote file systems are checked by the runner when it stages files
    try:
        os.makedirs(output, exist_ok=True)
        probe = os.path.join(output, f".write-probe-{uuid.uuid4().hex}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"--output {output} is not writable: {error.strerror}") from None
