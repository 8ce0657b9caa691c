import numpy as np
import tensorflow as tf

from recsys_core.features.encoders import ItemEncoder, QueryEncoder
from recsys_core.features.schema import CONTEXT_FEATURES, ITEM_FEATURES, USER_FEATURES, feature_arrays
from recsys_core.features.vocabulary import FeatureVocabulary, fit_vocabulary


def test_vocabularies_never_see_test_only_ids(ml100k_split):
    train, test = ml100k_split
    vocab = fit_vocabulary(train)
    train_movies = set(train.ratings["movie_id"].to_pylist())
    test_only = set(test.ratings["movie_id"].to_pylist()) - train_movies
    assert test_only, "the 80/20 split has movies rated only in test"
    assert set(vocab.movie_ids) == train_movies
    assert test_only.isdisjoint(vocab.movie_ids)
    assert set(vocab.user_ids) == set(train.ratings["user_id"].to_pylist())
    train_ratings = train.ratings["user_rating"].to_numpy()
    assert np.isclose(vocab.rating_mean, train_ratings.mean())
    assert vocab.timestamp_boundaries == sorted(vocab.timestamp_boundaries)


def test_vocabulary_round_trips_through_json(ml100k_split):
    vocab = fit_vocabulary(ml100k_split[0])
    assert FeatureVocabulary.from_json(vocab.to_json()) == vocab


def _first_rows(table, names, n=3):
    return {k: tf.constant(v[:n]) for k, v in feature_arrays(table, names).items()}


def test_unknown_ids_map_to_the_oov_embedding(tiny_data):
    vocab = fit_vocabulary(tiny_data)
    encoder = QueryEncoder(vocab, embedding_dim=8, use_user_features=False, use_time=False)
    features = _first_rows(tiny_data.examples, USER_FEATURES + CONTEXT_FEATURES)
    features["user_id"] = tf.constant([b"never-seen", b"also-new", features["user_id"][2].numpy()])
    encoded = encoder(features).numpy()
    oov_row = encoder.user_embedding.embeddings.numpy()[0]
    np.testing.assert_allclose(encoded[0], oov_row)
    np.testing.assert_allclose(encoded[1], oov_row)
    assert not np.allclose(encoded[2], oov_row)


def test_unknown_categories_and_genres_do_not_crash(tiny_data):
    vocab = fit_vocabulary(tiny_data)
    query = QueryEncoder(vocab, embedding_dim=8)
    items = ItemEncoder(vocab, embedding_dim=8)
    features = _first_rows(tiny_data.examples, USER_FEATURES + CONTEXT_FEATURES + ITEM_FEATURES)
    features["user_occupation_label"] = tf.constant([-5, 999, 3], tf.int64)
    features["user_zip_code"] = tf.constant([b"", b"ABCDE", b"99999"])
    features["movie_genres"] = tf.constant([[-1, -1], [400, 2], [1, -1]], tf.int64)
    features["movie_title"] = tf.constant([b"", b"unheard of words", b"Item 1"])
    assert np.isfinite(query(features).numpy()).all()
    assert np.isfinite(items(features).numpy()).all()


def test_times_past_the_training_window_are_treated_as_its_end(tiny_data):
    vocab = fit_vocabulary(tiny_data)
    encoder = QueryEncoder(vocab, embedding_dim=8)
    features = _first_rows(tiny_data.examples, USER_FEATURES + CONTEXT_FEATURES, n=2)
    last = int(vocab.timestamp_range[1])
    at_end = encoder({**features, "timestamp": tf.constant([last, last], tf.int64)}).numpy()
    years_later = encoder({**features, "timestamp": tf.constant([last + 10**9, last + 10**8], tf.int64)}).numpy()
    np.testing.assert_allclose(years_later, at_end)


def test_history_is_a_masked_mean_that_leaves_out_the_item_being_scored(tiny_data):
    vocab = fit_vocabulary(tiny_data)
    encoder = QueryEncoder(vocab, embedding_dim=4, use_user_features=False, use_time=False, use_history=True)
    first, second = (m.encode() for m in vocab.movie_ids[:2])
    user = tf.constant([vocab.user_ids[0].encode()])
    padded = encoder({"user_id": user, "user_history": tf.constant([[first, second, b""]])}).numpy()
    table = encoder.history_embedding.embeddings.numpy()
    rows = encoder.history_lookup(tf.constant([first, second])).numpy()
    np.testing.assert_allclose(padded[0, 4:], table[rows].mean(axis=0), rtol=1e-6)  # padding ignored
    # Scoring the pair (user, first): `first` is left out of the user's history.
    pair = {"user_id": user, "user_history": tf.constant([[first, second, b""]]), "movie_id": tf.constant([first])}
    np.testing.assert_allclose(encoder(pair).numpy()[0, 4:], table[rows[1]], rtol=1e-6)
    empty = encoder({"user_id": user, "user_history": tf.constant([[b""]])}).numpy()
    np.testing.assert_allclose(empty[0, 4:], 0.0)
