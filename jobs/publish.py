"""Publishing a run's partitions: staged by the pipeline, moved into place, marked done last.

A run writes into `_staging/<run_id>/` (ignored by Parquet readers, whose
defaults skip `_`-prefixed paths), then moves each finished partition into
place, writes `_manifest.json` into it and `_SUCCESS` last. Paths go through
Beam's `FileSystems`, so local disks and object stores work alike.
"""

from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from recsys_core.outputs import MANIFEST, SUCCESS


def partition(root: str, table: str, run_date: str) -> str:
    return FileSystems.join(root, table, f"dt={run_date}")


def staging_prefix(root: str, run_id: str, table: str, run_date: str) -> str:
    """Where the pipeline writes a table's files before they are published."""
    return FileSystems.join(partition(FileSystems.join(root, "_staging", run_id), table, run_date), "part")


def shuffle_directory(root: str, run_id: str) -> str:
    """Where a run's rows wait for their user bucket (`--shuffle files`); removed with the staging area."""
    return FileSystems.join(root, "_staging", run_id, "_shuffle")


def publish(root: str, run_id: str, run_date: str, manifest: dict, tables: tuple[str, ...]) -> None:
    """Moves the staged partitions into place (replacing an older run of the same date) and marks them done."""
    staging = FileSystems.join(root, "_staging", run_id)
    for table in tables:
        source, target = partition(staging, table, run_date), partition(root, table, run_date)
        if FileSystems.exists(target):
            FileSystems.delete([target])
        if not FileSystems.exists(FileSystems.join(root, table)):
            FileSystems.mkdirs(FileSystems.join(root, table))
        FileSystems.rename([source], [target])
    for table in tables:
        target = partition(root, table, run_date)
        _write(FileSystems.join(target, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True, default=str))
    for table in tables:
        _write(FileSystems.join(partition(root, table, run_date), SUCCESS), "")
    FileSystems.delete([staging])


def _write(path: str, text: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(text.encode())
