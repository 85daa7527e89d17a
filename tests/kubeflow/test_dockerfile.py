"""kubeflow/Dockerfile provides what the compiled pipeline's containers need, checked statically: no
image can be built here (the base image cannot be pulled), so its contents are read from the
Dockerfile (tests/kubeflow/image.py) and compared with what the compiled spec names.
tests/kubeflow/test_container_local.py checks the same against what the tasks really imported."""
import json
import re
import sys

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.kubeflow import image
from tests.kubeflow.conftest import modules_named_in, spec_of, strings_in


@pytest.fixture(scope="module")
def built():
    return image.read_image()


def test_the_image_runs_the_python_the_package_is_tested_on(built):
    assert built.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert built.python + ".0" in SpecifierSet(image.setup_arguments()["python_requires"])


def test_the_package_sits_where_the_compiled_spec_expects_it(built):
    """Every folder setup.py maps into graceful.* is copied beside setup.py into the working
    directory the runner names (IMAGE_WORKDIR: the image's schemas/ is read there)."""
    from graceful.kubeflow.runner import IMAGE_WORKDIR

    assert built.workdir == IMAGE_WORKDIR
    setup = image.setup_arguments()
    folders = {"graceful", *setup["package_dir"].values()}
    assert {f"{built.workdir}/{folder}": folder for folder in folders}.items() <= \
        built.copied.items()
    assert built.copied[f"{built.workdir}/setup.py"] == "setup.py"
    assert built.copied[f"{built.workdir}/{built.constraints}"] == built.constraints


def test_the_image_holds_every_local_path_the_spec_names(built, compiled):
    local = [s for s in strings_in(json.loads(compiled.read_text())) if s.startswith("/")]
    assert local, "expected the image's schema path in the spec"
    assert [path for path in local if image.file_at(built, path) is None] == []


def test_every_module_the_commands_import_is_in_the_image(built, compiled):
    """The entrypoints, executor classes and run-time modules the spec names import, with
    everything they import, in an interpreter that sees only the base image's Python, the
    distributions the image's install brings and this package's folders the image copies."""
    modules = modules_named_in(spec_of(compiled))
    assert {"tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
            "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver",
            "graceful.components.flip_evaluator.executor", "graceful.tfma_flips",
            "graceful.models.training"} <= modules
    done = image.import_as_in_image(modules, built)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_image_installs_the_versions_tested_here(built):
    """Every distribution of the image's install is pinned in its constraints file at the version
    this venv runs the tests with: the image resolves nothing newer than what was tested."""
    pins = {}
    for line in (image.ROOT / built.constraints).read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    installed = image.installed_distributions(built)
    ours = canonicalize_name(image.setup_arguments()["name"])
    assert {name: (version, pins.get(name)) for name, version in installed.items()
            if name != ours and pins.get(name) != version} == {}
