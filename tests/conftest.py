"""Shared fixtures: tiny real Fashion-MNIST spans and pipeline configs for fast end-to-end runs."""
import dataclasses
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from graceful.models.params import TrainingParams  # noqa: E402
from graceful.pipeline.configs import GateConfig, PipelineConfig, SignOffConfig  # noqa: E402
from tests.mariadb import mariadb, mariadb_server  # noqa: E402,F401  (fixtures: a real MariaDB)

TINY_SPAN = 600
TINY_EVAL = 300


@pytest.fixture
def tiny_config(tmp_path) -> PipelineConfig:
    return make_tiny_config(tmp_path)


def make_tiny_config(tmp_path) -> PipelineConfig:
    """A home under tmp_path; 600 training images per span, 300 eval images, a few quick epochs.

    Tiny models flip many examples, so the flip limits are off here; tests of the flip gate set them.
    Sign-off is auto-approved; the sign-off tests decide themselves.
    """
    return PipelineConfig(home=str(tmp_path / "home"), span_size=TINY_SPAN, eval_size=TINY_EVAL,
                          training=TrainingParams(architecture="small", epochs=5),
                          gate=GateConfig(min_accuracy=0.3, max_accuracy_drop=0.0, max_nfr=1.0,
                                          max_class_nfr=1.0, max_relative_nfr=100.0),
                          sign_off=SignOffConfig(auto_approve=True))


def with_training(config: PipelineConfig, **changes) -> PipelineConfig:
    return dataclasses.replace(config, training=dataclasses.replace(config.training, **changes))


def run_span(config: PipelineConfig, span: int) -> None:
    """One quiet pipeline run on `span`, preparing the spans it needs as `graceful run` does."""
    from graceful.cli import prepare_data
    from graceful.pipeline import local_runner

    config = dataclasses.replace(config, span=span)
    prepare_data(config)
    local_runner.run(config, log=lambda _: None)
