"""A team's project: loaded from graceful_project.py, overridden by flags, scaffolded by `init`
for CSV spans (scikit-learn's bundled wine and breast-cancer tables, written as two spans)."""
import dataclasses
import os
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from graceful import cli, project
from graceful.pipeline.configs import PipelineConfig
from tests import tabular

PROJECT = textwrap.dedent('''
    from graceful.pipeline.configs import (DataContract, GateConfig, PipelineConfig,
                                           SignOffConfig, TrainingParams)
    CONFIG = PipelineConfig(
        home="home", schema_dir="schema", module_file="model.py", demo_data=False,
        data=DataContract(root="data", format="csv", train_pattern="span-{SPAN}/train/*.csv",
                          eval_pattern="span-{SPAN}/eval/*.csv", label_key="target",
                          slice_features=("region",)),
        training=TrainingParams(epochs=7), gate=GateConfig(max_nfr=0.05),
        sign_off=SignOffConfig(auto_approve=True))
''')


def write_project(folder: Path, text: str = PROJECT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / project.PROJECT_FILE).write_text(text)
    return folder / project.PROJECT_FILE


def tree(folder: Path) -> dict:
    """Every file under `folder` with its size and modification time: to prove nothing changed."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# ------------------------------------------------------------------------------------------ loading

def test_relative_paths_are_relative_to_the_project_folder(tmp_path, monkeypatch):
    folder = tmp_path / "team"
    write_project(folder)
    monkeypatch.chdir(tmp_path)  # elsewhere: paths still point into the project
    loaded = project.load(str(folder))
    config = loaded.config
    assert loaded.path == (folder / project.PROJECT_FILE).resolve()
    assert config.home == str(folder.resolve() / "home")
    assert config.data_root == str(folder.resolve() / "data")
    assert config.schema_dir == str(folder.resolve() / "schema")
    assert config.module_file == str(folder.resolve() / "model.py")
    assert config.data.slice_features == ("region",) and config.gate.max_nfr == 0.05


def test_the_project_in_the_current_folder_is_the_default_else_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = project.load(None)
    assert demo.path is None and demo.config.demo_data
    assert demo.describe() == "the built-in Fashion-MNIST demo"
    write_project(tmp_path)
    assert project.load(None).path == (tmp_path / project.PROJECT_FILE).resolve()


def test_a_uri_data_root_is_kept(tmp_path):
    path = write_project(tmp_path, PROJECT.replace('root="data"', 'root="gs://bucket/data"'))
    assert project.load(str(path)).config.data_root == "gs://bucket/data"


@pytest.mark.parametrize("text, message", [
    ("X = 1\n", "defines no CONFIG; set CONFIG = PipelineConfig(...)"),
    ("CONFIG = {'home': 'h'}\n", "CONFIG is of type dict, not a graceful.pipeline.configs"),
    ("import no_such_module\n", "loading it failed: ModuleNotFoundError: No module named"),
    ("CONFIG = (\n", "loading it failed: SyntaxError"),
    ("from graceful.pipeline.configs import DataContract, PipelineConfig\n"
     "CONFIG = PipelineConfig(data=DataContract(lable_key='y'))\n",
     "TypeError: DataContract.__init__() got an unexpected keyword argument 'lable_key'"),
    ("from graceful.pipeline.configs import DataContract, PipelineConfig\n"
     "CONFIG = PipelineConfig(data=DataContract(root='mine'))\n",
     "demo_data=True writes Fashion-MNIST spans into the home, but CONFIG.data is not the demo's"),
    # Its own data in the home's data/ folder, demo_data left at its default: graceful would have
    # written Fashion-MNIST spans among the team's.
    ("from graceful.pipeline.configs import DataContract, PipelineConfig\n"
     "CONFIG = PipelineConfig(data=DataContract(format='csv', label_key='y'))\n",
     "demo_data=True writes Fashion-MNIST spans into the home, but CONFIG.data is not the demo's"),
])
def test_a_broken_project_is_a_one_line_usage_error(tmp_path, capsys, text, message):
    path = write_project(tmp_path, text)
    with pytest.raises(project.ProjectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        project.load(str(path))
    assert cli.main(["history", "--project", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"graceful: error: {path.resolve()}") and err.count("\n") == 1, err
    assert message in err


def test_a_missing_project_names_the_path(tmp_path, capsys):
    for missing in (tmp_path / "nope.py", tmp_path):  # a file, a folder without one
        assert cli.main(["run", "--project", str(missing)]) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert f"--project {missing}: no such project file" in err and err.count("\n") == 1


def test_demo_and_init_never_read_a_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "raise RuntimeError('broken')\n")
    for command in ("demo", "init"):
        assert cli.chosen_project([command]).path is None
    with pytest.raises(project.ProjectError, match="broken"):
        cli.chosen_project(["history"])


# ------------------------------------------------------------------------------ flags over project

def parsed_config(path: Path, *flags: str) -> PipelineConfig:
    chosen = project.load(str(path))
    args = cli.build_parser(chosen).parse_args(["run", "--project", str(path), *flags])
    return cli.config_from_args(args, args.project_config)


def test_the_project_supplies_defaults_and_flags_override_them(tmp_path):
    path = write_project(tmp_path)
    config = parsed_config(path)
    assert (config.training.epochs, config.gate.max_nfr, config.data.slice_features,
            config.sign_off.auto_approve) == (7, 0.05, ("region",), True)
    assert config.home == str(tmp_path.resolve() / "home")
    config = parsed_config(path, "--epochs", "2", "--max-nfr", "0.1", "--slice-by", "device",
                           "--no-auto-approve", "--home", str(tmp_path / "other"))
    assert (config.training.epochs, config.gate.max_nfr, config.data.slice_features,
            config.sign_off.auto_approve) == (2, 0.1, ("device",), False)
    assert config.home == str(tmp_path / "other")
    assert config.data.label_key == "target" and not config.demo_data, "the rest is the project's"


def test_help_shows_the_projects_values(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapping inside the path
    path = write_project(tmp_path)
    with pytest.raises(SystemExit):
        cli.main(["run", "--project", str(path), "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "allowed negative flip rate vs the baseline (default 0.05)" in out
    assert f"in effect: {path.resolve()}" in out and "now ['region']" in out
    assert "--data-dir" not in out, "a project's data is never prepared from Fashion-MNIST"


def test_demo_data_flags_are_refused_for_a_project(tmp_path, capsys):
    path = write_project(tmp_path)
    assert cli.main(["run", "--project", str(path), "--data-dir", str(tmp_path),
                     "--num-spans", "2"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--num-spans, --data-dir prepare the Fashion-MNIST demo's spans" in err
    assert f"reads its own spans from {tmp_path.resolve() / 'data'}" in err


# -------------------------------------------------------------------- a project's data is read only

def test_a_project_without_spans_is_an_error_naming_root_and_patterns(tmp_path, capsys):
    path = write_project(tmp_path)
    (tmp_path / "data").mkdir()
    before = tree(tmp_path)
    assert cli.main(["run", "--project", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert (f"No data spans in {tmp_path.resolve() / 'data'}: a span needs files matching both "
            "'span-{SPAN}/train/*.csv' and 'span-{SPAN}/eval/*.csv'") in err
    assert tree(tmp_path) == before, "nothing written: not the data, not even the home"


def test_a_run_attempt_never_writes_into_the_projects_data(tmp_path, capsys):
    path = write_project(tmp_path)
    tabular.write_spans("wine", str(tmp_path / "data"))
    before = tree(tmp_path / "data")
    config = project.load(str(path)).config
    cli.prepare_data(dataclasses.replace(config, span=5, num_spans=5))
    assert cli.main(["run", "--project", str(path), "--span", "5"]) == cli.EXIT_USAGE
    assert "span 5 is not in" in capsys.readouterr().err
    assert tree(tmp_path / "data") == before


# ----------------------------------------------------------------------------------------- scaffold

@pytest.fixture(scope="module")
def scaffolds(tmp_path_factory):
    """`graceful init` on wine (3 classes, integer labels, named classes) and breast cancer
    (binary, names from the labels): the two projects, their data folders and file trees."""
    made = {}
    for table, names in (("wine", True), ("breast_cancer", False)):
        base = tmp_path_factory.mktemp(table)
        class_names = tabular.write_spans(table, str(base / "data"))
        before = tree(base / "data")
        flags = ["--class-names", ",".join(class_names)] if names else []
        status = cli.main(["init", str(base / "project"), "--csv", str(base / "data"),
                           "--label", tabular.LABEL, "--id", tabular.ID, *flags])
        made[table] = dict(base=base, status=status, class_names=class_names, before=before)
    return made


def built_model(project_dir: Path):
    """The scaffolded model, built as graceful's trainer builds it: the project's contracts, the
    schema's feature spec (without label and id), the module's build_model(context)."""
    from graceful.models import inputs, training, user_module
    from graceful.models.params import TrainingParams

    config = project.load(str(project_dir)).config
    schema = inputs.load_schema(f"{config.schema_dir}/schema.pbtxt")
    setup = training.TrainingSetup(params=TrainingParams(), data=config.data, model=config.model,
                                   feature_spec=inputs.feature_spec(schema),
                                   class_names=inputs.class_names(config.data, schema),
                                   module_file=config.module_file)
    context = setup.context()
    model = user_module.load_build_model(config.module_file)(context)
    user_module.check_model(model, context, config.module_file)
    return model, context


def test_init_writes_a_project_that_loads_with_the_data_contract(scaffolds):
    wine = scaffolds["wine"]
    assert wine["status"] == 0
    folder = wine["base"] / "project"
    assert sorted(p.name for p in folder.iterdir()) == ["graceful_project.py", "model.py",
                                                        "schema"]
    config = project.load(str(folder)).config
    data = config.data
    assert (data.format, data.root, data.train_pattern, data.eval_pattern) == (
        "csv", str(wine["base"] / "data"), "span-{SPAN}/train/*.csv", "span-{SPAN}/eval/*.csv")
    assert (data.label_key, data.id_key, data.class_names) == (
        tabular.LABEL, tabular.ID, wine["class_names"])
    assert not config.demo_data and not config.sign_off.auto_approve
    assert config.home == str(folder / "graceful_home")
    assert config.module_file == str(folder / "model.py")
    assert (config.model.scores, config.model.embedding_layer) == ("logits", "embedding")
    assert cli.spans_on_disk(config) == [1, 2]


def test_init_sets_training_for_a_few_hundred_steps_on_small_tabular_spans(scaffolds):
    """TrainingParams' defaults suit 20k-image spans; on a span of ~60-200 rows they would stop
    after a handful of steps. The scaffold sets the epochs from the first span's row count."""
    for made in scaffolds.values():
        config = project.load(str(made["base"] / "project")).config
        rows = len(pd.read_csv(made["base"] / "data" / "span-1" / "train" / "data.csv"))
        steps = config.training.epochs * -(-rows // config.training.batch_size)
        assert config.training.batch_size == 32 and config.training.learning_rate == 0.01
        assert 200 <= steps <= 400 or config.training.epochs == project.MAX_EPOCHS, (rows, steps)


def test_the_schema_makes_the_label_categorical_with_its_classes(scaffolds):
    from tensorflow_metadata.proto.v0 import schema_pb2

    from graceful.models import inputs

    wine = project.load(str(scaffolds["wine"]["base"] / "project")).config
    schema = inputs.load_schema(f"{wine.schema_dir}/schema.pbtxt")
    label = next(f for f in schema.feature if f.name == tabular.LABEL)
    assert label.type == schema_pb2.INT and label.int_domain == schema_pb2.IntDomain(
        min=0, max=2, is_categorical=True)
    assert {f.name for f in schema.feature} >= {"alcohol", "proline", tabular.ID}


def test_the_model_module_builds_logits_for_every_class(scaffolds):
    model, context = built_model(scaffolds["wine"]["base"] / "project")
    assert model.output_shape == (None, 3)
    assert tabular.ID not in model.input_names and tabular.LABEL not in model.input_names
    assert "alcohol" in model.input_names and model.get_layer("embedding")


def test_a_binary_table_gets_one_logit_and_names_from_its_labels(scaffolds):
    cancer = scaffolds["breast_cancer"]
    assert cancer["status"] == 0
    config = project.load(str(cancer["base"] / "project")).config
    assert config.data.class_names == ("0", "1")
    model, context = built_model(cancer["base"] / "project")
    assert context.binary and model.output_shape == (None, 1)
    text = (cancer["base"] / "project" / project.PROJECT_FILE).read_text()
    assert "binary [N, 1]: the logit of class 1, '1'" in text


def test_init_never_writes_into_the_data_folder(scaffolds):
    for made in scaffolds.values():
        assert tree(made["base"] / "data") == made["before"]


def test_schema_command_rebootstraps_only_when_asked(scaffolds, capsys):
    folder = scaffolds["wine"]["base"] / "project"
    schema = folder / "schema" / "schema.pbtxt"
    schema.write_text(schema.read_text() + "# curated\n")
    assert cli.main(["schema", "--project", str(folder)]) == cli.EXIT_USAGE
    assert "exists (curated?); pass --force" in capsys.readouterr().err
    assert cli.main(["schema", "--project", str(folder), "--force"]) == 0
    assert "# curated" not in schema.read_text() and "is_categorical: true" in schema.read_text()


def test_schema_without_a_project_refuses_to_touch_the_demos(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["schema"]) == cli.EXIT_USAGE
    assert "name the project with --project" in capsys.readouterr().err


def test_init_refuses_to_overwrite_a_project(scaffolds, capsys):
    wine = scaffolds["wine"]
    assert cli.main(["init", str(wine["base"] / "project"), "--csv", str(wine["base"] / "data"),
                     "--label", tabular.LABEL]) == cli.EXIT_USAGE
    assert "already exist(s); `graceful init` does not overwrite" in capsys.readouterr().err


# ------------------------------------------------------------------ init checks the data it is given

@pytest.fixture
def wine_data(tmp_path):
    tabular.write_spans("wine", str(tmp_path / "data"))
    return tmp_path / "data"


def init_error(capsys, *argv) -> str:
    assert cli.main(["init", *argv]) == cli.EXIT_USAGE
    return capsys.readouterr().err


def test_init_names_the_columns_when_the_label_is_missing(tmp_path, wine_data, capsys):
    err = init_error(capsys, str(tmp_path / "p"), "--csv", str(wine_data), "--label", "cultivar")
    assert "--label 'cultivar' is not a column of span 1's training CSV; its columns are: row, " \
           "alcohol" in err
    err = init_error(capsys, str(tmp_path / "p"), "--csv", str(wine_data), "--label", "target",
                     "--id", "wine_id")
    assert "--id 'wine_id' is not a column" in err
    assert not (tmp_path / "p").exists()


def test_init_without_spans_says_which_layouts_it_looked_for(tmp_path, capsys):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "wine.csv").write_text("a,target\n1,0\n")
    err = init_error(capsys, str(tmp_path / "p"), "--csv", str(tmp_path / "flat"), "--label",
                     "target")
    assert f"no CSV spans in {tmp_path / 'flat'}: looked for span-{{SPAN}}/train/*.csv + " in err
    assert "or pass --train-pattern and --eval-pattern" in err


