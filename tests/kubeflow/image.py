"""What the image built from kubeflow/Dockerfile contains, read from the Dockerfile itself.

Why: no image can be built here (no registry to pull the base image from), so the image's contents
are derived from its instructions instead: the base image's Python, the working directory, the
folders it copies, and the distributions its `pip install` brings — this package (setup.py, read as
the image's copy of it is) with the extras named, plus everything those require, as this venv (set
up from the same constraints.txt) has them installed. Tests then ask whether what the compiled
pipeline's commands import is among them.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import posixpath
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "kubeflow" / "Dockerfile"


@dataclasses.dataclass
class Image:
    python: str                 # "3.10", from the FROM line's python:<version> tag
    workdir: str                # the last WORKDIR
    copied: dict[str, str]      # absolute path in the image -> source path in the repository
    install_extras: list[str]   # the extras of the `pip install ... -e ".[extras]"` of this package
    constraints: str | None     # the -c file of that install, a repository path


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                           if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in joined.splitlines() if line.strip()]


def read_image(path: Path = DOCKERFILE) -> Image:
    python, workdir, copied, extras, constraints = "", "/", {}, None, None
    for instruction, arguments in instructions(path.read_text()):
        if instruction == "FROM":
            match = re.match(r"python:(\d+\.\d+)", arguments)
            assert match, f"{path}: FROM {arguments} is not a python:<X.Y> image"
            python = match.group(1)
        elif instruction == "WORKDIR":
            workdir = posixpath.join(workdir, arguments)
        elif instruction == "COPY":
            *sources, target = shlex.split(arguments)
            base = posixpath.normpath(posixpath.join(workdir, target))
            for source in sources:
                if (ROOT / source).is_dir() or (len(sources) == 1 and not target.endswith("/")):
                    copied[base] = source  # a folder's contents go into the target
                else:
                    copied[f"{base}/{Path(source).name}"] = source
        elif instruction == "RUN" and re.search(r"pip install .*-e", arguments):
            words = shlex.split(arguments)
            target = words[words.index("-e") + 1]
            match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", target)
            assert match, f"{path}: the editable install of {target!r} is not this package (.)"
            extras = (match.group(1) or "").split(",") if match.group(1) else []
            constraints = words[words.index("-c") + 1] if "-c" in words else None
    assert extras is not None, f"{path}: no `pip install -e .` of this package"
    return Image(python, workdir, copied, extras, constraints)


def file_at(image: Image, path: str) -> Path | None:
    """The repository file the image holds at `path` (absolute, in the image), if a COPY puts one
    there."""
    for inside, source in sorted(image.copied.items(), key=lambda item: -len(item[0])):
        if path == inside or path.startswith(inside + "/"):
            candidate = ROOT / source / path[len(inside):].lstrip("/")
            return candidate if candidate.exists() else None
    return None


def setup_arguments(path: Path = ROOT / "setup.py") -> dict:
    """The keyword arguments setup.py passes to setup(), evaluated without running setup()."""
    tree = ast.parse(path.read_text())
    call = next(node.value for node in tree.body if isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "setup")
    module = ast.Module([node for node in tree.body
                         if not (isinstance(node, ast.Expr) and node.value is call)], type_ignores=[])
    namespace: dict = {}
    exec(compile(module, str(path), "exec"), namespace)
    return {keyword.arg: eval(compile(ast.Expression(keyword.value), str(path), "eval"), namespace)
            for keyword in call.keywords}


def installed_distributions(image: Image) -> dict[str, str]:
    """Canonical name -> version of every distribution the image's install brings: this package's
    requirements with the image's extras, then their requirements, as installed in this venv."""
    setup = setup_arguments()
    wanted = [Requirement(text) for text in setup["install_requires"]]
    for extra in image.install_extras:
        wanted += [Requirement(text) for text in setup["extras_require"][extra]]
    found: dict[str, str] = {canonicalize_name(setup["name"]): setup["version"]}
    seen_extras: dict[str, set] = {}
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        new_extras = set(requirement.extras) - seen_extras.get(name, set())
        if name in found and not new_extras:
            continue
        seen_extras.setdefault(name, set()).update(requirement.extras)
        distribution = metadata.distribution(requirement.name)
        found[name] = distribution.version
        for text in distribution.requires or []:
            child = Requirement(text)
            active = [{"extra": extra} for extra in seen_extras[name]] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in active):
                wanted.append(child)
    return found


# Runs in a fresh interpreter: a finder in front of the others refuses what the image would not have
# (ModuleNotFoundError, as there), so optional imports take their fallback as they would there.
IMPORT_AS_IN_IMAGE = """
import importlib, importlib.abc, importlib.machinery, json, os, sys
from importlib import metadata
refused_distributions, root, copied = json.loads(sys.argv[1])
refused = {os.path.realpath(d.locate_file(f)) for d in metadata.distributions()
           if d.metadata["Name"] in refused_distributions for f in d.files or []}

class ImageView(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        origin = os.path.realpath(spec.origin) if spec and spec.has_location else None
        if origin is None:
            return None
        inside = origin.startswith(root + os.sep) and ".venv" not in origin.split(os.sep)
        if origin in refused or inside and not any(
                origin.startswith(os.path.join(root, source)) for source in copied):
            raise ModuleNotFoundError(f"No module named {name!r} in the image ({origin})",
                                      name=name)
        return None

sys.meta_path.insert(0, ImageView())
for module in sys.argv[2:]:
    importlib.import_module(module)
"""


def import_as_in_image(modules, image: Image, python: str = sys.executable):
    """Imports `modules` in a fresh interpreter that sees only what `image` would hold: this
    venv, minus the distributions its install does not bring and this repository's files it does
    not copy. Returns the finished process (returncode 0: everything imported)."""
    installed = installed_distributions(image)
    refused = [distribution.metadata["Name"] for distribution in metadata.distributions()
               if canonicalize_name(distribution.metadata["Name"]) not in installed]
    view = json.dumps([refused, str(ROOT), sorted(image.copied.values())])
    return subprocess.run([python, "-c", IMPORT_AS_IN_IMAGE, view, *sorted(modules)],
                          capture_output=True, text=True)
