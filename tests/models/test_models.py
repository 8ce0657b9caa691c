import json

import numpy as np
import pytest
import tensorflow as tf

from recsys_core.config import experiment
from recsys_core.features.vocabulary import fit_vocabulary
from recsys_core.models.builders import build_model


@pytest.mark.parametrize("name", ["retrieval", "ranking", "dlrm", "dcn", "multitask"])
def test_every_model_learns(tiny_trained, name):
    history = tiny_trained[3][name].history
    for loss in ("retrieval_loss", "rmse"):
        if loss in history:
            assert history[loss][-1] < history[loss][0]
            assert np.isfinite(history[f"val_{loss}"]).all()


@pytest.mark.parametrize("name", ["ranking", "dlrm", "dcn", "multitask"])
def test_rating_models_beat_the_global_mean(tiny_trained, name):
    metrics = tiny_trained[3][name].metrics
    assert metrics["rmse"] < metrics["global_mean_rmse"]


def test_retrieval_metrics_are_consistent(tiny_trained):
    metrics = tiny_trained[3]["retrieval"].metrics
    assert 0.0 < metrics["factorized_top_10"] <= metrics["factorized_top_50"] <= 1.0


def test_dlrm_interaction_matrix_is_symmetric(tiny_trained):
    _, _, inputs, trained = tiny_trained
    batch = next(iter(inputs.test_batches(64)))
    matrix = trained["dlrm"].model.scorer.interaction_matrix(batch).numpy()
    # dense (age), user_id, item_id, and the embedded categoricals the schema feeds to DLRM
    names = trained["dlrm"].model.scorer.embeddings.input_names
    assert names == (
        "dense",
        "user_id",
        "item_id",
        "user_gender",
        "user_occupation_label",
        "user_zip_code",
        "movie_genres",
    )
    assert matrix.shape == (len(names),) * 2
    np.testing.assert_allclose(matrix, matrix.T, rtol=1e-5)


def test_unknown_model_is_rejected(tiny_data):
    with pytest.raises(ValueError, match="unknown model 'svd'"):
        build_model("svd", experiment("smoke"), tiny_data.schema, fit_vocabulary(tiny_data))


@pytest.mark.parametrize("name", ["ranking", "multitask"])
def test_the_rating_in_halves_equals_the_whole_rating(tiny_trained, name):
    """A state per user and one per item, paired (also by broadcasting), rate as the model does: the job's re-rank."""
    _, _, inputs, trained = tiny_trained
    features = next(iter(inputs.test_batches(64)))
    model = trained[name].model
    rater = getattr(model, "scorer", model)
    expected = model(features).numpy()
    users, items = rater.user_state(features), rater.item_state(features)
    np.testing.assert_allclose(rater.rate_states(users, items).numpy(), expected, rtol=1e-5, atol=1e-5)
    every_pair = rater.rate_states(users[:, None, :], items[None, :, :]).numpy()  # [64, 64]
    np.testing.assert_allclose(np.diagonal(every_pair), expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def bfloat16_trained(tiny_trained, tmp_path_factory):
    """Every model fitted as in `tiny_trained`, from the same inputs, under `mixed_bfloat16`."""
    import copy

    from recsys_core.config import MODEL_NAMES
    from recsys_core.training.trainer import evaluate, fit_model

    config, vocab, inputs, _ = tiny_trained
    config = copy.deepcopy(config)
    config.training.precision = "mixed_bfloat16"
    strategy, run_dir = tf.distribute.get_strategy(), str(tmp_path_factory.mktemp("bfloat16"))
    trained = {}
    for name in MODEL_NAMES:
        tf.keras.utils.set_random_seed(config.training.seed)  # the float32 fits' initial weights
        trained[name] = fit_model(name, config, vocab, strategy, inputs, run_dir)
    for name, result in trained.items():
        result.metrics.update(evaluate(name, result.model, config, vocab, inputs))
    return trained


@pytest.mark.parametrize("name", ["retrieval", "ranking", "dlrm", "dcn", "multitask"])
def test_mixed_bfloat16_fits_as_well_as_float32_and_exports_float32(tiny_trained, bfloat16_trained, name):
    """16-bit compute changes the figures by rounding only; the model handed on (evaluated, exported) is float32."""
    float32, bfloat16 = tiny_trained[3][name].metrics, bfloat16_trained[name].metrics
    # The same initial weights; ~600 test ratings, so top-K accuracy has a standard error of ~0.02.
    for key, tolerance in (("rmse", 0.03), ("factorized_top_10", 0.06), ("factorized_top_50", 0.06)):
        if key in float32:
            assert bfloat16[key] == pytest.approx(float32[key], abs=tolerance), key
    model = bfloat16_trained[name].model
    assert model.dtype_policy.name == "float32"
    assert all(variable.dtype == tf.float32 for variable in model.variables if variable.dtype.is_floating)


def test_the_float32_copy_of_a_mixed_precision_model_keeps_its_weights(tiny_trained):
    from recsys_core.distribute import dtype_policy
    from recsys_core.training.trainer import float32_copy

    config, vocab, inputs, _ = tiny_trained
    with dtype_policy("mixed_bfloat16"):
        mixed = build_model("dlrm", config, inputs.schema, vocab)
    batch = _one_batch(inputs)
    predictions = mixed(batch)
    copy = float32_copy("dlrm", config, vocab, tf.distribute.get_strategy(), inputs, mixed)
    for kept, copied in zip(mixed.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(copied, kept)
    assert predictions.dtype == copy(batch).dtype == tf.float32
    np.testing.assert_allclose(copy(batch).numpy(), predictions.numpy(), atol=0.05)  # bfloat16: 8-bit mantissa


def test_mixed_float16_scales_the_loss_so_small_gradients_survive(tiny_trained):
    """One SGD step under `mixed_float16` moves every weight as under float32, even where the gradients are far
    below float16's range. (TFRS's own train step skips the loss scaling: there, they round to 0.)"""
    import copy

    from recsys_core.distribute import dtype_policy

    config, vocab, inputs, _ = tiny_trained
    config = copy.deepcopy(config)
    config.ranking.batch_size = 2**22  # the loss is divided by it: per-example gradients of ~1e-7
    batch, steps = _one_batch(inputs), {}
    tf.keras.utils.set_random_seed(0)
    for policy in ("float32", "mixed_float16"):
        with dtype_policy(policy):
            model = build_model("ranking", config, inputs.schema, vocab)
            model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=2**22 * 0.01))
        model(batch)
        if policy == "float32":
            start = model.get_weights()
        model.set_weights(start)
        model.train_step(batch)
        steps[policy] = [w - w0 for w, w0 in zip(model.get_weights(), start, strict=True)]
    assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    errors = [
        np.linalg.norm(mixed - exact) / np.linalg.norm(exact)
        for mixed, exact in zip(steps["mixed_float16"], steps["float32"], strict=True)
        if np.linalg.norm(exact) > 0
    ]
    assert max(errors) < 0.05  # 0.01 at most seen; without loss scaling up to 0.9 (deep gradients underflow)


