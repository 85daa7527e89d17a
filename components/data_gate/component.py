"""DataGate: stops the run before training when ExampleValidator found anomalies.

Why a component: TFX's ExampleValidator records anomalies (and a per-split `blessed` property) but does
not stop anything. Training on a broken span would waste the run at best and push a model trained on
garbage at worst, so this node fails with a readable list of the anomalies, and the Trainer runs after
it. A failed node means the run ends there: nothing downstream runs, nothing is pushed.
"""

import os

from tfx import v1 as tfx
from tfx.types import artifact_utils
from tensorflow_metadata.proto.v0 import anomalies_pb2

SCHEMA_DIFF_FILE = "SchemaDiff.pb"


class DataAnomaliesError(RuntimeError):
    """The validated span breaks the curated schema."""


def describe_anomalies(anomalies) -> list:
    """One line per anomalous feature in each split, e.g. "train: 'pixels': Column dropped"."""
    problems = []
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), SCHEMA_DIFF_FILE)
        proto = anomalies_pb2.Anomalies()
        with open(path, "rb") as handle:
            proto.ParseFromString(handle.read())
        for feature, info in sorted(proto.anomaly_info.items()):
            reasons = "; ".join(r.description or r.short_description for r in info.reason)
            problems.append(f"{split}: feature '{feature}': {info.short_description} ({reasons})")
        if proto.HasField("dataset_anomaly_info"):
            problems.append(f"{split}: dataset: {proto.dataset_anomaly_info.description}")
    return problems


@tfx.dsl.components.component
def DataGate(anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies]
             ) -> None:
    """Raises DataAnomaliesError listing every anomaly, so the run stops before training."""
    problems = describe_anomalies(anomalies)
    if problems:
        raise DataAnomaliesError(
            "The new data span breaks the schema in schemas/; nothing was trained or pushed.\n  "
            + "\n  ".join(problems)
            + "\nFix the span, or if the change is intended, update schemas/schema.pbtxt.")
    print("[data] no anomalies: the span matches the schema", flush=True)
