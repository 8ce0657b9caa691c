"""Nightly batch recommendations: bundle + interactions -> Parquet tables for one run date.

    python -m jobs.batch_recommend --bundle runs --output output --run-date 2026-11-22 \
        [--data-source grouplens --data-path ../shared/data/ml-100k] [--top-k 100 --final-k 20] \
        [--reranker auto|ranking|dlrm|dcn|multitask|none] [--blend-weight W]
        [Beam options: --runner, --direct_num_workers, ...]

Writes `recommendations`, `user_embeddings`, `item_embeddings`, `similar_items` and
`dead_letter` (input rows that failed validation) under `--output`, each partitioned
by `dt=<run date>` and versioned by run, then publishes them all at once by writing
`_published/dt=<run date>.json` (`jobs/publish.py`), after a publish gate
(`jobs/gate.py`). Every run leaves a record in `_runs/`. The launcher reads no
rows: the workers read, check and group them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import sys
import time
import uuid

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# isort: split
import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, TestOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from jobs import changes, gate, publish
from jobs.counters import NAMESPACE, dead_prefix, rows_dead, rows_read, rows_written
from jobs.options import JobSettings, RecommendOptions, runs_locally, validate
from jobs.scoring import DEAD
from jobs.sources import JobInputs, locate_inputs
from jobs.transforms import (
    Activity,
    BuildUserBlocks,
    CheckRows,
    CountDistinctItems,
    DeadLetters,
    EmbedItems,
    ItemEmbeddings,
    ReadTable,
    RecommendUsers,
    RefusedFiles,
    SimilarItems,
    WriteTable,
)
from recsys_core.console import configure_logging
from recsys_core.data import DataError
from recsys_core.fingerprint import json_sha256
from recsys_core.lease import LeaseHeld
from recsys_core.schema import ITEM_ID
from recsys_core.serving import outputs
from recsys_core.serving.validation import INTERACTIONS, ITEMS, USERS, Rules, with_source

log = logging.getLogger("batch_recommend")


def rules_for(settings: JobSettings) -> Rules:
    """The bundle's schema, and the end of the run date as the latest plausible interaction."""
    return Rules(settings.manifest.schema, settings.recommend.timestamp + 86_400)


