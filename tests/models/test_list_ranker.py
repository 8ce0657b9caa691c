"""The list ranker's loss and fit: it orders lists by what its labels reward."""

import math

import numpy as np
import pytest
import tensorflow as tf

from recsys_core.config import ListRankerConfig
from recsys_core.evaluation.list_ranking import fit_list_ranker, list_labels
from recsys_core.evaluation.metrics import per_user_scores
from recsys_core.models.list_ranker import ListSoftmaxLoss


def test_the_listwise_loss_is_the_softmax_cross_entropy_over_valid_slots():
    labels = tf.constant([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    logits = tf.constant([[1.0, 2.0, 50.0], [3.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    loss = ListSoftmaxLoss(reduction="none")(labels, logits).numpy()
    # The empty slot (label -1) takes no probability, however large its logit.
    assert loss[0] == pytest.approx(-math.log(math.e / (math.e + math.e**2)), rel=1e-5)
    assert loss[1] == 0.0  # no relevant item: nothing to learn
    # Grades 2 and 1 over a uniform softmax of 3: -(2/3 log 1/3 + 1/3 log 1/3) = log 3.
    assert loss[2] == pytest.approx(math.log(3), rel=1e-5)


def test_labels_grade_held_out_and_liked_candidates():
    candidates = np.array([[5, 3, 9, -1]])
    labels = list_labels(candidates, [np.array([3, 9, 7])], [np.array([9])])
    np.testing.assert_array_equal(labels, [[0, 1, 2, -1]])


def test_a_fitted_ranker_learns_an_interaction_no_single_feature_orders():
    """Relevant candidates are those with both features of the same sign (XOR-like): sorting by either
    feature alone is no better than chance; the ranker, fitted on other lists, finds them."""
    rng = np.random.default_rng(0)
    users, k = 400, 20
    features = rng.standard_normal((users, k, 2)).astype(np.float32)
    relevant_slots = features[..., 0] * features[..., 1] > 0.5
    candidates = np.tile(np.arange(k), (users, 1))
    labels = relevant_slots.astype(np.float32)
    fold = np.arange(users) % 2
    config = ListRankerConfig(epochs=30, layers=(32,), members=1, learning_rate=0.01)
    fitted = fit_list_ranker(features, labels, fold, config, seed=1)
    relevant = [np.flatnonzero(row) for row in relevant_slots]

    def ndcg(scores, rows):
        order = np.argsort(-scores, axis=1, kind="stable")
        top = np.take_along_axis(candidates[rows], order, 1)
        return np.nanmean(per_user_scores(top, [relevant[r] for r in rows], 5)["ndcg"])

    held = np.flatnonzero(fold == 0)  # never seen by the fold-0 model
    learned = fitted.fold_models[0](tf.constant(features[held])).numpy()
    assert ndcg(learned, held) > ndcg(features[held][..., 0], held) + 0.3
    everyone = np.arange(users)
    assert ndcg(fitted.model(tf.constant(features)).numpy(), everyone) > 0.8
