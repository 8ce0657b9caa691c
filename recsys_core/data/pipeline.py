"""Model inputs of a split (`ModelInputs`), written once as example files and read back through tf.data per
input pipeline; the pieces that make them (`ExampleMaker`, `HistoryBuilder`) take ratings in batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from recsys_core.data.example_files import ExampleFileWriter, example_dataset
from recsys_core.data.tables import InteractionData, item_counts, positions
from recsys_core.features.arrays import feature_arrays, item_inputs, string_bytes, user_inputs
from recsys_core.features.history import history_matrix
from recsys_core.schema import CANDIDATE_PROBABILITY, HISTORY, ITEM_ID, RATING, TIMESTAMP, USER_ID, FeatureSchema

HISTORY_ROW = "history_row"


CHUNK_ROWS = 65_536  # ratings joined with their features at a time, on the way to the example files


def example_arrays(split: InteractionData, train: InteractionData) -> dict[str, np.ndarray]:
    """Model inputs for every rating of `split`, each item's training frequency and the user's history row.

    `candidate_probability` is the share of training ratings that name the item
    (the in-batch sampling probability for logQ correction); items absent from
    training get the probability of one rating. `history_row` is the user's row
    in `user_histories(train, ...)`, which `with_history` turns into `user_history`.
    """
    return ExampleMaker.between(split, train).arrays(split)


def example_chunks(
    split: InteractionData, train: InteractionData, rows: int = CHUNK_ROWS
) -> Iterator[dict[str, np.ndarray]]:
    """`example_arrays(split, train)`, `rows` ratings at a time: the joined features of the whole split are
    never in memory at once."""
    maker = ExampleMaker.between(split, train)
    for start in range(0, split.ratings.num_rows, rows):
        yield maker.arrays(split.with_ratings(split.ratings.slice(start, rows)))


class ExampleMaker:
    """Turns ratings into `example_arrays`, given what it needs of the training split: each item's number of
    training ratings and their total (the frequencies); list features are padded to their table's longest."""

    def __init__(self, tables: InteractionData, counts: np.ndarray, total: int) -> None:
        """`tables`: users, items and schema (its ratings are not read); `counts`: `[items]` training ratings
        of each row of `tables.items`; `total`: training ratings in all."""
        self._names = user_inputs(tables.schema) + item_inputs(tables.schema) + (RATING,)
        self._users = tables.users[USER_ID].combine_chunks()
        self._items = tables.items[ITEM_ID].combine_chunks()
        self._probability = np.maximum(counts, 1.0) / max(1, total)
        # Every chunk pads a list feature to the longest list of its table, so that chunks stack.
        self._widths = {
            f.name: max(1, pc.max(pc.list_value_length(table[f.name])).as_py() or 0)
            for table, entity in ((tables.users, "user"), (tables.items, "item"))
            for f in tables.schema.of(entity)
            if f.kind == "multi_categorical" and f.name in self._names
        }

    @classmethod
    def between(cls, split: InteractionData, train: InteractionData) -> ExampleMaker:
        """For the ratings of `split`, with frequencies from `train`."""
        return cls(split, item_counts(train.ratings, split.items[ITEM_ID]), train.ratings.num_rows)

    def arrays(self, part: InteractionData) -> dict[str, np.ndarray]:
        arrays = feature_arrays(part.examples, part.schema, self._names, self._widths)
        arrays[HISTORY_ROW] = pc.index_in(part.ratings[USER_ID], value_set=self._users).to_numpy()
        items = pc.index_in(part.ratings[ITEM_ID], value_set=self._items).to_numpy()
        arrays[CANDIDATE_PROBABILITY] = self._probability[items].astype(np.float32)
        return arrays


def user_histories(train: InteractionData, length: int) -> np.ndarray:
    """`[users, n]` ids of each user's last `length` training items (rows of `train.users`), padded with b""."""
    histories = HistoryBuilder(train, length)
    histories.add(train.ratings)
    return histories.matrix()


