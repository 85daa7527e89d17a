"""Locations are URIs: one rule tells a URI from a local path; what only works locally (the run
lock, the demo's home) refuses a URI with what to do instead, and nothing is created on the way."""
import os

import pytest

from graceful import cli, locations
from graceful.home_lock import RemoteHomeError, home_lock


@pytest.mark.parametrize("location", ["gs://bucket/graceful", "s3://bucket/x", "hdfs://nn/x"])
def test_uris_are_kept_as_they_are(location):
    assert locations.is_uri(location)
    assert locations.absolute(location) == location


def test_a_local_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not locations.is_uri("graceful_home")
    assert locations.absolute("graceful_home") == str(tmp_path / "graceful_home")
    assert not locations.is_uri("/data/gs:/bucket"), "a mangled URI is a (wrong) local path"


def test_the_run_lock_refuses_a_bucket_home_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RemoteHomeError) as refused:
        with home_lock("gs://bucket/graceful"):
            pytest.fail("a bucket was locked")
    message = str(refused.value)
    assert "gs://bucket/graceful" in message and "local --home" in message
    assert "graceful compile kubeflow --home gs://bucket/graceful" in message
    assert os.listdir(tmp_path) == [], "pathlib would have made a local gs:/bucket folder"


@pytest.mark.parametrize("command", [["run", "--span", "1"], ["demo"]])
def test_the_cli_refuses_a_bucket_home_for_local_runs(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    assert cli.main([*command, "--home", "gs://bucket/graceful"]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert "gs://bucket/graceful" in error and "local" in error
    assert os.listdir(tmp_path) == []
