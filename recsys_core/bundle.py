"""Model bundles on any file system: their layout, how one is assembled and published, and how it is read.

A bundle is one directory per training run, under an output root:

    <root>/LATEST                      the version of the newest complete bundle; written last
    <root>/<version>/saved_model/      the serving signatures (`export.build_signatures`)
    <root>/<version>/manifest.json     version, creation time, config, feature schema, vocabulary
                                       sizes, metrics, signature specs, library versions
    <root>/<version>/feature_schema.json, metrics.json, config.json, vocabulary.json
    <root>/<version>/plots/, tensorboard/, checkpoints/   per phase and model: fit/ranking/, refit/ranking/
    <root>/.<version>.incomplete/      a bundle being assembled (removed by the next run if it died)
    <root>/_lease.json                 the lease of the run writing here (`output_lease`): one at a time

Every path goes through `tf.io.gfile`, so the root may be local, `gs://...` or TF's `ram://`.
A bundle is assembled in its hidden staging directory and published by moving it to
`<version>/` (a rename on local disks; a copy then delete where directories cannot be
renamed, as on object stores) and then writing `LATEST`: whoever follows `LATEST` never
sees a partial bundle.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os

import tensorflow as tf
from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope

from recsys_core.lease import LEASE_FILE, Lease, LeaseFiles
from recsys_core.manifest import FEATURE_SCHEMA, BundleManifest, ManifestError
from recsys_core.schema import FeatureSchema

FORMAT_VERSION = 2  # 2: schema-driven inputs, `item_id` naming
MANIFEST = "manifest.json"
SAVED_MODEL = "saved_model"
LATEST = "LATEST"
METRICS = "metrics.json"
CONFIG = "config.json"
VOCABULARY = "vocabulary.json"
ITEM_FACTORS = "item_factors.npz"  # the list ranker's item-to-item factors (`list_features.ItemFactors`)
PLOTS = "plots"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
_INCOMPLETE = ".incomplete"
_LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-recommenders", "apache-beam", "pyarrow", "numpy")


class BundleError(ValueError):
    """A bundle directory is missing, incomplete or incompatible; the message says which file."""


def new_version() -> str:
    """A sortable bundle version from the current UTC time, e.g. `20261123T172500123456Z`."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def is_local(path: str) -> bool:
    """Whether `path` is on this machine's disks (no `scheme://`)."""
    return "://" not in path


def absolute(root: str) -> str:
    """`root` made absolute when local; URLs (gs://, ram://) unchanged."""
    return os.path.abspath(root) if is_local(root) else root


# --- assembling and publishing -------------------------------------------------------------------


def staging_directory(root: str, version: str) -> str:
    """Where bundle `version` is assembled, hidden from readers until `publish`."""
    return os.path.join(root, f".{version}{_INCOMPLETE}")


def remove_incomplete(root: str) -> None:
    """Removes the staging directories of runs that died before publishing (never visible to readers)."""
    if tf.io.gfile.isdir(root):
        for name in tf.io.gfile.listdir(root):
            name = name.rstrip("/")
            if name.startswith(".") and name.endswith(_INCOMPLETE):
                remove(os.path.join(root, name))


def output_lease(root: str, run: str) -> Lease:
    """The lease of a training output directory (`recsys_core.lease`): one run cleans up, resumes and publishes
    there at a time."""
    path = os.path.join(root, LEASE_FILE)
    files = LeaseFiles(lambda p: read_text(p) if tf.io.gfile.exists(p) else None, write_text, _remove_file)
    return Lease(path, files, run)


def _remove_file(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def publish(staging: str, root: str, version: str) -> str:
    """Moves the assembled bundle to `<root>/<version>`, then points `LATEST` at it; returns its directory."""
    final = os.path.join(root, version)
    if is_local(root):
        os.replace(staging, final)
    else:
        copy_tree(staging, final)
        remove(staging)
    write_text(os.path.join(root, LATEST), version)
    return final


def copy_tree(source: str, target: str) -> None:
    """Copies every file under `source` to the same place under `target`, on any `tf.io.gfile` file system."""
    for directory, _, files in tf.io.gfile.walk(source):
        relative = os.path.relpath(directory, source) if directory != source else ""
        destination = os.path.join(target, relative) if relative else target
        tf.io.gfile.makedirs(destination)
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), os.path.join(destination, name), overwrite=True)


def remove(directory: str) -> None:
    """Deletes `directory` and everything under it, if it exists."""
    if tf.io.gfile.exists(directory):
        tf.io.gfile.rmtree(directory)