class HistoryBuilder:
    """`user_histories` over ratings given in batches, holding at most `length` ratings per user (and as many
    again, or `COMPACT_ROWS`, waiting to be merged in).

    Order as `group_by_user`'s: by time, ties by item id; the most recent `length` are kept.
    """

    COMPACT_ROWS = 1 << 18

    def __init__(self, tables: InteractionData, length: int) -> None:
        """`tables`: the users and items (its ratings are not read)."""
        self._user_ids = tables.users[USER_ID].combine_chunks()
        self._item_ids = tables.items[ITEM_ID].combine_chunks()
        self._length = length
        self._id_rank = np.empty(len(self._item_ids), np.int64)
        self._id_rank[pc.sort_indices(self._item_ids).to_numpy()] = np.arange(len(self._item_ids))
        # Users, times and items (rows of the tables) of each user's last `length`, by user.
        self._kept = [np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32)]
        self._waiting, self._waiting_rows = [], 0

    def add(self, ratings: pa.Table) -> None:
        users, items = positions(ratings[USER_ID], self._user_ids), positions(ratings[ITEM_ID], self._item_ids)
        known = (users >= 0) & (items >= 0)  # as `group_by_user`, ratings of other users or items are skipped
        times = ratings[TIMESTAMP].to_numpy()[known]
        self._waiting.append((users[known].astype(np.int32), times, items[known].astype(np.int32)))
        self._waiting_rows += int(known.sum())
        if self._waiting_rows >= max(len(self._kept[0]), self.COMPACT_ROWS):  # merging costs O(kept) each time
            self._merge()

    def _merge(self) -> None:
        users, times, items = (np.concatenate([kept, *parts]) for kept, *parts in zip(self._kept, *self._waiting))
        order = np.lexsort((self._id_rank[items], times, users))
        users, times, items = users[order], times[order], items[order]
        # Keep each user's last `length`: those fewer than `length` places from the end of the user's run.
        starts = np.flatnonzero(np.diff(users, prepend=-1))
        ends = np.repeat(np.append(starts[1:], len(users)), np.diff(np.append(starts, len(users))))
        keep = ends - np.arange(len(users)) <= self._length
        self._kept = [users[keep], times[keep], items[keep]]
        self._waiting, self._waiting_rows = [], 0

    def matrix(self) -> np.ndarray:
        self._merge()
        users, _, items = self._kept
        bounds = np.searchsorted(users, np.arange(len(self._user_ids) + 1))
        seen = [items[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return history_matrix(seen, string_bytes(self._item_ids), self._length)


def with_history(batch: dict, histories) -> dict:
    """Replaces `history_row` `[batch]` by the rows of `histories` it names (`user_history` `[batch, n]`).

    Works on numpy arrays and on tensors alike.
    """
    batch = dict(batch)
    rows = batch.pop(HISTORY_ROW)
    batch[HISTORY] = histories[rows] if isinstance(histories, np.ndarray) else tf.gather(histories, rows)
    return batch


@dataclasses.dataclass(frozen=True)
class ExampleFiles:
    """A split's examples as sharded files (`example_files.py`) and how many rows they hold."""

    paths: tuple[str, ...]
    rows: int

    @classmethod
    def write(cls, chunks: Iterable[dict[str, np.ndarray]], rows: int, directory: str, seed: int = 0) -> ExampleFiles:
        """Writes `rows` examples, given in chunks (`example_chunks`), to shards under `directory` (any
        `tf.io.gfile` location), holding one shard's rows at most."""
        with ExampleFileWriter(directory, rows, seed=seed) as writer:
            for chunk in chunks:
                writer.write(chunk)
        return cls(tuple(writer.paths), rows)


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """What a model trains on, is stopped by and is tested on.

    Attributes:
        train: files of the `example_arrays` the model fits (training reads them through tf.data).
        validation: those of the examples that stop it early, or None (refit: fixed epochs).
        histories: `[users, n]` history ids (`user_histories`) of the users of `train` and `validation`.
        test, test_histories: files of the test examples, with histories from the whole training split
            (`test_batches` reads them).
        items: the item catalogue.
        schema: the feature schema of the users and items tables.
    """

    train: ExampleFiles
    validation: ExampleFiles | None
    histories: np.ndarray
    test: ExampleFiles
    test_histories: np.ndarray
    items: pa.Table
    schema: FeatureSchema

    def test_batches(self, batch_size: int = 4096) -> tf.data.Dataset:
        """One pass over the test examples with their histories, `[batch_size]` feature dicts (the last
        one partial)."""
        return make_dataset(self.test, self.test_histories, batch_size, None, repeat=False)


def make_dataset(
    examples: ExampleFiles,
    histories: np.ndarray,
    global_batch_size: int,
    shuffle_seed: int | None,
    input_context: tf.distribute.InputContext | None = None,
    repeat: bool = True,
) -> tf.data.Dataset:
    """A repeated (or, with `repeat=False`, one-pass) batched dataset of feature dicts for one input pipeline,
    read from `examples`' files.

    Args:
        examples: the split's example files, with `history_row`.
        histories: `[users, n]` from `user_histories`.
        global_batch_size: batch size summed over replicas.
        shuffle_seed: shuffles every epoch with this seed; None keeps the order.
        input_context: from `distribute_datasets_from_function`: each input pipeline (worker)
            reads its own files and batches per replica.
    """
    history_tensor = tf.constant(histories)
    dataset = example_dataset(list(examples.paths), global_batch_size, shuffle_seed, input_context, repeat=repeat)
    return dataset.map(lambda batch: with_history(batch, history_tensor), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


def steps_per_epoch(num_rows: int, global_batch_size: int) -> int:
    return max(1, num_rows // global_batch_size)
