"""Packaging: every Python package folder ships, and the plugins are where the harnesses look."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {name: ROOT / path for name, path in config["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"


def test_lmms_eval_entry_point_names_merged_vlm():
    (point,) = [e for e in entry_points(group="lmms_eval.models") if e.name == "merged_vlm"]
    manifest = point.load()
    assert manifest.chat_class_path.endswith("MergedVLMChat") and manifest.simple_class_path.endswith("MergedVLMSimple")


def test_lm_eval_finds_merged_lm_and_its_own_models():
    from lm_eval.api.registry import get_model

    assert get_model("merged_lm").__name__ == "MergedLM"
    assert get_model("hf").__name__ == "HFLM", "registering ours must not hide lm-eval's built-in models"


def _lock_pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, version = line.partition("==")
            exact = sep and version.strip() and not set(version) & set("<>=!~*, ;")
            assert exact, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_lock_pins_every_requirement_within_its_range_and_hold():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    holds = [line for line in (ROOT / "requirements-holds.in").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    pins = _lock_pins()
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"], *holds]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{text!r} is not in requirements.lock; regenerate it with .ci/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]}: {text!r}"


def test_lock_holds_filelock_below_the_release_without_the_module_lmms_eval_imports():
    from packaging.version import Version

    assert Version(_lock_pins()["filelock"]) < Version("4.3")


def test_readme_quick_start_install_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    installs = [part.strip() for line in quick_start.splitlines() for part in line.split("&&")
                if part.strip().startswith("pip install")]
    assert installs == ["pip install -c requirements.lock -e .",
                        "pip install -c requirements.lock -e '.[test]'"]
    for command in installs:
        assert command in ci, f"README's `{command}` is not a line of .ci/run"
    assert "python -m pytest" in ci


def test_lock_check_reports_extra_missing_and_moved_distributions():
    import importlib.util

    from packaging.version import Version

    spec = importlib.util.spec_from_file_location("check_lock", ROOT / ".ci" / "check_lock.py")
    check_lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_lock)
    locked = check_lock.pins(["# header", "filelock==4.2.12", "    # via datasets", "torch==2.14.1",
                              "six==1.17.0"])
    have = {"filelock": Version("4.3.1"), "torch": Version("2.14.1"), "rich": Version("15.0.0")}
    assert check_lock.differences(have, locked, subset=False) == [
        "not in the lock: rich==15.0.0", "filelock: installed 4.3.1, locked 4.2.12", "missing: six==1.17.0"]
    assert check_lock.differences(have, locked, subset=True) == [
        "not in the lock: rich==15.0.0", "filelock: installed 4.3.1, locked 4.2.12"]
    assert check_lock.differences(locked, locked, subset=False) == []
