"""A team's graceful project: one Python config module, read by every `graceful` command.

Why a Python module and not YAML: the configuration *is* a `PipelineConfig` (pipeline/configs.py),
with its data and model contracts (graceful.contract); a module builds it with the same dataclasses
the pipeline uses, so a typo in a field name fails at once, naming the field, and every setting has
its documentation at its definition.

The project file, `graceful_project.py` (`graceful init` writes one):

    from graceful.pipeline.configs import DataContract, ModelContract, PipelineConfig
    CONFIG = PipelineConfig(home="graceful_home", data=DataContract(root="data", format="csv",
                            ...), demo_data=False, module_file="model.py", schema_dir="schema")

Relative paths in CONFIG (home, data.root, schema_dir, module_file, fashion_mnist_dir) are relative
to the project file's folder, so the project works from any directory and can be committed as is.
Commands find it by `--project PATH` (the file, or a folder holding one), else in the current
directory; without one they run the built-in Fashion-MNIST demo. Flags override its values.

`init` scaffolds a project for a folder of CSV spans: the project file, a model module with
`build_model(context)`, and a schema bootstrapped with TensorFlow Data Validation from the first
span. TensorFlow and TFDV are imported only when scaffolding.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import io
import os
import re
import sys
from pathlib import Path

from graceful import spans
from graceful.contract import DataContract
from graceful.pipeline.configs import PipelineConfig, fashion_mnist_data

__all__ = ["CSV_LAYOUTS", "PROJECT_FILE", "MODEL_FILE", "Project", "ProjectError",
           "bootstrap_schema", "find_project_file", "init", "load", "load_file"]

PROJECT_FILE = "graceful_project.py"
MODEL_FILE = "model.py"
SCHEMA_DIR = "schema"
HOME_DIR = "graceful_home"
# Span layouts `init` recognises, tried in order (train pattern, eval pattern).
CSV_LAYOUTS = (("span-{SPAN}/train/*.csv", "span-{SPAN}/eval/*.csv"),
               ("{YYYY}-{MM}-{DD}/train/*.csv", "{YYYY}-{MM}-{DD}/eval/*.csv"),
               ("{YYYY}{MM}{DD}/train/*.csv", "{YYYY}{MM}{DD}/eval/*.csv"),
               ("{SPAN}/train/*.csv", "{SPAN}/eval/*.csv"))


class ProjectError(ValueError):
    """A project that cannot be loaded or scaffolded; the message says which file and what to do."""


@dataclasses.dataclass(frozen=True)
class Project:
    """The configuration the commands use and where it came from (None: the built-in demo)."""

    config: PipelineConfig
    path: Path | None = None

    def describe(self) -> str:
        return str(self.path) if self.path else "the built-in Fashion-MNIST demo"


# ---------------------------------------------------------------------------------------- loading

def find_project_file(path: str | None, cwd: str | os.PathLike = ".") -> Path | None:
    """The project file `--project PATH` names (a file, or a folder holding graceful_project.py);
    without PATH, ./graceful_project.py if present, else None (the demo)."""
    if not path:
        default = Path(cwd) / PROJECT_FILE
        return default if default.is_file() else None
    named = Path(path)
    if named.is_dir():
        named = named / PROJECT_FILE
    if not named.is_file():
        raise ProjectError(f"--project {path}: no such project file (pass a {PROJECT_FILE}, a "
                           "folder holding one, or create one with `graceful init`)")
    return named


def load(path: str | None, cwd: str | os.PathLike = ".") -> Project:
    """The project `--project PATH` names, the one in `cwd`, or the built-in demo."""
    found = find_project_file(path, cwd)
    if found is None:
        return Project(PipelineConfig())
    return Project(load_file(found), found.resolve())


def load_file(path: Path) -> PipelineConfig:
    """Runs the project module and returns its CONFIG with relative paths resolved."""
    path = Path(path).resolve()
    # A name of its own per file: two projects loaded in one process never share a module.
    name = "graceful_project_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses defined in the project module look themselves up here
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise ProjectError(f"{path}: loading it failed: {type(error).__name__}: "
                           f"{_first_line(error)}") from error
    config = getattr(module, "CONFIG", None)
    if config is None:
        raise ProjectError(f"{path} defines no CONFIG; set CONFIG = PipelineConfig(...) there "
                           "(from graceful.pipeline.configs; `graceful init` writes an example)")
    if not isinstance(config, PipelineConfig):
        raise ProjectError(f"{path}: CONFIG is of type {type(config).__name__}, not a "
                           "graceful.pipeline.configs.PipelineConfig")
    if config.demo_data and config.data != fashion_mnist_data():
        raise ProjectError(f"{path}: demo_data=True writes Fashion-MNIST spans into the home, "
                           "but CONFIG.data is not the demo's data contract; a project with its "
                           "own data sets demo_data=False (its data folder is only read)")
    return resolve_paths(config, path.parent)


def resolve_paths(config: PipelineConfig, folder: Path) -> PipelineConfig:
    """Relative local paths of CONFIG, made relative to the project's folder (URIs stay)."""
    def local(value):
        if not value or "://" in value or os.path.isabs(value):
            return value
        return str(folder / value)

    return dataclasses.replace(
        config, home=local(config.home), schema_dir=local(config.schema_dir),
        module_file=local(config.module_file), fashion_mnist_dir=local(config.fashion_mnist_dir),
        data=dataclasses.replace(config.data, root=local(config.data.root)))


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0]


