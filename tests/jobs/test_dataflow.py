"""The job on Dataflow, offline: the graph pickles and translates into a Dataflow job description.

As Beam's own Dataflow runner tests do, `--dry_run=True --no_auth` builds the job
without credentials or submission; the inputs are local Parquet files.
"""

import pyarrow.parquet as pq

from jobs import batch_recommend


def test_the_dataflow_job_description_builds_offline(ml100k_bundle, ml100k, tmp_path, monkeypatch):
    for name, table in (("interactions", ml100k.ratings), ("users", ml100k.users), ("items", ml100k.items)):
        pq.write_table(table, tmp_path / f"{name}.parquet")
    captured = {}
    original = batch_recommend.build_pipeline

    def build(pipeline, *args):
        original(pipeline, *args)
        captured["pipeline"] = pipeline

    monkeypatch.setattr(batch_recommend, "build_pipeline", build)
    result = batch_recommend.run(
        ["--bundle", ml100k_bundle, "--output", "gs://recs-bucket/recs", "--run-date", "2026-11-22"]
        + ["--data-source", "parquet", "--data-path", str(tmp_path)]
        + ["--runner", "DataflowRunner", "--dry_run=True", "--no_auth", "--project", "my-project"]
        + ["--region", "europe-west1", "--temp_location", "gs://recs-bucket/tmp"]
        + ["--sdk_container_image", "europe-docker.pkg.dev/my-project/recsys/worker:0.1.0"]
    )
    assert result["dry_run"] and result["runner"] == "DataflowRunner"
    assert "JOB_TYPE_BATCH" in result["job"]
    pipeline = captured["pipeline"].to_runner_api()
    names = {t.unique_name for t in pipeline.components.transforms.values()}
    for step in ("GroupUsers/GroupByBucket", "EmbedItems", "RecommendUsers", "WriteDeadLetter", "ReadInteractions"):
        assert any(name.startswith(step) for name in names), step
