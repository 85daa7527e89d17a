"""graceful.components exports every component the repository has, by name, as the package
docstring promises: a team's own TFX pipeline imports them from there."""
import importlib
from pathlib import Path

import graceful.components as components

FOLDERS = Path(__file__).resolve().parents[2] / "components"


def test_every_component_folder_is_exported_from_graceful_components():
    with_component = {path.parent.name for path in FOLDERS.glob("*/component.py")}
    exported = {module.split(".")[0] for module in components._PUBLIC.values()}
    assert with_component - exported == set(), "add them to components/__init__.py's _PUBLIC"


def test_sign_off_release_is_the_release_pipelines_component():
    from graceful.components import SignOffRelease

    module = importlib.import_module("graceful.components.sign_off_release.component")
    assert SignOffRelease is module.SignOffRelease and "SignOffRelease" in components.__all__
