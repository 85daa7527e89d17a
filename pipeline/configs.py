"""Every knob of the graceful pipeline, in one place.

A `PipelineConfig` is all a runner needs: the local runner, the CLI, the tests, Kubeflow and Airflow
build the same pipeline from it. Paths default to one home directory (`./graceful_home`), which may
be a URI (`gs://bucket/graceful`): locations below it are joined as strings, never with pathlib,
which would turn `gs://b/x` into `gs:/b/x`.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import os
from pathlib import Path

from graceful import mlmd_store
from graceful.contract import DataContract, ModelContract
from graceful.data import CLASS_NAMES
from graceful.gate import GateConfig
from graceful.models.params import TrainingParams
from graceful.serving import EDGE_QUANTIZATIONS

__all__ = ["DataChecks", "DataContract", "EdgeConfig", "GateConfig", "ModelContract", "PipelineConfig",
           "SignOffConfig", "TrainingParams", "fashion_mnist_data", "fashion_mnist_model"]

# The curated schema ships as package data of graceful.schemas (schemas/ in the repository).
SCHEMA_DIR = Path(str(importlib.resources.files("graceful.schemas") / "schema.pbtxt")).parent
DEFAULT_HOME = "graceful_home"
HOME_ENV = "GRACEFUL_HOME"
# SignOffConfig.release_on: what a sign-off decision starts.
RELEASE_ON = (RELEASE_LOCAL, RELEASE_AIRFLOW) = ("local", "airflow")


@dataclasses.dataclass
class SignOffConfig:
    """The human sign-off before any push (components/human_signoff).

    Slack is used when SLACK_BOT_TOKEN and a channel (here or $GRACEFUL_SLACK_CHANNEL) are set;
    otherwise decisions come from `graceful approve|reject`. No decision within `timeout_seconds`
    rejects. `auto_approve` approves without asking — for local demos and tests only.

    `wait` chooses how the run waits for the person. False (the default): it does not — the run
    opens the request with a deadline (now + `timeout_seconds`), ends "awaiting sign-off" and holds
    no process, worker slot or pod; the decision then releases the candidate through the release
    pipeline (pipeline/release.py: evaluation against the baseline it was judged on, then the push).
    True: the sign-off step polls for the decision (every `max_poll_seconds` at most) and the run
    evaluates and pushes itself — simple, but it holds its process for up to `timeout_seconds`.

    `release_on` chooses what a decision on a deferred request starts (`graceful approve|reject`,
    `graceful release`, and so `graceful slack-gate`, which starts `graceful release`):
      "local"   (default) the release pipeline, run in that process with TFX's LocalDagRunner under
                the home's lock; the command ends with the release's outcome.
      "airflow" one run of the Airflow DAG `<pipeline name>_release` (pipeline/airflow_dag.py),
                queued through Airflow's Python API with the request's values as its conf and a
                run id derived from the request id, so a second trigger queues nothing; the
                command ends once it is queued and Airflow's workers run it. Where decisions are
                made, Airflow must be installed and configured like the deployment's (its
                AIRFLOW_HOME, or AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: the metadata database of
                the Airflow that parses pipeline/airflow_dag.py).
    """

    auto_approve: bool = False
    timeout_seconds: int = 3600
    slack_channel: str = ""
    max_poll_seconds: int = 15
    wait: bool = False
    # Where decisions are kept: "" = beside the metadata (PipelineConfig.sign_off_store), else a
    # SQLite path or a mysql://user@host:port/database (password: $GRACEFUL_METADATA_PASSWORD).
    store: str = ""
    release_on: str = RELEASE_LOCAL  # or RELEASE_AIRFLOW: what a decision starts (see above)

    def __post_init__(self):
        if self.release_on not in RELEASE_ON:
            raise ValueError(f"SignOffConfig.release_on must be one of {', '.join(RELEASE_ON)}, "
                             f"not {self.release_on!r}.")


@dataclasses.dataclass
class DataChecks:
    """Checks DataGate runs on each new span's statistics before anything trains on it.

    Why: a span of a handful of examples, an empty span or one whose labels are all one class matches
    the schema feature by feature, yet would train a useless model. A span that fails is rejected:
    its run stops before the Trainer and later runs' training windows skip it.
    `min_examples`: fewest examples each split (train, eval) must hold; `require_all_classes`: every
    label class (the data contract's class_names, else the schema's categorical label domain) must
    occur in each split.
    """

    min_examples: int = 50
    require_all_classes: bool = True


@dataclasses.dataclass
class EdgeConfig:
    """The edge (TensorFlow Lite) branch: off by default (components/edge_converter, edge_pusher).

    When `enabled`, each run converts the candidate to a `.tflite` model (`quantization` "float":
    float32 weights and maths; "int8": post-training integer quantization of weights and
    activations, calibrated on `representative_examples` examples of the training window, with
    float input and output so callers feed the same features), checks it for negative flips
    against the cloud candidate and the previously pushed edge model (GateConfig.max_edge_*), and
    pushes it to `destination` (default <home>/edge_serving) only when the cloud model is pushed
    and that check passes. An edge failure never blocks the cloud push. Needs a Keras model
    without a TFX Transform (graceful's run_fn exports one).
    """

    enabled: bool = False
    quantization: str = "float"
    representative_examples: int = 200
    destination: str = ""  # "" = <home>/edge_serving

    def __post_init__(self):
        if self.quantization not in EDGE_QUANTIZATIONS:
            raise ValueError(f"EdgeConfig.quantization must be one of "
                             f"{', '.join(EDGE_QUANTIZATIONS)}, not {self.quantization!r}.")
        if self.representative_examples < 1:
            raise ValueError("EdgeConfig.representative_examples must be at least 1 (examples of "
                             f"the training window that calibrate int8), got "
                             f"{self.representative_examples}.")


def fashion_mnist_data() -> DataContract:
    """The embedded demo dataset's contract: spans that graceful.data writes into <home>/data."""
    return DataContract(format="tfrecord", label_key="label", id_key="example_id",
                        class_names=CLASS_NAMES, image_feature="pixels")


def fashion_mnist_model() -> ModelContract:
    """What graceful's built-in demo models (graceful.models) export."""
    return ModelContract(output_key="probabilities", scores="probabilities",
                         embedding_layer="embedding")


@dataclasses.dataclass
class PipelineConfig:
    home: str = dataclasses.field(default_factory=lambda: os.environ.get(HOME_ENV, DEFAULT_HOME))
    pipeline_name: str = "graceful"
    # What the data and the model look like (graceful.contract). The defaults are the embedded
    # Fashion-MNIST demo; a project sets its own (`graceful init` writes them).
    data: DataContract = dataclasses.field(default_factory=fashion_mnist_data)
    model: ModelContract = dataclasses.field(default_factory=fashion_mnist_model)
    # True: before a run, graceful writes missing Fashion-MNIST spans into <home>/data (the demo).
    # A project with its own data sets False: its spans are never written to, only read.
    demo_data: bool = True
    span: int | None = None          # None = the newest span on disk
    window_spans: int = 0            # train on the newest N ingested spans; 0 = all of them
    # The window is resolved from MLMD by a custom resolver strategy, which TFX's Kubeflow v2 compiler
    # cannot compile (it knows only Latest/LatestBlessed); there, runs train on the span they ingest.
    cross_run_window: bool = True
    num_spans: int = 3               # how many spans `graceful` prepares from Fashion-MNIST
    span_size: int = 20000           # training images per span
    eval_size: int | None = None     # None = all 10k test images
    fashion_mnist_dir: str | None = None
    schema_dir: str = str(SCHEMA_DIR)  # where the pipeline's steps read schemas/ (in an image: its copy)
    training: TrainingParams = dataclasses.field(default_factory=TrainingParams)
    gate: GateConfig = dataclasses.field(default_factory=GateConfig)
    sign_off: SignOffConfig = dataclasses.field(default_factory=SignOffConfig)
    data_checks: DataChecks = dataclasses.field(default_factory=DataChecks)
    edge: EdgeConfig = dataclasses.field(default_factory=EdgeConfig)
    # Your model: a module (TFX's module_file convention) defining `build_model(context)`, which
    # graceful's run_fn trains against the served model; "" = graceful's built-in demo models.
    module_file: str = ""
    # Or your own training code (a TFX run_fn, e.g. "my_project.train.run_fn"), which may use
    # graceful.models.distillation's helpers; the served model arrives as `fn_args.base_model`.
    run_fn: str = "graceful.models.training.run_fn"
    # Optional preprocessing: a module file defining TFX's `preprocessing_fn(inputs)`, run by a TFX
    # Transform on the training window; "" = no Transform. graceful's run_fn builds your model on its
    # outputs (ModelContext.feature_spec = the transformed features) and exports the model with the
    # transform graph inside: one artifact that takes raw examples, gated like any other. The label
    # and the id are never transformed (pass them through or ignore them; the model cannot read
    # them). With your own run_fn, the graph arrives as fn_args.transform_graph_path.
    transform_module: str = ""
    # Empty = Beam's DirectRunner in this process with one worker. Any argument makes TFX build a
    # throwaway TFX source package for remote workers before every Beam step (~1.5 s and 42 MB of
    # temp files each); local runs delete those with their scratch directory (local_runner).
    beam_pipeline_args: list[str] = dataclasses.field(default_factory=list)
    enable_cache: bool = False
    # Non-empty = run even though serving/ holds a model that ML Metadata does not know or that is not
    # the resolved baseline (BaselineGuard); the reason is recorded in ML Metadata. Leave empty.
    accept_unknown_serving: str = ""
    # Where ML Metadata lives: "" = the embedded SQLite store <home>/metadata.sqlite; or a
    # MySQL/MariaDB database, mysql://user@host:port/database, whose password is read from
    # $GRACEFUL_METADATA_PASSWORD (never part of the location: graceful refuses one that has it).
    metadata: str = ""

    def __post_init__(self):
        # A location graceful cannot use, above all one carrying a password, is refused when the
        # config is made, before a log line or a compiled pipeline could carry it.
        for location in (self.metadata, self.sign_off.store):
            mlmd_store.mysql_server(location)

    @property
    def data_root(self) -> str:
        return self.data.root or os.path.join(self.home, "data")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.home, "pipeline_root")

    @property
    def metadata_uri(self) -> str:
        """The ML Metadata store's location (graceful.mlmd_store): a SQLite path or a mysql:// URL."""
        return self.metadata or os.path.join(self.home, "metadata.sqlite")

    @property
    def sign_off_store(self) -> str:
        """The decision store shared by the pipeline, `graceful approve|reject` and slack-gate:
        SignOffConfig.store if set, else the metadata's MySQL database when it has one (one server
        that pods, the Slack gate and the CLI all reach), else <home>/sign_off.sqlite."""
        if self.sign_off.store:
            return self.sign_off.store
        if mlmd_store.mysql_server(self.metadata) is not None:  # the setting: <home> may be a URI
            return self.metadata_uri
        return os.path.join(self.home, "sign_off.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.home, "serving")

    @property
    def edge_serving_dir(self) -> str:
        """Where edge models are pushed (EdgeConfig.destination, else <home>/edge_serving)."""
        return self.edge.destination or os.path.join(self.home, "edge_serving")