# ------------------------------------------------------------------------------------- scaffolding

@dataclasses.dataclass(frozen=True)
class Classes:
    """The label's classes as `init` found them in the first span."""

    names: tuple
    integer: bool       # integer class ids (else string labels looked up in `names`)
    missing: tuple = ()  # classes the first span's training split does not hold
    examples: int = 0   # rows in the first span's training split


# Training for a scaffolded project: small tabular spans train in a few optimizer steps per epoch,
# so the epochs are set for about TARGET_STEPS steps on the first span (TrainingParams' defaults,
# tuned for 20k-image spans, would stop a 200-row span after 10 steps: a majority-class model).
TABULAR_BATCH_SIZE, TABULAR_LEARNING_RATE, TARGET_STEPS, MAX_EPOCHS = 32, 0.01, 300, 100


def init(directory: str, csv_dir: str, label: str, id_key: str = "",
         class_names: tuple = (), train_pattern: str = "", eval_pattern: str = "",
         log=print) -> Path:
    """Scaffolds a project for the CSV spans in `csv_dir` and returns its project file.

    Checks the data first (spans found, label and id columns present, two or more classes), so
    nothing is written for data graceful could not read; never writes into `csv_dir`.
    """
    project_dir = Path(directory)
    targets = [project_dir / PROJECT_FILE, project_dir / MODEL_FILE,
               project_dir / SCHEMA_DIR / "schema.pbtxt"]
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        raise ProjectError(f"{', '.join(existing)} already exist(s); `graceful init` does not "
                           "overwrite a project (use `graceful schema --force` to redo the schema)")
    root = csv_dir if "://" in csv_dir else str(Path(csv_dir).resolve())
    data = _csv_contract(root, label, id_key, train_pattern, eval_pattern)
    found = spans.find_spans(root, data)
    first = found[0]
    columns = _csv_header(spans.span_files(root, data.train_pattern, first)[0])
    for role, column in (("label", label), ("id", id_key)):
        if column and column not in columns:
            raise ProjectError(f"--{role} {column!r} is not a column of span {first}'s training "
                               f"CSV; its columns are: {', '.join(columns)}")
    classes = _classes(root, data, first, tuple(class_names))
    data = dataclasses.replace(data, class_names=classes.names)
    log(f"[init] {len(found)} span(s) in {root} ({data.train_pattern}, {data.eval_pattern}); "
        f"label {label!r}: {len(classes.names)} classes {list(classes.names)}")
    project_dir.mkdir(parents=True, exist_ok=True)
    config = PipelineConfig(home=str(project_dir / HOME_DIR), data=data, demo_data=False,
                            schema_dir=str(project_dir / SCHEMA_DIR))
    statistics = bootstrap_schema(config, log=log)
    (project_dir / MODEL_FILE).write_text(_model_module(data, statistics, first))
    (project_dir / PROJECT_FILE).write_text(_project_module(project_dir, data, classes))
    _print_next_steps(project_dir, classes, log)
    return project_dir / PROJECT_FILE


