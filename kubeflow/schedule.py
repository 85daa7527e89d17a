"""Uploads the compiled pipeline to a Kubeflow Pipelines cluster and creates a recurring run (cron).

    graceful compile kubeflow --home gs://BUCKET/graceful --image REGISTRY/graceful-tfx:0.1.0
    .venv/bin/python kubeflow/schedule.py --host https://KFP_HOST --package graceful.yaml \\
        --cron "0 0 3 * * *"            # KFP cron has seconds: every day at 03:00

Each scheduled run ingests the newest span of the data contract (the demo's: under <home>/data;
a project's: its root and patterns, through CsvExampleGen or ImportExampleGen),
trains against the last blessed model and goes through the flip gate and the human sign-off.

The backend must run the spec's resolver tasks (the baseline query): Vertex AI Pipelines does; the
open-source KFP v2 backend refuses them ("resolver executors not implemented") when it creates the
run, which this script cannot see beforehand (README: Run on Kubeflow Pipelines, "Which backend").
"""
from __future__ import annotations

import argparse


def schedule(host: str, package: str, cron: str, experiment: str, name: str,
             max_concurrency: int = 1, namespace: str | None = None):
    import kfp

    client = kfp.Client(host=host, namespace=namespace)
    pipeline = client.upload_pipeline(package, pipeline_name=name)
    versions = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
    return client.create_recurring_run(
        experiment_id=experiment_id, job_name=f"{name}-scheduled", cron_expression=cron,
        pipeline_id=pipeline.pipeline_id, version_id=versions[0].pipeline_version_id,
        max_concurrency=max_concurrency,  # one retraining at a time: runs compare with the last
        no_catchup=True)                  # blessed model, so they must not overlap or pile up


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True, help="KFP API endpoint")
    parser.add_argument("--package", default="graceful.yaml", help="compiled pipeline spec")
    parser.add_argument("--cron", default="0 0 3 * * *", help="KFP cron (with seconds)")
    parser.add_argument("--experiment", default="graceful")
    parser.add_argument("--name", default="graceful")
    parser.add_argument("--namespace", default=None)
    args = parser.parse_args()
    run = schedule(args.host, args.package, args.cron, args.experiment, args.name,
                   namespace=args.namespace)
    print(f"recurring run {run.recurring_run_id} created: {args.cron}")


if __name__ == "__main__":
    main()