def test_init_finds_date_spans_and_custom_patterns(tmp_path):
    tabular.write_spans("wine", str(tmp_path / "spans"))
    for span, day in ((1, "2024-03-01"), (2, "2024-03-02")):
        os.rename(tmp_path / "spans" / f"span-{span}", tmp_path / "spans" / day)
    data = project._csv_contract(str(tmp_path / "spans"), "target", "", "", "")
    assert data.train_pattern == "{YYYY}-{MM}-{DD}/train/*.csv"
    os.rename(tmp_path / "spans", tmp_path / "by_day")
    custom = project._csv_contract(str(tmp_path / "by_day"), "target", "",
                                   "{YYYY}-{MM}-{DD}/train/data.csv",
                                   "{YYYY}-{MM}-{DD}/eval/data.csv")
    assert custom.eval_pattern == "{YYYY}-{MM}-{DD}/eval/data.csv"


def test_init_checks_the_classes(tmp_path, capsys):
    rows = "x,kind\n" + "".join(f"{i},{'red' if i % 2 else 'white'}\n" for i in range(8))
    for split in ("train", "eval"):
        (tmp_path / "d" / "span-1" / split).mkdir(parents=True)
        (tmp_path / "d" / "span-1" / split / "a.csv").write_text(rows)
    data = project._csv_contract(str(tmp_path / "d"), "kind", "", "", "")
    classes = project._classes(str(tmp_path / "d"), data, 1, ())
    assert (classes.names, classes.integer) == (("red", "white"), False)
    ordered = project._classes(str(tmp_path / "d"), data, 1, ("white", "red", "rose"))
    assert ordered.names == ("white", "red", "rose") and ordered.missing == ("rose",)
    err = init_error(capsys, str(tmp_path / "p"), "--csv", str(tmp_path / "d"), "--label", "kind",
                     "--class-names", "red,rose")
    assert "label 'kind' has values ['white'] that --class-names ['red', 'rose'] does not list" \
        in err
    (tmp_path / "d" / "span-1" / "train" / "a.csv").write_text("x,kind\n1,red\n2,red\n")
    err = init_error(capsys, str(tmp_path / "p"), "--csv", str(tmp_path / "d"), "--label", "kind")
    assert "holds one class ('red') in span 1; a classifier needs two or more" in err
    (tmp_path / "d" / "span-1" / "train" / "a.csv").write_text("x,kind\n1,red\n2,\n")
    err = init_error(capsys, str(tmp_path / "p"), "--csv", str(tmp_path / "d"), "--label", "kind")
    assert "a.csv, line 3: empty label 'kind'" in err
