"""A run's splits prepared from Parquet tables in passes over their interactions, never holding them whole.

Each pass reads `interactions` a batch at a time (`ParquetTables.rating_batches`):

1. (temporal splits only) a sample of the timestamps, whose quantiles give the cut times;
2. each row's split (`RowSplit`), and per phase what the models need of it: the
   vocabulary (`VocabularyBuilder`), each user's last items (`HistoryBuilder`) and each
   item's number of ratings; each user's number of ratings;
3. the example files of every split, through the external shuffle of
   `ExampleFileWriter`, and the ratings of the protocol's sample of users.

Memory is that of the users and items tables, `history_length` items per user, a
bounded sample per number and one batch: it does not grow with the interactions. What
changes against `prepared.in_memory`: a random split is decided row by row, by a
seeded hash of each row's position (the split's shares are then met on average, not to
the row), a temporal one by cut times from at most `CUT_SAMPLE` timestamps; and the
offline protocol scores all the ratings of a random sample of users holding at most
`data.protocol_ratings` ratings (every user, when they all fit).
"""

from __future__ import annotations

import contextlib
import logging
import os

import numpy as np
import pyarrow as pa

from recsys_core.config import DataConfig
from recsys_core.data.example_files import ExampleFileWriter
from recsys_core.data.parquet_source import ParquetTables
from recsys_core.data.pipeline import ExampleFiles, ExampleMaker, HistoryBuilder
from recsys_core.data.prepared import EXAMPLE_FILES, PHASES, Phase, PreparedSplits, assemble_phase
from recsys_core.data.tables import RATINGS_SCHEMA, DataError, InteractionData, item_counts, joined, positions
from recsys_core.features.vocabulary import VocabularyBuilder
from recsys_core.schema import ITEM_ID, TIMESTAMP, USER_ID

log = logging.getLogger(__name__)

FIT, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = ("fit", "validation", "test")
CUT_SAMPLE = 1_000_000  # timestamps a temporal split's cut times are read from


def prepare(
    tables: ParquetTables, config: DataConfig, length: int, directory: str, seed: int, refit: bool = True
) -> PreparedSplits:
    """Streams `tables`' interactions into the splits of a run (see the module's docstring).

    Args:
        tables: the opened Parquet data set.
        config: the split's kind, fractions and seed, and `protocol_ratings`.
        length: history length of the model inputs.
        directory: where the example files go (any `tf.io.gfile` location).
        seed: shuffles the example files' rows.
        refit: also write the `train` phase's files (the whole training split).

    Raises:
        DataError: the data cannot be read, or a split would be empty.
    """
    entities = InteractionData(RATINGS_SCHEMA.empty_table(), tables.users, tables.items, tables.schema, {})
    row_split = RowSplit.of(tables, config)
    log.info(
        "streaming %d ratings from %s: pass 1 of 2 (vocabularies, histories, frequencies)",
        tables.num_ratings,
        tables.root,
    )
    stats = {name: _PhaseStats(entities, length) for name in PHASES}
    user_ratings = np.zeros(tables.users.num_rows, np.int64)
    for first, batch in tables.rating_batches():
        fit, validation, _ = _parts(batch, row_split.labels(batch, first))
        stats["fit"].add(entities.with_ratings(fit))
        stats["train"].add(entities.with_ratings(fit))
        stats["train"].add(entities.with_ratings(validation))
        user_ratings += np.bincount(positions(batch[USER_ID], tables.users[USER_ID]), minlength=len(user_ratings))
    rows = {"fit": stats["fit"].rows, "validation": stats["train"].rows - stats["fit"].rows}
    rows["test"] = int(user_ratings.sum()) - stats["train"].rows
    _check_not_empty(rows, tables.root, config.split)
    sampled = _sample_users(user_ratings, config.protocol_ratings, config.seed)

    log.info("pass 2 of 2: example files of every split in %s", directory)
    files, protocol = _write_examples(tables, entities, row_split, stats, sampled, rows, directory, seed, refit)
    histories = {name: stats[name].histories.matrix() for name in PHASES}

    def make_phase(name: str) -> Phase:
        if name not in files:
            raise ValueError("the train phase's example files were not written (refit=False)")
        vocabulary = stats[name].vocabulary.build()
        return assemble_phase(name, vocabulary, files, histories, tables.items, tables.schema)

    sample = None
    if user_ratings[~sampled].any():
        sample = {
            "users": int(sampled.sum()),
            "of_users": int((user_ratings > 0).sum()),
            "ratings": int(user_ratings[sampled].sum()),
            "of_ratings": int(user_ratings.sum()),
        }
        log.info("the offline protocol scores a sample of users: %s", sample)
    return PreparedSplits(rows=rows, protocol=protocol, sample=sample, lineage=tables.lineage, make_phase=make_phase)


