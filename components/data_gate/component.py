"""DataGate: stops the run before training when ExampleValidator found anomalies.

Why a component: TFX's ExampleValidator records anomalies (and a per-split `blessed` property) but does
not stop anything. Training on a broken span would waste the run at best and push a model trained on
garbage at worst, so this node fails with a readable list of the anomalies, and the Trainer runs after
it. A failed node means the run ends there: nothing downstream runs, nothing is pushed.

It also runs the data checks of components/data_gate/checks.py on StatisticsGen's statistics (enough
examples per split, every label class present), which no schema anomaly covers. The training window
(components/span_window) trains only on spans whose DataGate succeeded, so a rejected span never
trains, in this run or a later one.
"""

import json
import os

from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tensorflow_metadata.proto.v0 import anomalies_pb2

from graceful.components.data_gate import checks

SCHEMA_DIFF_FILE = "SchemaDiff.pb"
SPAN = "span"


class DataAnomaliesError(RuntimeError):
    """The validated span breaks the curated schema."""


class DataChecksError(DataAnomaliesError):
    """The span is too small or lacks label classes (the data checks), possibly with anomalies too."""


def describe_anomalies(anomalies) -> list:
    """One line per anomalous feature in each split, e.g. "train: 'pixels': Column dropped"."""
    problems = []
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), SCHEMA_DIFF_FILE)
        proto = anomalies_pb2.Anomalies()
        with fileio.open(path, "rb") as handle:  # a bucket URI on Kubeflow
            proto.ParseFromString(handle.read())
        for feature, info in sorted(proto.anomaly_info.items()):
            reasons = "; ".join(r.description or r.short_description for r in info.reason)
            problems.append(f"{split}: feature '{feature}': {info.short_description} ({reasons})")
        if proto.HasField("dataset_anomaly_info"):
            problems.append(f"{split}: dataset: {proto.dataset_anomaly_info.description}")
    return problems


def check_problems(statistics, schema, examples, min_examples: int, label_key: str,
                   require_all_classes: bool, class_names=()) -> list:
    """One line per failed data check of each split (checks.check_statistics)."""
    from tfx.components.statistics_gen import stats_artifact_utils

    splits = {split: stats_artifact_utils.load_statistics(statistics, split).proto()
              for split in artifact_utils.decode_split_names(statistics.split_names)}
    classes = (checks.label_classes(checks.load_schema(schema.uri), label_key, class_names)
               if require_all_classes else [])
    span = examples.get_int_custom_property(SPAN) if examples.has_custom_property(SPAN) else "?"
    return checks.check_statistics(splits, span, min_examples, label_key, classes)


def gate_message(anomalies: list, failed_checks: list) -> str:
    """The error text: what broke, that nothing was trained, and what to do."""
    lines = ["The new data span " + " and ".join(
        [what for what, found in (("breaks the schema in schemas/", anomalies),
                                  ("fails the data checks", failed_checks)) if found])
        + "; nothing was trained or pushed.", *[f"  {p}" for p in failed_checks + anomalies]]
    if anomalies:
        lines.append("Fix the span, or if the change is intended, update schemas/schema.pbtxt.")
    if failed_checks:
        lines.append("Fix or replace the span, or change the settings named above "
                     "(PipelineConfig.data_checks).")
    return "\n".join(lines)


@tfx.dsl.components.component
def DataGate(anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
             statistics: tfx.dsl.components.InputArtifact[
                 tfx.types.standard_artifacts.ExampleStatistics],
             schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
             examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
             min_examples: tfx.dsl.components.Parameter[int] = 50,
             label_key: tfx.dsl.components.Parameter[str] = "label",
             require_all_classes: tfx.dsl.components.Parameter[bool] = True,
             class_names: tfx.dsl.components.Parameter[str] = "[]") -> None:
    """Raises DataAnomaliesError listing every anomaly (DataChecksError when a data check failed
    too), so the run stops before training. `examples` is the span validated: its span number
    names the span, and the training window knows the span passed by this input.
    `class_names`: the data contract's label vocabulary as a JSON list ([] = the schema's)."""
    problems = describe_anomalies(anomalies)
    failed_checks = check_problems(statistics, schema, examples, min_examples, label_key,
                                   require_all_classes, json.loads(class_names))
    if failed_checks:
        raise DataChecksError(gate_message(problems, failed_checks))
    if problems:
        raise DataAnomaliesError(gate_message(problems, []))
    print(f"[data] no anomalies, data checks passed: at least {min_examples} examples per split"
          + (", every label class present" if require_all_classes else ""), flush=True)
