import numpy as np
import pytest
import tensorflow as tf

from recsys_core.data.shop import synthetic_shop
from recsys_core.features.arrays import feature_arrays, item_inputs, user_inputs
from recsys_core.features.encoders import FeatureEmbeddings, ItemEncoder, QueryEncoder
from recsys_core.features.vocabulary import FeatureVocabulary, fit_vocabulary


def test_vocabularies_never_see_test_only_ids(ml100k_split):
    train, test = ml100k_split
    vocab = fit_vocabulary(train)
    train_items = set(train.ratings["item_id"].to_pylist())
    test_only = set(test.ratings["item_id"].to_pylist()) - train_items
    assert test_only, "the 80/20 split has movies rated only in test"
    assert set(vocab.item_ids) == train_items
    assert test_only.isdisjoint(vocab.item_ids)
    assert set(vocab.user_ids) == set(train.ratings["user_id"].to_pylist())
    assert np.isclose(vocab.rating_mean, train.ratings["rating"].to_numpy().mean())
    boundaries = vocab.numbers["timestamp"].boundaries
    assert boundaries == sorted(boundaries)
    assert "Drama" in vocab.categories["movie_genres"] and len(vocab.categories["movie_genres"]) == 19


def test_vocabulary_round_trips_through_json(ml100k_split):
    vocab = fit_vocabulary(ml100k_split[0])
    assert FeatureVocabulary.from_json(vocab.to_json()) == vocab


@pytest.fixture(scope="module")
def shop():
    return synthetic_shop(300, 60, 10, seed=4)


def _first_rows(data, names, n=3):
    return {k: tf.constant(v[:n]) for k, v in feature_arrays(data.examples, data.schema, names).items()}


def test_unknown_ids_map_to_the_oov_embedding(tiny_data):
    vocab = fit_vocabulary(tiny_data)
    encoder = QueryEncoder((), vocab, embedding_dim=8, use_user_features=False, use_time=False)
    features = _first_rows(tiny_data, user_inputs(tiny_data.schema))
    features["user_id"] = tf.constant([b"never-seen", b"also-new", features["user_id"][2].numpy()])
    encoded = encoder(features).numpy()
    oov_row = encoder.user_id.table.embeddings.numpy()[0]
    np.testing.assert_allclose(encoded[0], oov_row)
    np.testing.assert_allclose(encoded[1], oov_row)
    assert not np.allclose(encoded[2], oov_row)


def test_unknown_values_of_every_kind_take_the_oov_row(shop):
    schema = shop.schema
    vocab = fit_vocabulary(shop)
    layer = FeatureEmbeddings(schema.of("item"), vocab, dim=4, l2=0.0)
    features = _first_rows(shop, item_inputs(schema), n=2)
    features["category"] = tf.constant([b"Spaceships", features["category"][1].numpy()])
    features["tags"] = tf.constant([[b"never-heard", b""], [b"", b""]])
    features["title"] = tf.constant([b"unheard of words", b""])
    _, embedded = layer(features)
    category, tags, title = (embedded[layer.embedded_names.index(n)].numpy() for n in ("category", "tags", "title"))
    np.testing.assert_allclose(category[0], layer.tables["category"].embeddings.numpy()[0])  # OOV row
    assert not np.allclose(category[1], category[0])
    np.testing.assert_allclose(tags[0], layer.tables["tags"].embeddings.numpy()[0])  # unknown tag: OOV
    np.testing.assert_allclose(tags[1], 0.0)  # no tags: padding only, masked out
    np.testing.assert_allclose(title[1], 0.0)


def test_numbers_are_logged_normalised_and_clipped_to_the_training_range(shop):
    vocab = fit_vocabulary(shop)
    price = shop.schema.get("price")
    layer = FeatureEmbeddings((price,), vocab, dim=4, l2=0.0)
    stats = vocab.numbers["price"]
    prices = np.log1p(shop.examples["price"].to_numpy().astype(np.float64))
    assert np.isclose(stats.mean, prices.mean()) and np.isclose(stats.high, prices.max())
    dense, _ = layer({"price": tf.constant([np.expm1(stats.mean), 1e9, -5.0], tf.float32)})
    expected = [0.0, (stats.high - stats.mean) / stats.std, (stats.low - stats.mean) / stats.std]
    np.testing.assert_allclose(dense.numpy()[:, 0], expected, atol=1e-5)


