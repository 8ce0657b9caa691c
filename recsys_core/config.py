"""Typed configuration tree, named experiments and `key=value` overrides.

The resolved config is saved in every model bundle, so a run can be repeated
from its bundle alone.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from recsys_core.registry import MODEL_NAMES, MODELS

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DATA_SOURCES = ("grouplens", "tfds", "parquet", "synthetic", "shop")
SPLITS = ("random", "temporal")


@dataclass
class DataConfig:
    """Where the interactions come from and how they are split."""

    source: str = "grouplens"
    # GroupLens directory or .zip (ml-100k / ml-1m format), or a directory of
    # Parquet tables (interactions/, users/, items/).
    path: str = "../shared/data/ml-100k"
    # Feature schema of the users and items tables: a built-in name (movielens, shop,
    # ids) or a .json file; empty: the source's own (ids only for Parquet tables).
    schema: str = ""
    tfds_name: str = "movielens/100k-ratings"
    split: str = "random"
    test_fraction: float = 0.2
    # Carved from the training split (the same kind of split) for early stopping
    # and every choice made after training; the test split is read once, at the end.
    # 20 %: with 10 % the validation lists of ML-100K held ~8 items a user, too few to tell the list ranker's
    # gain from noise on two seeds of four (docs/benchmarks.md).
    validation_fraction: float = 0.2
    seed: int = 42
    # Parquet tables only: stream `interactions` in batches, never holding them whole (for data larger
    # than memory). Rows are split by a seeded hash of their position (random) or by time cuts from a
    # sample (temporal), and the offline protocol scores the users of a sample of at most
    # `protocol_ratings` ratings (`recsys_core/data/streaming.py`).
    out_of_core: bool = False
    protocol_ratings: int = 1_000_000
    synthetic_users: int = 2_000
    synthetic_items: int = 500
    synthetic_interactions_per_user: int = 40
    synthetic_seed: int = 7


@dataclass
class FitConfig:
    """Optimiser settings every model has."""

    epochs: int = 5
    batch_size: int = 1024
    learning_rate: float = 0.01
    optimizer: str = "adam"


@dataclass
class RetrievalConfig(FitConfig):
    """Two-tower retrieval model (TFRS `Retrieval` task, in-batch softmax)."""

    epochs: int = 5
    batch_size: int = 1024
    learning_rate: float = 0.003
    embedding_dim: int = 32
    # Dense layers on top of each tower's concatenated features; the last size
    # is the dimension of the query and candidate embeddings.
    tower_layers: tuple[int, ...] = (32,)
    use_user_features: bool = True
    # Absolute-time features make a user's embedding depend on when the job asks;
    # see README "query-time policy".
    use_time: bool = False
    # Mean embedding of the user's last `history_length` items in the query tower.
    use_history: bool = True
    history_length: int = 100
    # The item features the schema feeds to the towers (titles, genres, categories...).
    use_item_features: bool = True
    temperature: float = 0.2
    # logQ correction with each item's training frequency (TFRS
    # `candidate_sampling_probability`); keeps popularity in the scores.
    sampling_correction: bool = True
    # Share of the logQ correction applied (logits lowered by strength * log frequency):
    # above 1 leaves more popularity in the scores, below 1 less (measured on MovieLens-100K).
    correction_strength: float = 1.0
    # Masks in-batch negatives that are the positive item itself. Costs ~20 % of
    # training speed and made no measurable difference on MovieLens-100K.
    remove_accidental_hits: bool = False
    l2: float = 0.0


@dataclass
class RankingConfig(FitConfig):
    """Rating regression on user and item features."""

    epochs: int = 20  # at most: validation RMSE stops it earlier
    batch_size: int = 1024
    learning_rate: float = 0.003
    embedding_dim: int = 32
    hidden_layers: tuple[int, ...] = (64, 32)
    l2: float = 1e-3
    # Absolute time and the user's history did not lower validation RMSE on MovieLens-100K.
    use_time: bool = False
    use_history: bool = False


@dataclass
class DlrmConfig(FitConfig):
    """DLRM (dot interaction) or DCN (cross layers) rating model."""

    epochs: int = 20  # at most: validation RMSE stops it earlier
    batch_size: int = 256
    learning_rate: float = 0.001
    embedding_dim: int = 16
    bottom_layers: tuple[int, ...] = (32, 16)
    top_layers: tuple[int, ...] = (64, 32)
    cross_layers: int = 2
    l2: float = 3e-3
    use_time: bool = False  # sin/cos of hour of day and of week in the bottom MLP: worse validation RMSE
    self_interaction: bool = False  # DLRM: also each vector's dot product with itself


@dataclass
class MultitaskConfig(FitConfig):
    """Shared towers trained on a weighted sum of retrieval and rating losses."""

    epochs: int = 10
    batch_size: int = 2048
    retrieval_weight: float = 1.0
    rating_weight: float = 1.0
    rating_layers: tuple[int, ...] = (64, 32)


@dataclass
class ListRankerConfig(FitConfig):
    """The list ranker (`models/list_ranker.py`): fitted on the validation lists, kept if it beats the blend."""

    enabled: bool = True
    epochs: int = 40  # at most: a held-out part of its lists stops it earlier
    batch_size: int = 32  # lists (users) per step
    learning_rate: float = 0.003
    layers: tuple[int, ...] = (32,)
    cross_layers: int = 1
    # Chosen by out-of-fold validation NDCG@10 (docs/benchmarks.md): with 19 features and a few hundred lists,
    # stronger than the rating models'.
    l2: float = 1e-2
    members: int = 3  # fits from consecutive seeds, averaged
    # The rating model whose predicted rating is one of its features ("" for none; absent from the run: none).
    rating_model: str = "ranking"
    # Candidates each other source (most popular unseen in the window; highest item-to-item affinity) adds to the
    # retrieval top-K before the list ranker orders them.
    extra_candidates: int = 50
    # Rank of its item-to-item factors (EASE's weights at the chosen regularisation, `baselines.low_rank`); the
    # bundle holds 2 x items x rank float32 (20 000 items: 82 MB). Chosen by out-of-fold validation NDCG@10
    # (docs/benchmarks.md).
    affinity_rank: int = 512


@dataclass
class TrainingConfig:
    """What to train, where, and where the bundle goes."""

    models: tuple[str, ...] = ("retrieval", "ranking", "dlrm")
    strategy: str = "default"
    tpu: str = ""
    # Splits the host CPU into this many logical devices (0: leave it alone),
    # so that `mirrored` can be exercised without GPUs.
    cpu_devices: int = 0
    # Keras dtype policy of the fits: "mixed_bfloat16" (TPUs, recent GPUs, CPUs with AVX512-BF16 or AMX)
    # or "mixed_float16" (GPUs; with loss scaling) compute in 16 bits and keep float32 variables.
    # Bundles are float32 either way.
    precision: str = "float32"
    output_dir: str = "runs"
    # Where each run writes its example files (removed at its end): "" for local scratch, or any
    # tf.io.gfile URL that every input pipeline's host can read, e.g. gs://bucket/scratch for Cloud TPUs
    # whose hosts are not this machine.
    examples_dir: str = ""
    seed: int = 1
    eval_ks: tuple[int, ...] = (10, 100)
    index_k: int = 100
    # Stops a model when its validation loss (RMSE for rating models) has not
    # improved for this many epochs, keeping the best epoch's weights.
    early_stopping_patience: int = 2
    # Fits every model again on the whole training split (fitting + validation
    # parts) for its best number of epochs; choices made on validation are kept.
    refit: bool = True
    # The job's lists: retrieval depth and rows per user, as the job's defaults.
    top_k: int = 100
    final_k: int = 20
    # Candidate weights of the re-ranker and of a popularity prior in the final order,
    # chosen on validation (see scoring.blend).
    blend_weights: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
    popularity_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    # Popularity as of the newest interaction counts the interactions of the last N days (0: all time), ties
    # broken by all-time counts; N is chosen on validation by the most-popular-unseen lists, and both the
    # fallback (users without history) and the prior above use it (see data.activity.item_popularity).
    popularity_windows_days: tuple[float, ...] = (0.0, 3.0, 7.0, 14.0, 30.0, 90.0)
    # EASE baseline regularisation, chosen on validation.
    ease_l2: tuple[float, ...] = (100.0, 300.0, 1000.0)
    # EASE inverts an [items, items] matrix (8 * items^2 bytes, a few times over): above this
    # many items the protocol leaves the EASE baseline out and says so.
    ease_max_items: int = 20_000
    verbose: int = 1  # Keras: 1 progress bars, 2 one line per epoch, 0 silent


@dataclass
class ExperimentConfig:
    """The whole tree; one experiment is one of these."""

    name: str = "ml100k"
    data: DataConfig = field(default_factory=DataConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    dlrm: DlrmConfig = field(default_factory=DlrmConfig)
    dcn: DlrmConfig = field(default_factory=DlrmConfig)
    multitask: MultitaskConfig = field(default_factory=MultitaskConfig)
    list_ranker: ListRankerConfig = field(default_factory=ListRankerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def validate(self) -> ExperimentConfig:
        """Raises `ValueError` naming the first bad value; returns self."""
        _check_choice("data.source", self.data.source, DATA_SOURCES)
        _check_choice("data.split", self.data.split, SPLITS)
        _check_choice("training.strategy", self.training.strategy, STRATEGIES)
        _check_choice("training.precision", self.training.precision, PRECISIONS)
        for model in self.training.models:
            _check_choice("training.models", model, MODEL_NAMES)
        if not self.training.models:
            raise ValueError("training.models is empty: name at least one of " + ", ".join(MODEL_NAMES))
        if not self.retrieval.tower_layers:
            raise ValueError("retrieval.tower_layers is empty: the towers need at least one layer (the embedding size)")
        if self.data.out_of_core and self.data.source != "parquet":
            raise ValueError(f"data.out_of_core streams Parquet tables; data.source is {self.data.source!r}")
        if self.data.protocol_ratings < 1:
            raise ValueError(f"data.protocol_ratings must be positive, got {self.data.protocol_ratings}")
        for key in ("test_fraction", "validation_fraction"):
            if not 0.0 < getattr(self.data, key) < 1.0:
                raise ValueError(f"data.{key} must be in (0, 1), got {getattr(self.data, key)}")
        top_k, final_k = self.training.top_k, self.training.final_k
        if not 1 <= final_k <= top_k:
            raise ValueError(f"training.final_k must be in 1..training.top_k ({top_k}), got {final_k}")
        windows = self.training.popularity_windows_days
        if not windows or min(windows) < 0:
            raise ValueError(f"training.popularity_windows_days must be days >= 0 (0: all time), got {windows}")
        for name in {spec.section for spec in MODELS.values()}:
            fit: FitConfig = getattr(self, name)
            if fit.epochs < 1 or fit.batch_size < 1 or fit.learning_rate <= 0:
                raise ValueError(f"{name}: epochs, batch_size and learning_rate must be positive, got {fit}")
            _check_choice(f"{name}.optimizer", fit.optimizer, ("adam", "adagrad", "sgd"))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not one of: {', '.join(choices)}")


def _smoke() -> ExperimentConfig:
    """Tiny synthetic run: seconds, for tests and a first look."""
    config = ExperimentConfig(name="smoke")
    # 10 % validation: on 6 000 ratings the models' fitting part matters more than the power of the choices
    # (the strategy-parity test compares ranking RMSE within 0.01, about this data's seed-to-seed spread).
    config.data = DataConfig(
        source="synthetic",
        synthetic_users=300,
        synthetic_items=120,
        synthetic_interactions_per_user=20,
        validation_fraction=0.1,
    )
    for fit in _fit_sections(config):
        fit.epochs = 2
        fit.batch_size = 256
    config.retrieval.embedding_dim = 16
    config.retrieval.tower_layers = (16,)
    config.ranking.embedding_dim = 8
    config.ranking.hidden_layers = (16,)
    config.dlrm.embedding_dim = config.dcn.embedding_dim = 8
    config.dlrm.bottom_layers = config.dcn.bottom_layers = (16, 8)
    config.dlrm.top_layers = config.dcn.top_layers = (16,)
    config.dlrm.learning_rate = config.dcn.learning_rate = 0.01  # two short epochs: the default 1e-3 barely moves
    config.multitask.rating_layers = (16,)
    config.list_ranker.members = 1
    config.training.eval_ks = (10, 50)
    config.training.index_k = 50
    return config


def _fit_sections(config: ExperimentConfig) -> list[FitConfig]:
    return [getattr(config, section) for section in dict.fromkeys(spec.section for spec in MODELS.values())]


def _ml1m() -> ExperimentConfig:
    config = ExperimentConfig(name="ml1m")
    config.data.path = "../shared/data/ml-1m"
    config.data.tfds_name = "movielens/1m-ratings"
    for fit in _fit_sections(config):
        fit.batch_size *= 4
    return config


def _tfds_100k() -> ExperimentConfig:
    config = ExperimentConfig(name="tfds_100k")
    config.data.source = "tfds"
    return config


def _synthetic() -> ExperimentConfig:
    config = ExperimentConfig(name="synthetic")
    config.data = DataConfig(source="synthetic", synthetic_users=20_000, synthetic_items=5_000)
    return config


def _shop() -> ExperimentConfig:
    """The synthetic shop (`schemas/shop.json`): categories, brands, prices, tags, countries."""
    config = ExperimentConfig(name="shop")
    config.data = DataConfig(
        source="shop", synthetic_users=3_000, synthetic_items=1_000, synthetic_interactions_per_user=25
    )
    return config


EXPERIMENTS: dict[str, typing.Callable[[], ExperimentConfig]] = {
    "ml100k": ExperimentConfig,
    "ml1m": _ml1m,
    "tfds_100k": _tfds_100k,
    "synthetic": _synthetic,
    "shop": _shop,
    "smoke": _smoke,
}


def experiment(name: str) -> ExperimentConfig:
    """Returns a fresh config of the named experiment."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]()


