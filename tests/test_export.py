import json
import os

import numpy as np
import pytest
import tensorflow as tf

from recsys_core import export
from recsys_core.data.pipeline import with_history
from recsys_core.evaluation import batched
from recsys_core.features.schema import ITEM_FEATURES, QUERY_FEATURES, RATING_FEATURES, feature_arrays


@pytest.fixture(scope="module")
def saved(tiny_trained, tmp_path_factory):
    config, vocab, model_inputs, trained = tiny_trained
    models = {name: result.model for name, result in trained.items()}
    items = feature_arrays(model_inputs.items, ITEM_FEATURES)
    item_embeddings = batched(models["retrieval"].candidate_tower, items)
    item_ids = model_inputs.items["movie_id"].to_numpy(zero_copy_only=False).astype(object)
    module, signatures = export.build_signatures(models, item_embeddings, item_ids, k=10)
    directory = str(tmp_path_factory.mktemp("bundle"))
    export.save_bundle(directory, module, signatures, {"bundle_version": "test", "models": list(models)})
    manifest, loaded = export.load_bundle(directory)
    test = with_history(model_inputs.test, model_inputs.test_histories)
    inputs = {k: tf.constant(v[:50]) for k, v in test.items()}
    return models, manifest, loaded, inputs, item_embeddings, item_ids, directory


def _call(loaded, name, inputs, names):
    return loaded.signatures[name](**{k: inputs[k] for k in names})


def test_embedding_signatures_reload_with_identical_outputs(saved):
    models, _, loaded, inputs, *_ = saved
    query = _call(loaded, "query_embedding", inputs, QUERY_FEATURES)["embedding"].numpy()
    candidate = _call(loaded, "candidate_embedding", inputs, ITEM_FEATURES)["embedding"].numpy()
    np.testing.assert_allclose(query, models["retrieval"].query_tower(inputs).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(candidate, models["retrieval"].candidate_tower(inputs).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["ranking", "dlrm", "dcn", "multitask"])
def test_rating_signatures_reload_with_identical_outputs(saved, name):
    models, _, loaded, inputs, *_ = saved
    features = QUERY_FEATURES + ITEM_FEATURES if name == "multitask" else RATING_FEATURES
    rating = _call(loaded, name, inputs, features)["rating"].numpy()
    np.testing.assert_allclose(rating, models[name](inputs).numpy(), rtol=1e-6, atol=1e-6)


def test_retrieve_signature_is_brute_force_top_k(saved):
    models, _, loaded, inputs, item_embeddings, item_ids, _ = saved
    result = _call(loaded, "retrieve", inputs, QUERY_FEATURES)
    scores = models["retrieval"].query_tower(inputs).numpy() @ item_embeddings.T
    expected = np.sort(scores, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose(result["scores"].numpy(), expected, rtol=1e-5, atol=1e-5)
    best = item_ids[np.argmax(scores, axis=1)].astype(bytes)
    np.testing.assert_array_equal(result["movie_ids"].numpy()[:, 0], best)


def test_manifest_describes_signatures_and_versions(saved):
    _, manifest, *_ = saved
    assert manifest["format_version"] == export.FORMAT_VERSION
    assert set(manifest["signatures"]) == {
        "query_embedding",
        "candidate_embedding",
        "retrieve",
        "ranking",
        "dlrm",
        "dcn",
        "multitask",
    }
    assert manifest["signatures"]["ranking"]["inputs"]["movie_genres"] == {"dtype": "int64", "shape": [None, None]}
    assert manifest["library_versions"]["tensorflow"].startswith("2.20")


def test_missing_and_incomplete_bundles_are_rejected(saved, tmp_path):
    directory = saved[-1]
    with pytest.raises(export.BundleError, match="does not exist"):
        export.read_manifest(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(export.BundleError, match="manifest.json is missing"):
        export.read_manifest(str(tmp_path / "empty"))
    with open(os.path.join(directory, export.MANIFEST)) as handle:
        manifest = json.load(handle)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / export.MANIFEST).write_text(json.dumps({**manifest, "format_version": 0}))
    with pytest.raises(export.BundleError, match="bundle format 0"):
        export.read_manifest(str(tmp_path / "old"))
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / export.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(export.BundleError, match="saved_model.pb is missing"):
        export.read_manifest(str(tmp_path / "partial"))
