import json
import os

import numpy as np
import pytest

from recsys_core import bundle
from recsys_core.evaluation.offline import batched
from recsys_core.features.arrays import feature_arrays, item_inputs
from recsys_core.training import export


@pytest.fixture(scope="module")
def saved(tiny_trained, tmp_path_factory):
    config, vocab, model_inputs, trained = tiny_trained
    models = {name: result.model for name, result in trained.items()}
    schema = model_inputs.schema
    items = feature_arrays(model_inputs.items, schema, item_inputs(schema))
    item_embeddings = batched(models["retrieval"].candidate_tower, items)
    item_ids = model_inputs.items["item_id"].to_numpy(zero_copy_only=False).astype(object)
    module, signatures = export.build_signatures(models, schema, item_embeddings, item_ids, k=10)
    directory = str(tmp_path_factory.mktemp("bundle"))
    record = {
        "bundle_version": "test",
        "models": list(models),
        "config": config.to_dict(),
        "data_lineage": {"source": "synthetic"},
        "query_policy": {"history_length": config.retrieval.history_length, "query_time": "last_interaction"},
        "index_k": 10,
    }
    bundle.save(directory, module, signatures, schema, record)
    manifest, loaded = bundle.load_bundle(directory)
    inputs = next(iter(model_inputs.test_batches(50)))
    return models, manifest, loaded, inputs, item_embeddings, item_ids, directory


def _call(loaded, manifest, name, inputs):
    """Calls a signature with exactly the inputs its manifest entry lists."""
    return loaded.signatures[name](**{k: inputs[k] for k in manifest.signatures[name].inputs})


def test_embedding_signatures_reload_with_identical_outputs(saved):
    models, manifest, loaded, inputs, *_ = saved
    query = _call(loaded, manifest, "query_embedding", inputs)["embedding"].numpy()
    candidate = _call(loaded, manifest, "candidate_embedding", inputs)["embedding"].numpy()
    np.testing.assert_allclose(query, models["retrieval"].query_tower(inputs).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(candidate, models["retrieval"].candidate_tower(inputs).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["ranking", "dlrm", "dcn", "multitask"])
def test_rating_signatures_reload_with_identical_outputs(saved, name):
    models, manifest, loaded, inputs, *_ = saved
    rating = _call(loaded, manifest, name, inputs)["rating"].numpy()
    np.testing.assert_allclose(rating, models[name](inputs).numpy(), rtol=1e-6, atol=1e-6)


def test_retrieve_signature_is_brute_force_top_k(saved):
    models, manifest, loaded, inputs, item_embeddings, item_ids, _ = saved
    result = _call(loaded, manifest, "retrieve", inputs)
    scores = models["retrieval"].query_tower(inputs).numpy() @ item_embeddings.T
    expected = np.sort(scores, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose(result["scores"].numpy(), expected, rtol=1e-5, atol=1e-5)
    best = item_ids[np.argmax(scores, axis=1)].astype(bytes)
    np.testing.assert_array_equal(result["item_ids"].numpy()[:, 0], best)


def test_manifest_describes_signatures_and_versions(saved, tiny_trained):
    _, manifest, *_ = saved
    assert manifest.format_version == bundle.FORMAT_VERSION and manifest.bundle_version == "test"
    assert manifest.query_policy.history_length == tiny_trained[0].retrieval.history_length
    assert manifest.reranking is None and manifest.list_ranker is None  # no lists were chosen for this bundle
    assert set(manifest.signatures) == {
        "query_embedding",
        "candidate_embedding",
        "retrieve",
        "ranking",
        "dlrm",
        "dcn",
        "multitask",
        # the rating in halves, for re-ranking many candidates (DLRM and DCN mix user and item numbers early)
        *(f"{name}_{part}" for name in ("ranking", "multitask") for part in ("user_state", "item_state", "candidates")),
    }
    for name in ("ranking", "multitask"):
        user, item = (set(manifest.signatures[f"{name}_{part}"].inputs) for part in ("user_state", "item_state"))
        assert not user & item and user | item == set(manifest.signatures[name].inputs)
        assert "item_id" in item and "user_id" in user
    ranking, dlrm = (manifest.signatures[name].inputs for name in ("ranking", "dlrm"))
    assert ranking["movie_genres"] == {"dtype": "string", "shape": [None, None]}
    # Each signature takes what its model reads: the schema feeds titles to the towers and the ranker only.
    assert "movie_title" in ranking and "movie_title" not in dlrm and "user_history" not in dlrm
    # The bundle carries the schema its models were built from, in the manifest and in its own file.
    schema = manifest.schema
    assert schema.to_dict() == tiny_trained[2].schema.to_dict()
    assert schema.source.endswith(bundle.FEATURE_SCHEMA)
    with open(schema.source) as handle:
        assert json.load(handle) == schema.to_dict()
    assert manifest.record["library_versions"]["tensorflow"].startswith("2.20")


def test_missing_and_incomplete_bundles_are_rejected(saved, tmp_path):
    directory = saved[-1]
    with pytest.raises(bundle.BundleError, match="does not exist"):
        bundle.read_manifest(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(bundle.BundleError, match="manifest.json is missing"):
        bundle.read_manifest(str(tmp_path / "empty"))
    with open(os.path.join(directory, bundle.MANIFEST)) as handle:
        manifest = json.load(handle)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / bundle.MANIFEST).write_text(json.dumps({**manifest, "format_version": 0}))
    with pytest.raises(bundle.BundleError, match="bundle format 0"):
        bundle.read_manifest(str(tmp_path / "old"))
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / bundle.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(bundle.BundleError, match="saved_model.pb is missing"):
        bundle.read_manifest(str(tmp_path / "partial"))
    damaged = {key: value for key, value in manifest.items() if key != "query_policy"}
    (tmp_path / "damaged" / bundle.SAVED_MODEL).mkdir(parents=True)
    (tmp_path / "damaged" / bundle.SAVED_MODEL / "saved_model.pb").write_bytes(b"")
    (tmp_path / "damaged" / bundle.MANIFEST).write_text(json.dumps(damaged))
    with pytest.raises(bundle.BundleError, match=r"damaged.*manifest\.json.*'query_policy'.*damaged"):
        bundle.read_manifest(str(tmp_path / "damaged"))


def test_a_manifest_that_would_not_parse_is_never_written(saved, tmp_path):
    models, manifest, loaded, *_ = saved
    with pytest.raises(bundle.ManifestError, match="'index_k'"):
        bundle.update_manifest(saved[-1], {"index_k": None})
    assert bundle.read_manifest(saved[-1]).index_k == 10
