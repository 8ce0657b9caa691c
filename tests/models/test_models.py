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
    batch = {k: tf.constant(v[:64]) for k, v in inputs.test.items()}
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
    from recsys_core.data.pipeline import with_history

    _, _, inputs, trained = tiny_trained
    arrays = with_history(inputs.test, inputs.test_histories)
    features = {key: tf.constant(values[:64]) for key, values in arrays.items()}
    model = trained[name].model
    rater = getattr(model, "scorer", model)
    expected = model(features).numpy()
    users, items = rater.user_state(features), rater.item_state(features)
    np.testing.assert_allclose(rater.rate_states(users, items).numpy(), expected, rtol=1e-5, atol=1e-5)
    every_pair = rater.rate_states(users[:, None, :], items[None, :, :]).numpy()  # [64, 64]
    np.testing.assert_allclose(np.diagonal(every_pair), expected, rtol=1e-5, atol=1e-5)