def apply_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Applies `section.key=value` strings, e.g. `retrieval.epochs=3`, in place."""
    for item in overrides:
        path, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        *parents, key = path.strip().split(".")
        node = config
        for part in parents:
            if not dataclasses.is_dataclass(getattr(node, part, None)):
                raise ValueError(f"override {item!r}: {part!r} is not a config section")
            node = getattr(node, part)
        hints = typing.get_type_hints(type(node))
        if key not in hints or dataclasses.is_dataclass(getattr(node, key)):
            known = ", ".join(f.name for f in dataclasses.fields(node))
            raise ValueError(f"override {item!r}: unknown key {key!r}; known keys: {known}")
        setattr(node, key, _parse(raw.strip(), hints[key], item))
    return config


def from_dict(data: dict) -> ExperimentConfig:
    """Rebuilds a config saved with `to_dict` (e.g. from a bundle manifest)."""
    config = ExperimentConfig()
    for section in dataclasses.fields(config):
        value = data.get(section.name)
        if dataclasses.is_dataclass(getattr(config, section.name)) and isinstance(value, dict):
            node = getattr(config, section.name)
            for key, raw in value.items():
                setattr(node, key, tuple(raw) if isinstance(raw, list) else raw)
        elif value is not None:
            setattr(config, section.name, value)
    return config


def _parse(raw: str, kind: typing.Any, item: str) -> typing.Any:
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if typing.get_origin(kind) is tuple:
            element = typing.get_args(kind)[0]
            return tuple(element(part) for part in raw.split(",") if part.strip())
        return kind(raw)
    except ValueError:
        raise ValueError(f"override {item!r}: {raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None