def _write_examples(
    tables: ParquetTables,
    entities: InteractionData,
    row_split: RowSplit,
    stats: dict[str, _PhaseStats],
    sampled: np.ndarray,
    rows: dict[str, int],
    directory: str,
    seed: int,
    refit: bool,
) -> tuple[dict[str, ExampleFiles], dict[str, InteractionData]]:
    """Pass 2: the example files (`fit` and `validation` with the fitting part's frequencies; `train`, the
    refit's, and `test` with the whole training split's) and the protocol's tables of the `sampled` users."""
    held = {"fit": (FIT,), "validation": (VALIDATION,), "test": (TEST,), "train": (FIT, VALIDATION)}
    counts = {**rows, "train": rows["fit"] + rows["validation"]}
    plan = {  # files: (directory, phase whose frequencies it takes, splits it holds, rows)
        name: (*EXAMPLE_FILES[name], held[name], counts[name])
        for name in ("fit", "validation", "test", *(("train",) if refit else ()))
    }
    makers = {name: ExampleMaker(entities, stats[name].item_counts, stats[name].rows) for name in PHASES}
    sample_parts = {name: [RATINGS_SCHEMA.empty_table()] for name in SPLIT_NAMES}
    with contextlib.ExitStack() as stack:
        writers = {
            name: stack.enter_context(ExampleFileWriter(os.path.join(directory, path), total, seed=seed))
            for name, (path, _, _, total) in plan.items()
        }
        for first, batch in tables.rating_batches():
            labels = row_split.labels(batch, first)
            parts = [entities.with_ratings(part) for part in _parts(batch, labels)]
            for name, (_, phase, held, _) in plan.items():
                for label in held:
                    writers[name].write(makers[phase].arrays(parts[label]))
            in_sample = sampled[positions(batch[USER_ID], tables.users[USER_ID])]
            for name, part in zip(SPLIT_NAMES, _parts(batch, np.where(in_sample, labels, -1)), strict=True):
                sample_parts[name].append(part)
    files = {name: ExampleFiles(tuple(writer.paths), plan[name][3]) for name, writer in writers.items()}
    protocol = {name: entities.with_ratings(pa.concat_tables(parts)) for name, parts in sample_parts.items()}
    protocol["train"] = joined([protocol["fit"], protocol["validation"]])
    return files, protocol


def _check_not_empty(rows: dict[str, int], root: str, kind: str) -> None:
    for name, count in rows.items():
        if not count:
            fix = (
                "a temporal split needs timestamps that vary: use --split random, or fill interactions.timestamp"
                if kind == "temporal"
                else "there are too few interactions for data.test_fraction and data.validation_fraction"
            )
            raise DataError(f"the {name} split of {root} is empty ({rows}); {fix}")


class RowSplit:
    """Which split (`FIT`, `VALIDATION`, `TEST`) each interaction falls in, decided row by row.

    Random: a seeded hash of the row's position in the file set (`row_uniforms`) below
    `test_fraction` is test; below `test_fraction + (1 - test_fraction) * validation_fraction`,
    validation. Temporal: rows at or after the test cut time are test, those at or after the
    validation cut time validation; the cuts are the quantiles of a sample of timestamps.
    """

    def __init__(self, config: DataConfig, cuts: tuple[int, int] | None = None) -> None:
        self._config, self._cuts = config, cuts

    @classmethod
    def of(cls, tables: ParquetTables, config: DataConfig) -> RowSplit:
        """The split `config` declares; a temporal one reads the cut times in a pass over `tables`."""
        if config.split == "random":
            return cls(config)
        rate = min(1.0, CUT_SAMPLE / max(1, tables.num_ratings))
        log.info("temporal split: reading the cut times from a sample of timestamps")
        sample = [np.zeros(0, np.int64)]
        for first, batch in tables.rating_batches():
            keep = row_uniforms(first + np.arange(batch.num_rows), config.seed) < rate
            sample.append(batch[TIMESTAMP].to_numpy()[keep])
        times = np.sort(np.concatenate(sample))
        if not len(times):
            raise DataError(f"interactions in {tables.root} have no rows")
        test_cut = int(times[min(len(times) - 1, round(len(times) * (1 - config.test_fraction)))])
        before = times[times < test_cut]
        fit_rows = round(len(before) * (1 - config.validation_fraction))
        validation_cut = int(before[fit_rows]) if fit_rows < len(before) else test_cut
        return cls(config, (validation_cut, test_cut))

    def labels(self, ratings: pa.Table, first: int) -> np.ndarray:
        """`[rows]` int8 split of each rating of `ratings`, whose first row is row `first` of the file set."""
        if self._cuts is None:
            draw = row_uniforms(first + np.arange(ratings.num_rows), self._config.seed)
            test, validation = self._config.test_fraction, self._config.validation_fraction
            return np.where(draw < test, TEST, np.where(draw < test + (1 - test) * validation, VALIDATION, FIT))
        times = ratings[TIMESTAMP].to_numpy()
        return np.where(times >= self._cuts[1], TEST, np.where(times >= self._cuts[0], VALIDATION, FIT))


def row_uniforms(rows: np.ndarray, seed: int) -> np.ndarray:
    """`[rows]` float64 in [0, 1): SplitMix64 of each row number and `seed`, a fixed draw per row."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) + np.uint64(seed + 1) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53


class _PhaseStats:
    """What the models of one phase need of its ratings, added a batch at a time."""

    def __init__(self, entities: InteractionData, length: int) -> None:
        self.vocabulary = VocabularyBuilder(entities)
        self.histories = HistoryBuilder(entities, length)
        self.item_counts = np.zeros(entities.items.num_rows)
        self.rows = 0
        self._items = entities.items[ITEM_ID]

    def add(self, part: InteractionData) -> None:
        self.vocabulary.add(part)
        self.histories.add(part.ratings)
        self.item_counts += item_counts(part.ratings, self._items)
        self.rows += part.ratings.num_rows


def _parts(ratings: pa.Table, labels: np.ndarray) -> list[pa.Table]:
    """The rows of `ratings` labelled `FIT`, `VALIDATION` and `TEST`."""
    return [ratings.filter(pa.array(labels == label)) for label in (FIT, VALIDATION, TEST)]


def _sample_users(user_ratings: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """`[users]` bool: users in a seeded random order, as many as hold at most `cap` ratings (one at least)."""
    order = np.random.default_rng(seed).permutation(len(user_ratings))
    taken = max(1, int(np.searchsorted(np.cumsum(user_ratings[order]), cap, side="right")))
    sampled = np.zeros(len(user_ratings), bool)
    sampled[order[:taken]] = True
    return sampled
