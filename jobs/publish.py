"""Publishing a run: files written once into a version directory, made visible together by one pointer file.

Layout under the output root (paths go through Beam's `FileSystems`: local disks and object stores alike):

    <table>/dt=<date>/v=<version>/part-*.parquet   one run's files, never modified once written
    _published/dt=<date>.json                      the pointer: the run's manifest and files, written last
    _published/latest.json                         the pointer of the newest date published
    _runs/<date>.<start time>.<attempt>.json       a record of every run: running, succeeded, failed, gated
    _lease.json                                    the running job's lease (`recsys_core.lease`)
    _staging/<version>/files.json                  the files a run wrote, for its manifest

Rows waiting for their user's bucket (`--shuffle files`) are raw input: they
live under the job's temp location (Beam's `--temp_location`, else the local
temporary directory), in `<temp>/recsys-scratch/<root key>/<version>/`, never
under the root consumers read (`scratch_root`).

A version is the run identity (a hash of the bundle, the input files' contents,
the parameters and the date, so the same inputs write the same rows and bytes)
plus a per-attempt suffix, so that a rerun never writes over files a reader may
be reading. A pointer is written under a temporary name and renamed into place:
atomic on a local disk, and a single-object write on an object store. A reader
that starts from a pointer (`recsys_core.serving.outputs.read_published`) therefore sees
the complete old run or the complete new one, never a mix, and never nothing.
The run a pointer replaced keeps its files until the next run, for readers that
opened it just before the switch; a killed run's files are unreferenced and are
removed by the next run (`collect_garbage`). One job writes to an output root at
a time: it holds the root's lease (`_lease.json`, `output_lease`) from before its
clean-up until it has published, and a second run refuses to start meanwhile.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import uuid

from apache_beam.io.filesystems import FileSystems

from recsys_core.faults import fault_point
from recsys_core.fingerprint import json_sha256
from recsys_core.lease import LEASE_FILE, Lease, LeaseFiles
from recsys_core.serving.outputs import LATEST_POINTER, PUBLISHED_DIR, pointer_path

RUNS = "_runs"
STAGING = "_staging"
log = logging.getLogger(__name__)


def version_directory(table: str, run_date: str, version: str) -> str:
    """Where, relative to the output root, a run writes a table's files; unread until a pointer names them."""
    return f"{table}/dt={run_date}/v={version}"


def scratch_root(temp_location: str, root: str) -> str:
    """The scratch space of the runs writing to output root `root`: under `temp_location`, one per root, so
    the run holding the root's lease may remove all of it."""
    return FileSystems.join(temp_location, "recsys-scratch", hashlib.sha256(root.encode()).hexdigest()[:12])


def shuffle_directory(scratch: str, version: str) -> str:
    """Where a run's rows wait for their user bucket (`--shuffle files`); removed when the run ends."""
    return FileSystems.join(scratch, version, "_shuffle")


def read_json(path: str) -> dict:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def current_pointer(root: str, name: str) -> dict | None:
    """The pointer `name` (`dt=<date>.json` or `latest.json`) of `root`, or None (readers:
    `recsys_core.serving.outputs.read_pointer`, which needs no Beam)."""
    path = FileSystems.join(root, PUBLISHED_DIR, name)
    return read_json(path) if FileSystems.exists(path) else None


def publish_run(root: str, run_date: str, version: str, manifest: dict, files: dict[str, list[str]]) -> dict:
    """Makes a finished run visible: the date's pointer, then `latest` unless a newer date is published.

    Args:
        files: per table, its files' paths relative to `root`.

    Returns the pointer written. The version it replaces is named in it
    (`replaces`), so its files survive until the next run's garbage collection.
    """
    previous = current_pointer(root, f"dt={run_date}.json")
    pointer = {
        "run_date": run_date,
        "version": version,
        "files": files,
        "manifest": manifest,
        "manifest_sha256": manifest_hash(manifest),
        "replaces": previous["version"] if previous else None,
    }
    fault_point("publish:before_pointer")
    write_json_atomically(pointer_path(root, run_date), pointer, before_rename="publish:before_rename")
    fault_point("publish:before_latest")
    latest = current_pointer(root, LATEST_POINTER)
    if latest is None or _day(latest["run_date"]) <= _day(run_date):
        write_json_atomically(FileSystems.join(root, PUBLISHED_DIR, LATEST_POINTER), pointer)
    return pointer