def _csv_contract(root: str, label: str, id_key: str, train_pattern: str,
                  eval_pattern: str) -> DataContract:
    """The CSV data contract for the layout found under `root` (or the patterns given)."""
    if bool(train_pattern) != bool(eval_pattern):
        raise ProjectError("pass both --train-pattern and --eval-pattern, or neither")
    layouts = [(train_pattern, eval_pattern)] if train_pattern else CSV_LAYOUTS
    for train, evaluation in layouts:
        data = DataContract(root=root, format="csv", train_pattern=train, eval_pattern=evaluation,
                            label_key=label, id_key=id_key)
        try:
            if spans.find_spans(root, data):
                return data
        except spans.SpanError:
            continue  # e.g. folders 20241399 are no date spans; try the next layout
    tried = "; ".join(f"{train} + {evaluation}" for train, evaluation in layouts)
    raise ProjectError(f"no CSV spans in {root}: looked for {tried}. Put each span's files in "
                       "span-N/train/ and span-N/eval/ (N = 1, 2, ...), or pass --train-pattern "
                       "and --eval-pattern (with {SPAN} or {YYYY}{MM}{DD})")


def _csv_header(path: str) -> list[str]:
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as handle:
        header = next(csv.reader(io.StringIO(handle.readline())), [])
    if not header:
        raise ProjectError(f"{path} has no header line; CsvExampleGen names features after it")
    return header


def _label_values(root: str, data: DataContract, span: int) -> list[str]:
    import tensorflow as tf

    values = []
    for path in spans.span_files(root, data.train_pattern, span):
        with tf.io.gfile.GFile(path) as handle:
            for row, record in enumerate(csv.DictReader(handle), start=2):
                value = (record.get(data.label_key) or "").strip()
                if not value:
                    raise ProjectError(f"{path}, line {row}: empty label {data.label_key!r}; "
                                       "every example needs one")
                values.append(value)
    return values


def _classes(root: str, data: DataContract, span: int, names: tuple) -> Classes:
    """Classes from the first span's labels: integer ids 0..K-1, or strings (sorted, unless
    --class-names gives their order)."""
    rows = _label_values(root, data, span)
    values = set(rows)
    integer = all(re.fullmatch(r"-?\d+", value) for value in values)
    if integer:
        ids = sorted(int(value) for value in values)
        if ids[0] < 0:
            raise ProjectError(f"label {data.label_key!r} has class id {ids[0]}; integer labels "
                               "are class ids 0..K-1")
        count = max(ids[-1] + 1, len(names))
        if names and len(names) < count:
            raise ProjectError(f"--class-names names {len(names)} classes, but label "
                               f"{data.label_key!r} holds class id {ids[-1]}")
        names = names or tuple(str(index) for index in range(count))
        missing = tuple(names[index] for index in range(count) if index not in ids)
    else:
        unknown = sorted(values - set(names)) if names else []
        if unknown:
            raise ProjectError(f"label {data.label_key!r} has values {unknown} that --class-names "
                               f"{list(names)} does not list")
        names = names or tuple(sorted(values))
        missing = tuple(name for name in names if name not in values)
    if len(names) < 2:
        raise ProjectError(f"label {data.label_key!r} holds one class ({names[0]!r}) in span "
                           f"{span}; a classifier needs two or more (--class-names lists them)")
    return Classes(tuple(names), integer, missing, len(rows))


def bootstrap_schema(config: PipelineConfig, force: bool = True, log=print):
    """Infers `schema_dir/schema.pbtxt` from the first span's training data with TFDV, makes the
    label categorical with the class domain, and returns the statistics it was inferred from.

    A bootstrap, not a finished schema: what one span shows (a string feature's values, which
    features are always present) is what later spans are held to, so the user curates it.
    """
    import tensorflow_data_validation as tfdv

    data, root = config.data, config.data_root
    found = spans.find_spans(root, data)
    if not found:
        raise ProjectError(no_spans_message(config))
    target = Path(config.schema_dir) / "schema.pbtxt"
    if target.exists() and not force:
        raise ProjectError(f"{target} exists (curated?); pass --force to replace it with a "
                           "schema inferred from the first span")
    location = spans.span_glob(root, data.train_pattern, found[0])
    log(f"[schema] statistics of span {found[0]} ({location}) with TFDV ...")
    if data.format == "csv":
        statistics = tfdv.generate_statistics_from_csv(data_location=location)
    else:
        statistics = tfdv.generate_statistics_from_tfrecord(data_location=location)
    schema = tfdv.infer_schema(statistics)
    _categorical_label(schema, data)
    target.parent.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(schema, str(target))
    log(f"[schema] wrote {target}: {len(schema.feature)} features. Curate it before relying on "
        "it: value ranges (int_domain/float_domain), string domains (values span 1 lacks are "
        "anomalies later), presence (min_fraction) and shapes; ExampleValidator holds every "
        "new span to it.")
    return statistics


