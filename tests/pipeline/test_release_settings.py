"""SignOffConfig.release_on and the Airflow release DAG run's id (pipeline/release.py); the trigger
itself runs against a real Airflow database in tests/pipeline/test_airflow_release_e2e.py."""
import re

import pytest

from graceful.pipeline import release
from graceful.pipeline.configs import RELEASE_ON, SignOffConfig

ALLOWED_RUN_ID = r"^[A-Za-z0-9_.~:+-]+$"  # Airflow 2.10's default [scheduler] allowed_run_id_pattern


def test_release_on_is_local_by_default_and_only_a_known_runner():
    assert SignOffConfig().release_on == "local" and RELEASE_ON == ("local", "airflow")
    with pytest.raises(ValueError, match="release_on must be one of local, airflow"):
        SignOffConfig(release_on="kubeflow")


def test_one_airflow_run_id_per_request_that_airflow_accepts():
    for request_id in ("scheduled__2026-01-02T00:00:00+00:00", "2026-01-02T03:04:05.678901"):
        assert release.airflow_run_id(request_id) == f"release__{request_id}"
    odd = [release.airflow_run_id(r) for r in ("team a/run 1", "team a_run 1", "team_a/run_1")]
    assert all(re.match(ALLOWED_RUN_ID, run_id) for run_id in odd)
    assert len(set(odd)) == 3, "two requests never share a run id"
    assert release.airflow_run_id("team a/run 1") == odd[0], "the same request, the same run id"
