"""The student copy (``course-release OUT``): no solutions, no hidden checks, exercises intact."""

from __future__ import annotations

import json
import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_lib.grading import release, student_release

ROOT = Path(__file__).resolve().parents[1]


def _all_text(folder: Path) -> dict[str, str]:
    """Every file of ``folder`` as text: raw, and for notebooks also their cells' sources (JSON-decoded)."""
    texts = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="replace")
        if path.suffix == ".ipynb":
            text += "\n" + "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
        texts[str(path.relative_to(folder))] = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    return texts


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "student-copy"
    assert student_release.main([str(out)]) == 0
    return out


def test_the_copy_has_no_solutions_and_no_hidden_checks(copy):
    assert (ROOT / "solutions").is_dir() and not (copy / "solutions").exists()
    assert sorted(p.name for p in (copy / "course_lib" / "grading" / "chapters").iterdir()) == ["__init__.py"]
    assert not list(copy.glob("tests/test_grading*")) and not (copy / "tests" / "grading_attacks").exists()
    assert (copy / "course_lib" / "diffusion" / "schedules.py").is_file() and (copy / "_toc.yml").is_file()
    manifest = (copy / "RELEASE.md").read_text(encoding="utf-8")
    assert "`solutions/*`" in manifest and "`course_lib/grading/chapters/*`" in manifest


def test_the_exercises_are_the_repositorys_generated_stubs(copy):
    exercises = sorted((ROOT / "exercises").glob("*.ipynb"))
    assert exercises
    for path in exercises:
        released = copy / "exercises" / path.name
        assert released.read_bytes() == path.read_bytes()
        assert released.read_text(encoding="utf-8") == release.exercise_text(ROOT / "solutions" / path.name)
        assert "raise NotImplementedError" in released.read_text(encoding="utf-8")


def test_no_solution_line_or_model_answer_is_in_the_copy(copy):
    texts = _all_text(copy)
    teaching = "\n".join(t for rel, t in texts.items() if student_release._is_teaching_material(rel))
    secret = [line for p in sorted((ROOT / "solutions").glob("*.ipynb")) for line in student_release.secret_lines(p)]
    assert secret
    # lines that the chapters or the library already show on purpose may stay; no other may
    private = [line for line in secret if line not in teaching]
    assert len(private) >= 5, private  # the check has something to find
    found = [(line, rel) for line in private for rel, text in texts.items() if line in text]
    assert not found, found


def test_course_lib_imports_from_the_copy(copy):
    script = (
        "import course_lib, course_lib.diffusion, course_lib.grading.release as r, course_lib.grading.spec as s\n"
        "print(course_lib.__file__)\n"
        "print(s.known_chapters())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(copy)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=copy, timeout=120)
    assert done.returncode == 0, done.stderr
    location, chapters = done.stdout.splitlines()
    assert Path(location).resolve().is_relative_to(copy.resolve())
    assert chapters == "[]"  # the grader is there, its checks are not


def test_refuses_a_non_empty_folder_unless_forced_and_never_writes_in_the_repository(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "solutions").mkdir(parents=True)
    (out / "solutions" / "stale.ipynb").write_text("{}", encoding="utf-8")
    assert student_release.main([str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "solutions" / "stale.ipynb").exists()
    assert student_release.main([str(out), "--force"]) == 0
    assert not (out / "solutions").exists() and (out / "RELEASE.md").exists()
    for inside in (ROOT / "student-copy", ROOT, ROOT.parent):
        assert student_release.main([str(inside), "--force"]) == 2
    assert not (ROOT / "student-copy").exists()


def test_the_console_script_points_at_the_release_command():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    module, _, function = scripts["course-release"].partition(":")
    assert getattr(importlib.import_module(module), function) is student_release.main


# ------------------------------------------------------------------- a small course outside git


SECRET = "return sorted(values, key=abs)[::-1]  # the secret line"


def _small_course(root: Path) -> Path:
    (root / "course_lib" / "grading" / "chapters").mkdir(parents=True)
    (root / "course_lib" / "__init__.py").write_text("", encoding="utf-8")
    (root / "course_lib" / "grading" / "chapters" / "__init__.py").write_text('"""Specs."""\n', encoding="utf-8")
    (root / "course_lib" / "grading" / "chapters" / "ch01_sorting.py").write_text("QUESTIONS = []\n", encoding="utf-8")
    (root / "book").mkdir()
    (root / "book" / "page.md").write_text("# A page\n", encoding="utf-8")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "copy_of_solution.py").write_text(SECRET + "\n", encoding="utf-8")
    nb = new_notebook(metadata={"course": {"chapter": "01_sorting", "kind": "solutions"}})
    graded = new_code_cell(f"def by_size(values):\n    # BEGIN SOLUTION\n    {SECRET}\n    # END SOLUTION")
    graded.metadata["tags"] = ["graded"]
    answer = new_markdown_cell("<!-- BEGIN ANSWER -->\nThe model answer says something quite specific.\n<!-- END ANSWER -->")
    answer.metadata["tags"] = ["answer"]
    nb.cells = [new_markdown_cell("# Exercises"), graded, answer]
    (root / "solutions").mkdir()
    nbformat.write(nb, root / "solutions" / "01_sorting.ipynb")
    (root / "exercises").mkdir()
    (root / "exercises" / "01_sorting.ipynb").write_text(release.exercise_text(root / "solutions" / "01_sorting.ipynb"), encoding="utf-8")
    return root


def test_a_course_outside_git_is_walked_and_checked(tmp_path, capsys):
    root = _small_course(tmp_path / "course")
    out = tmp_path / "out"
    assert student_release.main([str(out), "--repo", str(root)]) == 0
    released = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert released == [
        "RELEASE.md", "book/page.md", "course_lib/__init__.py", "course_lib/grading/chapters/__init__.py",
        "exercises/01_sorting.ipynb",
    ]
    for text in _all_text(out).values():
        assert "sorted(values, key=abs)" not in text and "quite specific" not in text
    assert "raise NotImplementedError" in (out / "exercises" / "01_sorting.ipynb").read_text(encoding="utf-8")

    # a hand-edited exercise is refused, with the command that regenerates it
    exercise = root / "exercises" / "01_sorting.ipynb"
    data = json.loads(exercise.read_text(encoding="utf-8"))
    data["cells"][1]["source"] = f"def by_size(values):\n    {SECRET}"
    exercise.write_text(json.dumps(data), encoding="utf-8")
    assert student_release.main([str(tmp_path / "out2"), "--repo", str(root)]) == 2
    err = capsys.readouterr().err
    assert "exercises/01_sorting.ipynb is not what solutions/01_sorting.ipynb generates" in err
    assert "python -m course_lib.grading.release solutions/01_sorting.ipynb exercises/01_sorting.ipynb" in err
    assert not (tmp_path / "out2").exists()

    # a solution line pasted into a page is refused
    exercise.write_text(release.exercise_text(root / "solutions" / "01_sorting.ipynb"), encoding="utf-8")
    (root / "book" / "page.md").write_text(f"# A page\n\n    {SECRET}\n", encoding="utf-8")
    assert student_release.main([str(tmp_path / "out3"), "--repo", str(root)]) == 2
    assert "book/page.md contains a line of solutions/01_sorting.ipynb's solutions" in capsys.readouterr().err
    assert not (tmp_path / "out3").exists()