def _categorical_label(schema, data: DataContract) -> None:
    """The label as a categorical feature whose domain is exactly the classes (DataGate checks
    every class occurs; ExampleValidator flags any other value)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    feature = next((f for f in schema.feature if f.name == data.label_key), None)
    if feature is None:
        raise ProjectError(f"label {data.label_key!r} is not a feature of the first span")
    if not data.class_names:
        return
    if feature.type == schema_pb2.INT:
        feature.int_domain.CopyFrom(schema_pb2.IntDomain(
            min=0, max=len(data.class_names) - 1, is_categorical=True))
        return
    global_name = feature.domain if feature.HasField("domain") else ""
    feature.string_domain.CopyFrom(schema_pb2.StringDomain(
        name=data.label_key, value=list(data.class_names)))
    if global_name and not any(f.domain == global_name for f in schema.feature):
        kept = [d for d in schema.string_domain if d.name != global_name]
        del schema.string_domain[:]
        schema.string_domain.extend(kept)


def no_spans_message(config: PipelineConfig) -> str:
    data = config.data
    return (f"No data spans in {config.data_root}: a span needs files matching both "
            f"{data.train_pattern!r} and {data.eval_pattern!r} there (the data contract's "
            "train_pattern and eval_pattern)")


def _numeric_scaling(statistics, data: DataContract) -> dict:
    """(mean, standard deviation) of each numeric feature but the label and id."""
    scaling = {}
    for feature in statistics.datasets[0].features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if feature.HasField("num_stats") and name not in (data.label_key, data.id_key):
            scaling[name] = (round(feature.num_stats.mean, 6),
                             round(feature.num_stats.std_dev, 6) or 1.0)
    return dict(sorted(scaling.items()))


def _model_module(data: DataContract, statistics, span: int) -> str:
    scaling = "".join(f"    {name!r}: ({mean!r}, {std!r}),\n"
                      for name, (mean, std) in _numeric_scaling(statistics, data).items())
    return MODEL_TEMPLATE.format(span=span, scaling=scaling)


def _project_module(project_dir: Path, data: DataContract, classes: Classes) -> str:
    root = data.root
    if "://" not in root and Path(root).is_relative_to(project_dir.resolve()):
        root = os.path.relpath(root, project_dir.resolve())  # the project folder moves as one
    name = re.sub(r"[^a-z0-9-]+", "-", project_dir.resolve().name.lower()).strip("-") or "graceful"
    binary = len(classes.names) == 2
    return PROJECT_TEMPLATE.format(
        name=name, root=root, train_pattern=data.train_pattern, eval_pattern=data.eval_pattern,
        label=data.label_key, id_key=data.id_key, class_names=tuple(classes.names),
        model_file=MODEL_FILE, schema_dir=SCHEMA_DIR, home=HOME_DIR,
        **_training(classes.examples),
        scores=("binary [N, 1]: the logit of class 1, "
                f"{classes.names[1]!r}" if binary else f"[N, {len(classes.names)}] logits"))


def _training(examples: int) -> dict:
    """Template values: epochs for about TARGET_STEPS steps at TABULAR_BATCH_SIZE (5..MAX_EPOCHS)."""
    steps_per_epoch = max(1, -(-examples // TABULAR_BATCH_SIZE))
    epochs = min(MAX_EPOCHS, max(5, -(-TARGET_STEPS // steps_per_epoch)))
    return {"epochs": epochs, "batch_size": TABULAR_BATCH_SIZE,
            "learning_rate": TABULAR_LEARNING_RATE, "target_steps": TARGET_STEPS,
            "examples": examples}


def _print_next_steps(project_dir: Path, classes: Classes, log) -> None:
    if classes.missing:
        log(f"[init] warning: the first span holds no example of class(es) "
            f"{list(classes.missing)}; DataGate blocks spans that miss a class "
            "(data_checks.require_all_classes in the project file)")
    log(f"[init] wrote {project_dir / PROJECT_FILE}, {project_dir / MODEL_FILE} and "
        f"{project_dir / SCHEMA_DIR / 'schema.pbtxt'}. Next:\n"
        f"  1. curate {project_dir / SCHEMA_DIR / 'schema.pbtxt'} (see above)\n"
        f"  2. check class_names, the model contract and the gates in "
        f"{project_dir / PROJECT_FILE}\n"
        f"  3. adapt build_model(context) in {project_dir / MODEL_FILE}\n"
        f"  4. graceful run --project {project_dir}   (then: graceful history --project "
        f"{project_dir})")


PROJECT_TEMPLATE = '''"""graceful project {name!r}: read by every `graceful` command run in this folder, or with
`--project {name}`. Written by `graceful init`; edit it.

