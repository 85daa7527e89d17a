"""One namespace, clean layers: graceful installs only `graceful`, imports as `graceful.*` from any
directory, and its layers point down (import-linter's contracts in .importlinter, checked on the
installed wheel, where every subpackage sits under graceful/ as users get it)."""
import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("components", "pipeline", "models", "kubeflow", "schemas")  # graceful.<folder>


def _project_sources():
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    return [REPO / name for name in listed]


def test_no_module_imports_a_folder_as_a_top_level_package():
    wrong = []
    for path in _project_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            wrong += [f"{path.relative_to(REPO)}:{node.lineno}: {name}" for name in names
                      if name and name.split(".")[0] in FOLDERS]
    assert not wrong, "import these as graceful.<folder>:\n" + "\n".join(wrong)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """graceful built as a wheel and installed into a fresh venv whose other packages come from
    the project's venv (no network); returns (venv python, wheel path)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"  # the tracked files only: no build/ leftovers, nothing written in the repo
    for name in subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.splitlines():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(work / "dist"), str(source)], check=True,
                   cwd=work)
    [wheel] = (work / "dist").glob("graceful_tfx-*.whl")
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv",
                    str(work / "venv")], check=True)
    python = work / "venv" / "bin" / "python"
    fresh_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                 "['purelib'])"], capture_output=True, text=True,
                                check=True).stdout.strip()
    # The dependencies (TFX, TF, ...) from the project's venv; its editable graceful is not seen:
    # .pth files of a directory added this way are not executed.
    Path(fresh_site, "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True)
    return python, wheel


@pytest.mark.slow
def test_the_wheel_installs_only_graceful(installed_wheel):
    _, wheel = installed_wheel
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"graceful"}
    assert "graceful/schemas/schema.pbtxt" in zipfile.ZipFile(wheel).namelist()


@pytest.mark.slow
def test_the_installed_wheel_imports_from_any_directory(installed_wheel, tmp_path):
    python, _ = installed_wheel
    code = ("from graceful.components import FlipEvaluator, HumanSignOff, GracefulTrainer, "
            "DataGate\nimport graceful, graceful.pipeline.configs as c\n"
            "print(graceful.__file__); print(c.SCHEMA_DIR / 'schema.pbtxt')")
    out = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    package_file, schema = out.stdout.split()
    assert "site-packages" in package_file and not package_file.startswith(str(REPO))
    assert Path(schema).is_file()


@pytest.mark.slow
def test_layers_point_down(installed_wheel, tmp_path):
    python, _ = installed_wheel
    lint = ("import sys\nfrom importlinter.cli import lint_imports_command\n"
            f"sys.exit(lint_imports_command(['--config', {str(REPO / '.importlinter')!r}, "
            "'--no-cache']))")
    out = subprocess.run([python, "-c", lint], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in out.stdout