def test_a_user_timestamp_is_read_as_days_before_the_interaction(shop):
    vocab = fit_vocabulary(shop)
    signup = shop.schema.get("signup_time")
    layer = FeatureEmbeddings((signup,), vocab, dim=4, l2=0.0)
    stats = vocab.numbers["signup_time"]
    day = 86_400
    features = {"signup_time": tf.constant([0, 0], tf.int64), "timestamp": tf.constant([100 * day, 200 * day])}
    dense, _ = layer(features)
    np.testing.assert_allclose(dense.numpy()[:, 0], (np.array([100.0, 200.0]) - stats.mean) / stats.std, rtol=1e-5)
    # The same gap at another date reads the same: no absolute time leaks in.
    later = {"signup_time": tf.constant([10**9], tf.int64), "timestamp": tf.constant([10**9 + 100 * day])}
    np.testing.assert_allclose(layer(later)[0].numpy()[0], dense.numpy()[0], rtol=1e-5)


def test_numeric_buckets_are_training_quantiles(shop):
    vocab = fit_vocabulary(shop)
    age = shop.schema.get("age")
    assert age.buckets == 6
    boundaries = vocab.numbers["age"].boundaries
    np.testing.assert_allclose(boundaries, np.quantile(shop.examples["age"].to_numpy(), np.linspace(0, 1, 7)[1:-1]))
    layer = FeatureEmbeddings((age,), vocab, dim=4, l2=0.0)
    _, (bucket,) = layer({"age": tf.constant([0.0, 200.0])})
    table = layer.tables["age"].embeddings.numpy()
    np.testing.assert_allclose(bucket.numpy(), table[[0, len(boundaries)]])


def test_items_of_a_catalogue_embed_from_their_features(shop):
    vocab = fit_vocabulary(shop)
    encoder = ItemEncoder(shop.schema.of("item", "towers"), vocab, embedding_dim=8)
    features = _first_rows(shop, item_inputs(shop.schema), n=4)
    # id (8) + category, brand, tags, title (8 each) + price (1 number)
    assert encoder(features).shape == (4, 8 + 4 * 8 + 1)


def test_times_past_the_training_window_are_treated_as_its_end(tiny_data):
    vocab = fit_vocabulary(tiny_data)
    encoder = QueryEncoder(tiny_data.schema.of("user", "towers"), vocab, embedding_dim=8)
    features = _first_rows(tiny_data, user_inputs(tiny_data.schema), n=2)
    last = int(vocab.numbers["timestamp"].high)
    at_end = encoder({**features, "timestamp": tf.constant([last, last], tf.int64)}).numpy()
    years_later = encoder({**features, "timestamp": tf.constant([last + 10**9, last + 10**8], tf.int64)}).numpy()
    np.testing.assert_allclose(years_later, at_end)


def test_history_is_a_masked_mean_that_leaves_out_the_item_being_scored(tiny_data):
    vocab = fit_vocabulary(tiny_data)
    encoder = QueryEncoder((), vocab, embedding_dim=4, use_user_features=False, use_time=False, use_history=True)
    first, second = (m.encode() for m in vocab.item_ids[:2])
    user = tf.constant([vocab.user_ids[0].encode()])
    padded = encoder({"user_id": user, "user_history": tf.constant([[first, second, b""]])}).numpy()
    table = encoder.history.table.embeddings.numpy()
    rows = encoder.history.lookup(tf.constant([first, second])).numpy()
    np.testing.assert_allclose(padded[0, 4:], table[rows].mean(axis=0), rtol=1e-6)  # padding ignored
    # Scoring the pair (user, first): `first` is left out of the user's history.
    pair = {"user_id": user, "user_history": tf.constant([[first, second, b""]]), "item_id": tf.constant([first])}
    np.testing.assert_allclose(encoder(pair).numpy()[0, 4:], table[rows[1]], rtol=1e-6)
    empty = encoder({"user_id": user, "user_history": tf.constant([[b""]])}).numpy()
    np.testing.assert_allclose(empty[0, 4:], 0.0)