Relative paths are relative to this file's folder. A flag overrides a value for one command, e.g.
`graceful run --max-nfr 0.02`; `graceful run --help` shows the values in effect.
"""
from graceful.pipeline.configs import (DataChecks, DataContract, GateConfig, ModelContract,
                                       PipelineConfig, SignOffConfig, TrainingParams)

CONFIG = PipelineConfig(
    pipeline_name={name!r},
    # Artifacts, ML Metadata and the served model (serving/).
    home={home!r},
    # Your data, one span per folder. graceful only reads it, never writes into it.
    data=DataContract(
        root={root!r},
        format="csv",
        train_pattern={train_pattern!r},
        eval_pattern={eval_pattern!r},
        label_key={label!r},
        # "" = ids derived from each example's bytes.
        id_key={id_key!r},
        # The label's classes, in class-id order.
        class_names={class_names!r},
        # Features to gate the NFR per value of (gate.max_slice_nfr), e.g. ("region",).
        slice_features=(),
    ),
    demo_data=False,
    # schema.pbtxt, bootstrapped from the first span: curate it (`graceful schema --force` redoes it).
    schema_dir={schema_dir!r},
    # Your model: build_model(context) in {model_file}; it returns {scores}.
    module_file={model_file!r},
    model=ModelContract(scores="logits", threshold=0.5, embedding_layer="embedding"),
    # Set for about {target_steps} optimizer steps on the first span ({examples} rows); more data,
    # fewer epochs. --epochs etc. override these for one run.
    training=TrainingParams(epochs={epochs}, batch_size={batch_size}, learning_rate={learning_rate}),
    # Flip gate: max_nfr, max_accuracy_drop, max_class_nfr, ... (graceful.gate.GateConfig).
    gate=GateConfig(),
    # A person approves each push (Slack or `graceful approve`).
    sign_off=SignOffConfig(auto_approve=False),
    # DataGate: fewest examples per split, every class present.
    data_checks=DataChecks(),
)
'''

MODEL_TEMPLATE = '''"""The model graceful trains for this project (`module_file` in graceful_project.py).

graceful's trainer calls `build_model(context)` and trains the returned Keras model against the model
being served (focal distillation and weight averaging by default; the BCT losses align the layer the
model contract names as `embedding_layer`). `context` is a graceful.models.user_module.ModelContext: `feature_spec`
(feature name -> tf.io parsing spec from the schema, without the label and id), `keras_inputs()`,
`num_classes`, `binary`, `class_names`, the `model` contract. The model takes a dict of features
and returns what the model contract declares (scores="logits"): logits [N, K] for K classes, or
[N, 1] for two (the logit of class 1).

Written by `graceful init` for numeric tabular features: each is standardised with span {span}'s
mean and standard deviation, then a small MLP. String features are not read; add them (e.g. a
StringLookup + Embedding) if they matter. Edit freely: graceful needs only the contract above.
"""
import tf_keras as keras

# (mean, standard deviation) of each numeric feature in span {span}, from TFDV's statistics.
FEATURE_SCALING = {{
{scaling}}}
HIDDEN_UNITS = 32
EMBEDDING_LAYER = "embedding"  # the model contract's embedding_layer (BCT)


def _numeric(spec) -> bool:
    return spec.dtype.is_integer or spec.dtype.is_floating


def build_model(context) -> keras.Model:
    """Numeric features -> standardised -> Dense(HIDDEN_UNITS) embedding -> class logits."""
    names = sorted(name for name, spec in context.feature_spec.items() if _numeric(spec))
    if not names:
        raise ValueError("build_model: the schema has no numeric feature besides the label and "
                         "id; this model reads numeric columns only")
    inputs = context.keras_inputs(names)
    columns = []
    for name in names:
        mean, std = FEATURE_SCALING.get(name, (0.0, 1.0))
        columns.append(keras.layers.Normalization(mean=mean, variance=std * std,
                                                  name=f"standardise_{{name}}")(inputs[name]))
    features = keras.layers.Concatenate()(columns) if len(columns) > 1 else columns[0]
    embedding = keras.layers.Dense(HIDDEN_UNITS, activation="relu", name=EMBEDDING_LAYER)(features)
    outputs = 1 if context.binary else context.num_classes
    logits = keras.layers.Dense(outputs, name="logits")(embedding)
    return keras.Model(inputs=inputs, outputs=logits)
'''
