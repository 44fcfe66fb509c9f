"""Notebook and book hygiene: what every committed notebook must look like.

- no stored outputs or execution counts (the book build and the tests execute them);
- every chapter ``NN_slug`` has its three notebooks: notebooks/, exercises/, solutions/;
- ``metadata.course`` names the chapter (the file's stem) and the kind (its folder);
- the first code cell is the set-up cell made from ``_config.yml``'s repository URL
  (``python -m course_lib.authoring sync`` rewrites it);
- the chapters and exercises are in ``_toc.yml``; the solutions are kept out of the book.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from course_lib import authoring

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"notebooks": "chapter", "exercises": "exercises", "solutions": "solutions"}
CHAPTER_NAME = re.compile(r"^\d\d_[a-z0-9]+(?:_[a-z0-9]+)*$")
NOTEBOOKS = [p for folder in KINDS for p in sorted((ROOT / folder).glob("*.ipynb"))]
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8")) or {}


def _toc_files(node) -> set[str]:
    """Every ``file:`` (and ``root:``) in _toc.yml, without its extension."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root") and isinstance(value, str):
                found.add(str(Path(value).with_suffix("")) if Path(value).suffix in (".md", ".ipynb") else value)
            else:
                found |= _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found |= _toc_files(item)
    return found


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks in notebooks/, exercises/ or solutions/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_outputs_or_execution_counts(path):
    nb = _load(path)
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_course_metadata_names_chapter_and_kind(path):
    course = _load(path).get("metadata", {}).get("course", {})
    assert course.get("chapter") == path.stem, f"{path}: metadata.course.chapter should be {path.stem!r}"
    assert course.get("kind") == KINDS[path.parent.name], (
        f"{path}: metadata.course.kind should be {KINDS[path.parent.name]!r}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_python3_kernel(path):
    kernelspec = _load(path).get("metadata", {}).get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"{path}: kernelspec name should be 'python3'"


def test_every_chapter_has_its_three_notebooks():
    stems = {folder: {p.stem for p in (ROOT / folder).glob("*.ipynb")} for folder in KINDS}
    chapters = set().union(*stems.values())
    assert chapters
    for chapter in sorted(chapters):
        assert CHAPTER_NAME.match(chapter), f"{chapter}: chapter notebooks are named NN_slug (lower case)"
        missing = [folder for folder in KINDS if chapter not in stems[folder]]
        assert not missing, f"chapter {chapter} has no notebook in {', '.join(missing)}"


def test_setup_cell_template_mentions_the_configured_repository():
    url = authoring.repository_url(ROOT)
    source = authoring.setup_cell_source(url)
    assert f"git+{url.rstrip('/')}" in source
    assert source.splitlines()[0].startswith("#")
    assert "except ImportError:" in source and "runtime.describe()" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_is_the_setup_cell(path):
    expected = authoring.setup_cell_source(authoring.repository_url(ROOT))
    first = authoring.first_code_cell(_load(path))
    assert first is not None, f"{path}: no code cell"
    source = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
    assert source == expected, (
        f"{path}: the first code cell is not the set-up cell made from _config.yml; "
        "run `python -m course_lib.authoring sync`"
    )


def test_pyproject_repository_url_matches_the_book():
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"].get("urls", {})
    if "Repository" in urls:
        assert urls["Repository"].rstrip("/") == authoring.repository_url(ROOT).rstrip("/"), (
            "pyproject.toml's [project.urls] Repository and _config.yml's repository.url differ"
        )


def test_chapters_and_exercises_are_in_the_toc():
    listed = _toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")))
    for folder in ("notebooks", "exercises"):
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            assert f"{folder}/{path.stem}" in listed, f"{folder}/{path.name} is not in _toc.yml"
    leaked = sorted(entry for entry in listed if entry.startswith("solutions/"))
    assert not leaked, f"solutions are not part of the book, but _toc.yml lists {leaked}"


def test_solutions_are_excluded_from_the_book():
    patterns = _config().get("exclude_patterns") or []
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        rel = f"solutions/{path.name}"
        assert any(fnmatch.fnmatch(rel, p) or p.rstrip("/") == "solutions" for p in patterns), (
            f"{rel} is not excluded from the book: add 'solutions/*' to exclude_patterns in _config.yml"
        )


def test_sync_rewrites_an_old_setup_cell_and_inserts_a_missing_one():
    source = authoring.setup_cell_source("https://example.org/course")
    old = {"cell_type": "code", "execution_count": 3, "id": "a", "metadata": {}, "outputs": [{"output_type": "stream"}],
           "source": ["from course_lib import runtime\n", "runtime.describe()"]}
    body = {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [], "source": ["x = 1"]}
    nb = {"cells": [{"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["# Title"]}, old, body],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    assert authoring.sync_notebook(nb, source)
    assert [c["id"] for c in nb["cells"]] == ["m", "a", "b"]
    assert "".join(nb["cells"][1]["source"]) == source and nb["cells"][1]["outputs"] == []
    assert not authoring.sync_notebook(nb, source)  # idempotent

    fresh = {"cells": [dict(body)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    assert authoring.sync_notebook(fresh, source)
    assert [c["id"] for c in fresh["cells"]] == ["course-setup", "b"]
    assert "".join(fresh["cells"][1]["source"]) == "x = 1"  # the chapter's own cell is never overwritten
