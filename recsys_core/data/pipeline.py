"""Model inputs of a split, written once as example files and read back through tf.data per input pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow.compute as pc
import tensorflow as tf

from recsys_core.data.example_files import ExampleFileWriter, example_dataset
from recsys_core.data.tables import InteractionData, group_by_user, item_counts
from recsys_core.features.arrays import feature_arrays, item_inputs, string_bytes, user_inputs
from recsys_core.features.history import history_matrix
from recsys_core.schema import CANDIDATE_PROBABILITY, HISTORY, ITEM_ID, RATING, USER_ID

HISTORY_ROW = "history_row"


CHUNK_ROWS = 65_536  # ratings joined with their features at a time, on the way to the example files


def example_arrays(split: InteractionData, train: InteractionData) -> dict[str, np.ndarray]:
    """Model inputs for every rating of `split`, each item's training frequency and the user's history row.

    `candidate_probability` is the share of training ratings that name the item
    (the in-batch sampling probability for logQ correction); items absent from
    training get the probability of one rating. `history_row` is the user's row
    in `user_histories(train, ...)`, which `with_history` turns into `user_history`.
    """
    return _ExampleMaker(split, train).arrays(split)


def example_chunks(
    split: InteractionData, train: InteractionData, rows: int = CHUNK_ROWS
) -> Iterator[dict[str, np.ndarray]]:
    """`example_arrays(split, train)`, `rows` ratings at a time: the joined features of the whole split are
    never in memory at once."""
    maker = _ExampleMaker(split, train)
    for start in range(0, split.ratings.num_rows, rows):
        yield maker.arrays(split.with_ratings(split.ratings.slice(start, rows)))


class _ExampleMaker:
    """What `example_arrays` computes once per split: training frequencies, history rows, list widths."""

    def __init__(self, split: InteractionData, train: InteractionData) -> None:
        self._names = user_inputs(split.schema) + item_inputs(split.schema) + (RATING,)
        self._users = train.users[USER_ID].combine_chunks()
        self._items = split.items[ITEM_ID].combine_chunks()
        self._probability = np.maximum(item_counts(train.ratings, self._items), 1.0) / train.ratings.num_rows
        # Every chunk pads a list feature to the longest list of its table, so that chunks stack.
        self._widths = {
            f.name: max(1, pc.max(pc.list_value_length(table[f.name])).as_py() or 0)
            for table, entity in ((split.users, "user"), (split.items, "item"))
            for f in split.schema.of(entity)
            if f.kind == "multi_categorical" and f.name in self._names
        }

    def arrays(self, part: InteractionData) -> dict[str, np.ndarray]:
        arrays = feature_arrays(part.examples, part.schema, self._names, self._widths)
        arrays[HISTORY_ROW] = pc.index_in(part.ratings[USER_ID], value_set=self._users).to_numpy()
        items = pc.index_in(part.ratings[ITEM_ID], value_set=self._items).to_numpy()
        arrays[CANDIDATE_PROBABILITY] = self._probability[items].astype(np.float32)
        return arrays


def user_histories(train: InteractionData, length: int) -> np.ndarray:
    """`[users, n]` ids of each user's last `length` training items (rows of `train.users`), padded with b""."""
    seen, _ = group_by_user(train.ratings, train.users[USER_ID], train.items[ITEM_ID])
    return history_matrix(seen, string_bytes(train.items[ITEM_ID]), length)


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