def save(directory: str, module: tf.Module, signatures: dict, schema: FeatureSchema, manifest: dict) -> None:
    """Writes the SavedModel, the feature schema, the config, the metrics and the manifest (with signature
    specs and library versions) into `directory`.

    Args:
        manifest: the training run's fields of `BundleManifest` (version, models, config, data lineage, query
            policy, index_k; reranking, list ranker and metrics where known).

    Raises:
        ManifestError: the manifest would not parse as a `BundleManifest` (nothing is written).
    """
    # The bundle is read through its signatures only: Keras's traces of every layer's `call` (which Keras's own
    # loader would need, and which cost half of each save) are left out, as `model.save(save_traces=False)` does;
    # the layers' configs (`features/keras_config.py`) describe them instead.
    with keras_option_scope(save_traces=False):
        tf.saved_model.save(module, os.path.join(directory, SAVED_MODEL), signatures=signatures)
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        **manifest,
        "feature_schema": schema.to_dict(),
        "signatures": {name: _describe(fn) for name, fn in signatures.items()},
        "library_versions": {lib: _version(lib) for lib in _LIBRARIES},
    }
    BundleManifest.parse(manifest, directory)
    write_json(os.path.join(directory, METRICS), manifest.get("metrics", {}))
    write_json(os.path.join(directory, CONFIG), manifest.get("config", {}))
    write_json(os.path.join(directory, FEATURE_SCHEMA), schema.to_dict())
    write_json(os.path.join(directory, MANIFEST), manifest)


def update_manifest(directory: str, changes: dict) -> None:
    """Merges `changes` into the manifest of a bundle being assembled; its metrics also go to `metrics.json`."""
    path = os.path.join(directory, MANIFEST)
    manifest = {**json.loads(read_text(path)), **changes}
    BundleManifest.parse(manifest, directory)
    write_json(os.path.join(directory, METRICS), manifest.get("metrics", {}))
    write_json(path, manifest)


def _describe(fn) -> dict:
    concrete = fn.get_concrete_function()
    inputs = concrete.structured_input_signature[0][0]
    outputs = concrete.structured_outputs
    return {
        "inputs": {name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()} for name, spec in inputs.items()},
        "outputs": {name: {"dtype": t.dtype.name, "shape": t.shape.as_list()} for name, t in outputs.items()},
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- files ---------------------------------------------------------------------------------------


def write_text(path: str, text: str) -> None:
    """Writes a file so that a reader sees the old file or the whole new one: a partial file renamed into
    place (an object store's write is whole on close already)."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    partial = path + ".partial"
    with tf.io.gfile.GFile(partial, "w") as handle:
        handle.write(text)
    tf.io.gfile.rename(partial, path, overwrite=True)


def write_bytes(path: str, data: bytes) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(data)


def read_text(path: str) -> str:
    with tf.io.gfile.GFile(path) as handle:
        return handle.read()


def read_bytes(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read()


def write_json(path: str, value) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str))


# --- reading -------------------------------------------------------------------------------------


def resolve_bundle(path: str) -> str:
    """The bundle directory `path` names: itself, or the one its `LATEST` file points at."""
    if tf.io.gfile.exists(os.path.join(path, LATEST)):
        path = os.path.join(path, read_text(os.path.join(path, LATEST)).strip())
    if not tf.io.gfile.isdir(path):
        raise BundleError(f"model bundle {path} does not exist; train one with `python train.py` first")
    return path


def read_manifest(path: str) -> BundleManifest:
    """Reads and checks a bundle's manifest; raises `BundleError` naming what is wrong."""
    bundle = resolve_bundle(path)
    manifest_path = os.path.join(bundle, MANIFEST)
    if not tf.io.gfile.exists(manifest_path):
        raise BundleError(f"{bundle} is not a complete model bundle: {MANIFEST} is missing; retrain or pick another")
    try:
        record = json.loads(read_text(manifest_path))
    except json.JSONDecodeError as error:
        raise BundleError(f"{manifest_path} is not valid JSON ({error}); the bundle is damaged") from error
    if record.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path} has bundle format {record.get('format_version')!r}; this code reads format "
            f"{FORMAT_VERSION}. Retrain with this version or use a matching release"
        )
    if not tf.io.gfile.exists(os.path.join(bundle, SAVED_MODEL, "saved_model.pb")):
        raise BundleError(f"{bundle}/{SAVED_MODEL}/saved_model.pb is missing; the bundle is incomplete")
    try:
        return BundleManifest.parse(record, bundle)
    except ManifestError as error:
        raise BundleError(str(error)) from error


def load_bundle(path: str) -> tuple[BundleManifest, tf.Module]:
    """`(manifest, loaded SavedModel)` of a checked bundle."""
    manifest = read_manifest(path)
    return manifest, tf.saved_model.load(os.path.join(manifest.path, SAVED_MODEL))