def build_pipeline(pipeline: beam.Pipeline, settings: JobSettings, inputs: JobInputs, run_id: str, version: str):
    """Wires the job: read -> check rows -> group users -> blocks -> top-K unseen -> re-rank -> five tables.

    Every table's files go to its version directory (`publish.version_directory`);
    their list, `{table, path, rows, sha256}` per file, to `files_list(...)`.
    """
    model_version = settings.manifest.bundle_version
    rules = rules_for(settings)
    recommend = dataclasses.replace(settings.recommend, run_id=run_id)
    written = []

    def write(table: str, named_tables) -> None:
        directory = publish.version_directory(table, settings.run_date, version)
        step = f"Write{table.title().replace('_', '')}"
        written.append(named_tables | step >> WriteTable(table, settings.output, directory))

    checked = {
        table: pipeline
        | f"Read{table.title()}" >> ReadTable(inputs, table)
        | f"Check{table.title()}" >> CheckRows(table, rules, settings.bundle)
        for table in (INTERACTIONS, USERS, ITEMS)
        if inputs.has(table)
    }
    items = checked[ITEMS]["rows"] if ITEMS in checked else _items_from_interactions(checked[INTERACTIONS]["rows"])
    embedded = items | "EmbedItems" >> EmbedItems(settings.bundle, rules)
    index = embedded["index"]
    buckets = max(1, -(-inputs.estimated_users // settings.block_size))
    users = checked[USERS]["rows"] if USERS in checked else None
    spill = publish.shuffle_directory(settings.scratch, version) if settings.shuffle == "files" else None
    grouped = (users, checked[INTERACTIONS]["rows"]) | "GroupUsers" >> BuildUserBlocks(
        rules, USERS in checked, buckets, settings.block_size, settings.max_seen_per_block, index, spill
    )
    activity = checked[INTERACTIONS]["rows"] | "Activity" >> Activity(index, settings.popularity_window_days)
    scored = grouped["blocks"] | "RecommendUsers" >> RecommendUsers(settings.bundle, recommend, index, activity)
    scored[outputs.RECOMMENDATIONS] | "DistinctItems" >> CountDistinctItems()
    write(outputs.RECOMMENDATIONS, scored[outputs.RECOMMENDATIONS])
    write(outputs.USER_EMBEDDINGS, scored[outputs.USER_EMBEDDINGS])
    write(outputs.ITEM_EMBEDDINGS, index | "ItemEmbeddings" >> ItemEmbeddings(model_version))
    similar = SimilarItems(settings.similar_k, model_version, recommend.item_shard_size)
    write(outputs.SIMILAR_ITEMS, index | "SimilarItems" >> similar)
    refused = pipeline | "RefusedFiles" >> RefusedFiles(inputs)
    dead = [checked[t][DEAD] for t in checked] + [embedded[DEAD], grouped[DEAD], refused]
    write(outputs.DEAD_LETTER, dead | "AllDeadLetters" >> beam.Flatten() | "DeadLetters" >> DeadLetters())
    listing = files_list(settings.output, version)
    (
        written
        | "AllFiles" >> beam.Flatten()
        | "ListFiles" >> beam.combiners.ToList()
        | "WriteList" >> beam.Map(lambda files: publish.write_json_atomically(listing, {"files": files}))
    )


def files_list(root: str, version: str) -> str:
    """Where the pipeline lists the files it wrote, for the launcher's manifest."""
    return FileSystems.join(root, publish.STAGING, version, "files.json")


def _items_from_interactions(interactions):
    """Without an items table: one row per item id the interactions name (ids-only schemas)."""
    return (
        interactions
        | "ItemIds" >> beam.FlatMap(lambda rows: rows[ITEM_ID].to_pylist())
        | "Distinct" >> beam.Distinct()
        | "ToRows" >> beam.Map(lambda item: with_source(pa.table({ITEM_ID: [item]}), "interactions"))
    )


def run(argv: list[str] | None = None, pipeline: beam.Pipeline | None = None) -> dict:
    """Validates options, locates the inputs, runs the pipeline, gates and publishes the run; returns its manifest.

    Every run leaves a record in `_runs/`, whatever its end.

    Args:
        argv: job and Beam flags.
        pipeline: a pipeline to build on (e.g. `TestPipeline`); by default one from the flags.

    Raises:
        ValueError / DataError: a bad option or input, more invalid rows than `--max-bad-share`, or a
            failed publish gate (`GateError`); nothing is published then.
    """
    options = RecommendOptions(argv)
    settings = validate(options)
    dry_run = options.view_as(TestOptions).dry_run  # a Dataflow job description, built and not submitted
    clock = {"started": time.perf_counter()}
    attempt = uuid.uuid4().hex[:6]
    record = {
        "record": f"{settings.run_date}.{_now().replace(':', '')}.{attempt}",
        "run_date": settings.run_date,
        "started_at": _now(),
        "bundle": {"path": settings.bundle, "version": settings.manifest.bundle_version},
    }

    def save(**changes) -> None:
        record.update(changes)
        if not dry_run:
            publish.write_record(settings.output, record)

    lease = None if dry_run else publish.output_lease(settings.output, record["record"], settings.lease_seconds)
    with lease or contextlib.nullcontext():  # the root is this run's: no other run cleans up or publishes there
        if not dry_run:
            publish.collect_garbage(settings.output, settings.scratch, outputs.PUBLISHED)
        save(status="running")
        version = None
        try:
            inputs = locate_inputs(settings.data, rules_for(settings))
            run_id = run_identity(settings, inputs)
            version = f"{run_id}.{attempt}"
            save(run_id=run_id, version=version, input_fingerprints=inputs.fingerprints, input_footer_rows=inputs.rows)
            clock["located"] = time.perf_counter()
            pipeline = pipeline or beam.Pipeline(runner=_local_runner(options), options=options)
            build_pipeline(pipeline, settings, inputs, run_id, version)
            with _threads_per_local_worker(options):
                result = pipeline.run()
            if dry_run:
                return {"dry_run": True, "runner": type(pipeline.runner).__name__, "job": str(result.job.proto)}
            result.wait_until_finish()
            clock["scored"] = time.perf_counter()
            counters = _counters(result)
            record.update(counters=counters, fallback_share=_fallback_share(counters))
            record["input_rows"] = _input_rows(counters, settings.max_bad_share, inputs)
            files = _read_files_list(settings, version)
            record["list_overlap"] = _list_overlap(settings.output, files)
            changes.warn_on_changes(publish.succeeded_records(settings.output), record)
            refused = gate.failures(settings.gate, counters, settings.manifest.metrics)
            if refused:
                raise gate.GateError("the publish gate refused this run: " + "; ".join(refused))
            manifest = _manifest(settings, inputs, run_id, counters, record["input_rows"], files)
            record["manifest_sha256"] = publish.manifest_hash(manifest)
            paths = {table: [f["path"] for f in files if f["table"] == table] for table in outputs.PUBLISHED}
            lease.check()
            publish.publish_run(settings.output, settings.run_date, version, manifest, paths)
        except BaseException as error:
            if version and not dry_run:
                publish.discard(settings.output, settings.scratch, version, outputs.PUBLISHED, settings.run_date)
            status = "gated" if isinstance(error, gate.GateError) else "failed"
            save(status=status, reason=f"{type(error).__name__}: {error}", finished_at=_now())
            raise
        publish.discard_staging(settings.output, settings.scratch, version)
        clock["published"] = time.perf_counter()
        stages = list(clock)
        timings = {f"{a}_to_{b}": clock[b] - clock[a] for a, b in zip(stages, stages[1:], strict=False)}
        save(status="succeeded", finished_at=_now(), timings_seconds=timings)
        return manifest


def run_identity(settings: JobSettings, inputs: JobInputs) -> str:
    """`<date>-<hash>` of what determines the rows: the bundle, the inputs' fingerprints, the parameters."""
    identity = {
        "bundle": settings.manifest.bundle_version,
        "bundle_path": settings.bundle,
        "inputs": inputs.fingerprints,
        "parameters": _output_parameters(settings),
        "run_date": settings.run_date,
        "schema_version": outputs.SCHEMA_VERSION,
    }
    return f"{settings.run_date}-{json_sha256(identity)[:12]}"


def _output_parameters(settings: JobSettings) -> dict:
    """The options that change the rows (not how they are computed: shards, shuffle, workers)."""
    recommend = settings.recommend
    return {
        "top_k": recommend.top_k,
        "final_k": recommend.final_k,
        "reranker": recommend.reranker,
        "blend_weight": recommend.blend_weight,
        "popularity_weight": recommend.popularity_weight,
        "popularity_window_days": settings.popularity_window_days,
        "similar_k": settings.similar_k,
        "block_size": settings.block_size,
        "max_seen_per_block": settings.max_seen_per_block,
        "max_bad_share": settings.max_bad_share,
        "run_date_timestamp": recommend.timestamp,
        "query_policy": dataclasses.asdict(settings.manifest.query_policy),
        "index": recommend.index,
        **(
            {"scann": dataclasses.asdict(recommend.scann), "recall_sample_every": recommend.recall_sample_every}
            if recommend.index == "scann"
            else {}
        ),
    }


def _manifest(settings, inputs, run_id, counters, input_rows, files) -> dict:
    """What a consumer needs to know about a published run; only what the inputs determine (no timings, no
    attempt-specific paths), so equal runs have equal manifests."""
    return {
        "schema_version": outputs.SCHEMA_VERSION,
        "run_id": run_id,
        "run_date": settings.run_date,
        "tables": {
            name: {
                "schema": str(outputs.SCHEMAS[name]),
                "files": [
                    {"name": f["path"].rsplit("/", 1)[1], "rows": f["rows"], "sha256": f["sha256"]}
                    for f in files
                    if f["table"] == name
                ],
            }
            for name in outputs.PUBLISHED
        },
        "row_counts": {name: counters.get(rows_written(name), 0) for name in outputs.PUBLISHED},
        "input_rows": input_rows,
        "user_count": gate.users_served(counters),
        "item_count": counters.get(rows_written(outputs.ITEM_EMBEDDINGS), 0),
        "model": {"bundle": settings.bundle, "bundle_version": settings.manifest.bundle_version},
        "data_lineage": inputs.lineage,
        "input_fingerprints": inputs.fingerprints,
        "parameters": _output_parameters(settings),
        "retrieval": {
            "index": settings.recommend.index,
            "recall_at_k": gate.recall_at_k(counters),  # None for the exact index
            "recall_sampled_items": counters.get("recall_relevant", 0),
        },
        "counters": counters,
    }


def _read_files_list(settings: JobSettings, version: str) -> list[dict]:
    """The files the pipeline wrote, `{table, path, rows, sha256}` each, in path order."""
    return sorted(publish.read_json(files_list(settings.output, version))["files"], key=lambda f: f["path"])


def _fallback_share(counters: dict) -> float:
    return counters.get("fallback_users", 0) / max(gate.users_served(counters), 1)


def _list_overlap(root: str, files: list[dict]) -> dict | None:
    """`changes.list_overlap` against the latest published run; None on the first night."""
    previous = publish.current_pointer(root, outputs.LATEST_POINTER)
    recommendations = [f["path"] for f in files if f["table"] == outputs.RECOMMENDATIONS]
    return changes.list_overlap(root, recommendations, previous) if previous else None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _counters(result) -> dict[str, int]:
    """The job's Beam counters, summed over the steps that increment the same name."""
    totals = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + value
    return totals


@contextlib.contextmanager
def _threads_per_local_worker(options: RecommendOptions):
    """With `--direct_num_workers N` processes on this machine, each worker's TensorFlow gets cores / N
    threads (`TF_NUM_INTRAOP_THREADS`, `TF_NUM_INTEROP_THREADS`, which the worker processes inherit), not
    one per core each: N workers x all cores oversubscribe the machine (measured on 2 cores, 100 000 users
    x 20 000 items: 25 s with TensorFlow's default, 21 s with one thread each). Variables already set win."""
    direct = options.view_as(DirectOptions)
    workers = direct.direct_num_workers or 1
    if not runs_locally(options) or direct.direct_running_mode != "multi_processing" or workers < 2:
        yield
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    names = [n for n in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS") if n not in os.environ]
    os.environ.update(dict.fromkeys(names, threads))
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)


def _local_runner(options: RecommendOptions):
    """For the default DirectRunner, its FnApiRunner engine (in-process or `--direct_num_workers` processes).

    Beam's DirectRunner first tries to download the Prism runner, which fails
    offline with a page of log lines before falling back to this same engine.
    """
    if runs_locally(options):
        return FnApiRunner()
    return None


def _input_rows(counters: dict, max_bad_share: float, inputs: JobInputs) -> dict:
    """Per input table: rows read = rows used + rows dead-lettered, reconciled with the files' footers (the
    rows of refused files count as read and dead-lettered); refuses the run above `max_bad_share`."""
    rows = {}
    for table in (INTERACTIONS, USERS, ITEMS):
        read, dead = counters.get(rows_read(table), 0), counters.get(rows_dead(table), 0)
        rows[table] = {"read": read, "used": read - dead, "dead_lettered": dead}
        if table in inputs.files:
            footers = inputs.rows[table] + sum(r.rows for r in inputs.refused if r.table == table)
            rows[table]["footer_rows"] = footers
            if read != footers:
                raise DataError(
                    f"{read} {table} rows were read, but the footers of its files count {footers}: did the files "
                    "change while the job ran? Nothing was published; run the job again once the export is done"
                )
        if read and dead / read > max_bad_share:
            prefix = dead_prefix(table)
            reasons = ", ".join(
                f"{k.removeprefix(prefix)}: {v}" for k, v in sorted(counters.items()) if k.startswith(prefix)
            )
            raise DataError(
                f"{dead} of {read} {table} rows ({dead / read:.1%}) are invalid ({reasons}), above --max-bad-share "
                f"{max_bad_share:.1%}; nothing was published. Fix the input, or raise --max-bad-share"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    try:
        manifest = run(argv)
    except (ValueError, DataError, LeaseHeld) as error:
        print(f"batch_recommend: error: {error}", file=sys.stderr)
        return 2
    print(f"run {manifest['run_id']} published: {manifest['row_counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