def _one_batch(inputs) -> dict[str, tf.Tensor]:
    return next(iter(inputs.test_batches(256)))


def test_id_embeddings_give_unknown_ids_row_zero_and_layers_rebuild_from_their_config():

    from recsys_core.features.encoders import IdEmbedding
    from recsys_core.models.dlrm import CrossHead, DotInteractionHead
    from recsys_core.models.rating import IdBias

    ids = IdEmbedding(["a", "b"], 3)
    rows = ids(tf.constant(["b", "unknown", "a"])).numpy()
    np.testing.assert_array_equal(rows, ids.table.embeddings.numpy()[[2, 0, 1]])
    for layer in (ids, IdBias("user_id", ["u1"], 1e-3), DotInteractionHead(True), CrossHead(2)):
        rebuilt = type(layer).from_config(layer.get_config())
        assert rebuilt.get_config() == layer.get_config()


@pytest.mark.parametrize("name", ["retrieval", "ranking", "dlrm", "dcn", "multitask"])
def test_every_model_rebuilds_from_its_keras_config_and_scores_alike(tiny_trained, name):
    """Keras's own serialisation (config as JSON, weights copied) gives back a model with the same outputs."""
    model = tiny_trained[3][name].model
    batch = _one_batch(tiny_trained[2])
    config = json.loads(json.dumps(tf.keras.layers.serialize(model)))
    rebuilt = tf.keras.layers.deserialize(config)
    rebuilt.compute_loss(batch)  # builds every weight, in the order training built them
    rebuilt.set_weights(model.get_weights())
    assert type(rebuilt) is type(model)
    for got, want in zip(tf.nest.flatten(rebuilt(batch)), tf.nest.flatten(model(batch)), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)


def test_the_list_ranker_rebuilds_from_its_keras_config():
    from recsys_core.models.list_ranker import ListRanker, MeanOfRankers

    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(4, 6, 3)), tf.float32)
    members = [ListRanker(rng.normal(size=3), rng.uniform(1, 2, size=3), (8,), seed=seed) for seed in (1, 2)]
    ranker = MeanOfRankers(members)
    want = ranker(features).numpy()
    rebuilt = tf.keras.layers.deserialize(json.loads(json.dumps(tf.keras.layers.serialize(ranker))))
    rebuilt(features)
    rebuilt.set_weights(ranker.get_weights())
    np.testing.assert_allclose(rebuilt(features).numpy(), want, rtol=1e-6)
