"""Packaging: pyproject.toml and environment.yml agree, and course_lib never needs torchvision.

torchvision and torchaudio from the package registry are CUDA builds that do not import
against the CPU torch used here, so ``import course_lib`` and every submodule must work
without them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
# Extras that environment.yml leaves out on purpose.
NOT_IN_CONDA_ENV = {"vision"}  # torchvision: see the module docstring
# conda-forge names that differ from the PyPI names.
CONDA_TO_PYPI = {"pytorch": "torch", "pysoundfile": "soundfile", "py-opencv": "opencv-python"}
# Packages of the environment itself rather than of the project.
CONDA_ONLY = {"python", "pip"}
FORBIDDEN_CORE = {"torchvision", "torchaudio"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirements(entries) -> dict[str, SpecifierSet]:
    out = {}
    for entry in entries:
        req = Requirement(entry)
        out[normalise(req.name)] = req.specifier
    return out


def project_packages() -> dict[str, SpecifierSet]:
    """Core dependencies and every extra that the conda environment mirrors, by normalised name."""
    project = _pyproject()["project"]
    merged = _requirements(project["dependencies"])
    for extra, entries in project.get("optional-dependencies", {}).items():
        if extra in NOT_IN_CONDA_ENV:
            continue
        for name, spec in _requirements(entries).items():
            merged.setdefault(name, spec)
            assert str(merged[name]) == str(spec) or not str(spec), (
                f"pyproject.toml pins {name} differently in two places: {merged[name]} vs {spec}"
            )
    return merged


def environment_packages() -> tuple[dict[str, SpecifierSet], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    packages: dict[str, SpecifierSet] = {}
    pip_options: list[str] = []
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            for item in entry.get("pip", []):
                if item.startswith("-"):
                    pip_options.append(item)
                    continue
                req = Requirement(item)
                packages[normalise(req.name)] = req.specifier
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", str(entry).strip())
        assert match, f"environment.yml: cannot read {entry!r}"
        name, spec = normalise(match.group(1)), match.group(2).replace(" ", "")
        if name in CONDA_ONLY:
            continue
        if spec and spec[0].isdigit():  # conda's "name=1.2" / "name 1.2" forms
            spec = f"=={spec.lstrip('=')}"
        elif spec.startswith("=") and not spec.startswith("=="):
            spec = f"={spec}"
        packages[CONDA_TO_PYPI.get(name, name)] = SpecifierSet(spec)
    return packages, pip_options


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = project_packages()
    env, _ = environment_packages()
    missing = sorted(set(project) - set(env))
    extra = sorted(set(env) - set(project))
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"
    assert not extra, f"in environment.yml but not in pyproject.toml: {extra}"


def test_environment_yml_uses_the_same_version_bounds():
    project = project_packages()
    env, _ = environment_packages()
    differ = {
        name: (str(project[name]), str(env[name]))
        for name in sorted(set(project) & set(env))
        if project[name] != env[name]
    }
    assert not differ, f"version bounds differ (pyproject, environment.yml): {differ}"


def test_environment_yml_installs_this_repository():
    _, pip_options = environment_packages()
    assert "-e ." in pip_options, "environment.yml should install course_lib itself with `pip: [-e .]`"


def test_core_dependencies_do_not_need_torchvision_or_torchaudio():
    core = {normalise(Requirement(r).name) for r in _pyproject()["project"]["dependencies"]}
    assert not core & FORBIDDEN_CORE, f"core dependencies must not include {sorted(core & FORBIDDEN_CORE)}"


def _module_names() -> list[str]:
    names = []
    for path in sorted((ROOT / "course_lib").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue  # running it is not importing it
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_every_module_imports_without_torchvision_or_torchaudio():
    names = _module_names()
    assert "course_lib" in names and len(names) > 1
    script = textwrap.dedent(
        """
        import importlib, sys, traceback

        BLOCKED = ("torchvision", "torchaudio")

        class Absent:
            # a meta-path finder that makes torchvision and torchaudio look uninstalled
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Absent())
        failed = []
        for name in sys.argv[1:]:
            try:
                importlib.import_module(name)
            except BaseException:
                failed.append(name + ":\\n" + traceback.format_exc())
        leaked = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        if leaked:
            failed.append(f"torchvision/torchaudio were imported anyway: {leaked}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *names], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"modules that fail to import without torchvision:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("name", sorted(_pyproject()["project"].get("scripts", {})))
def test_console_scripts_point_at_callables(name):
    target = _pyproject()["project"]["scripts"][name]
    module, _, attr = target.partition(":")
    code = f"import {module} as m; assert callable(m.{attr})"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{name} = {target!r} does not resolve:\n{result.stderr}"