def _day(run_date: str) -> datetime.date:
    """A pointer's date as a date: `latest` is the newest day, whatever spelling an older release wrote."""
    return datetime.date.fromisoformat(run_date)


def manifest_hash(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON: equal for equal runs."""
    return json_sha256(manifest)


def write_json_atomically(path: str, value: dict, before_rename: str | None = None) -> None:
    """Writes `path` whole or not at all: a temporary name, then a rename over the old file (`before_rename`:
    a fault point between the two)."""
    write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True, default=str), before_rename)


def write_text_atomically(path: str, text: str, before_rename: str | None = None) -> None:
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with FileSystems.create(temporary) as handle:
        handle.write(text.encode())
    if before_rename:
        fault_point(before_rename)
    FileSystems.rename([temporary], [path])


def _read_text(path: str) -> str | None:
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        return handle.read().decode()


def _remove(path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])


def output_lease(root: str, run: str, seconds: float) -> Lease:
    """The lease of an output root (`recsys_core.lease`): one run writes, cleans up and publishes there at a time."""
    return Lease(
        FileSystems.join(root, LEASE_FILE), LeaseFiles(_read_text, write_text_atomically, _remove), run, seconds
    )


def write_record(root: str, record: dict) -> None:
    """The run's record in `_runs/`, replaced as the run goes on (running -> succeeded / failed / gated)."""
    write_json_atomically(FileSystems.join(root, RUNS, f"{record['record']}.json"), record)


def succeeded_records(root: str) -> list[dict]:
    """The succeeded runs' records, newest finish first."""
    records = [r for r in _records(root) if r.get("status") == "succeeded"]
    return sorted(records, key=lambda r: r.get("finished_at", ""), reverse=True)


def _records(root: str) -> list[dict]:
    return [read_json(m.path) for m in FileSystems.match([FileSystems.join(root, RUNS, "*.json")])[0].metadata_list]


def discard(root: str, scratch: str, version: str, tables: tuple[str, ...], run_date: str) -> None:
    """Removes what a failed run wrote: its version directories, its staging area and its scratch space."""
    _delete([FileSystems.join(root, version_directory(table, run_date, version)) for table in tables])
    discard_staging(root, scratch, version)


def discard_staging(root: str, scratch: str, version: str) -> None:
    """Removes a run's file list and its scratch space."""
    _delete([FileSystems.join(root, STAGING, version), FileSystems.join(scratch, version)])


def _delete(paths: list[str]) -> None:
    existing = [path for path in paths if FileSystems.exists(path)]
    if existing:
        FileSystems.delete(existing)


def collect_garbage(root: str, scratch: str, tables: tuple[str, ...]) -> list[str]:
    """Before a run: removes killed runs' staging areas, scratch spaces and pointers half-written (temporary
    names), and every version no pointer references (current or the one it replaced); marks killed runs'
    records `killed`. Returns what was removed."""
    kept = set()
    for metadata in FileSystems.match([FileSystems.join(root, PUBLISHED_DIR, "dt=*.json")])[0].metadata_list:
        pointer = read_json(metadata.path)
        kept |= {pointer["version"], pointer["replaces"]}
    leftovers = set()
    for table in tables:
        for metadata in FileSystems.match([FileSystems.join(root, table, "dt=*", "v=*", "*")])[0].metadata_list:
            directory = metadata.path.rsplit("/", 1)[0]
            if directory.rsplit("/v=", 1)[1] not in kept:
                leftovers.add(directory)
    for area in (FileSystems.join(root, STAGING), scratch):  # runs' directories there: `<area>/<version>/...`
        files = FileSystems.match([FileSystems.join(area, "**")])[0].metadata_list
        leftovers |= {FileSystems.join(area, m.path[len(area) :].lstrip("/").split("/", 1)[0]) for m in files}
    for pattern in (FileSystems.join(root, PUBLISHED_DIR, "*.tmp-*"), FileSystems.join(root, RUNS, "*.tmp-*")):
        leftovers |= {m.path for m in FileSystems.match([pattern])[0].metadata_list}
    for number, leftover in enumerate(sorted(leftovers)):
        FileSystems.delete([leftover])
        if number == 0:
            fault_point("cleanup:partway")
    if leftovers:
        log.info("removed %d leftovers of earlier runs", len(leftovers))
    for record in _records(root):
        if record.get("status") == "running":
            write_record(root, {**record, "status": "killed", "reason": "the run stopped before it finished"})
    return sorted(leftovers)
