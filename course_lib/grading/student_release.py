"""The student copy of the course: the repository without the solutions and the hidden checks.

    course-release OUT_DIR [--force] [--repo ROOT]
    python -m course_lib.grading.student_release OUT_DIR [--force] [--repo ROOT]

Copies the repository's files into ``OUT_DIR``, ready to publish (push it to the students'
repository, zip it, ...). The files are those git tracks (``git ls-files``, read from the
working tree) in a git checkout, else every file under ``ROOT`` except build outputs,
caches and virtual environments. ``EXCLUDED`` lists what is left out and why: the solved
exercises, the grader's question specs and case generators, and the tests and benchmarks
that need them. ``OUT_DIR/RELEASE.md`` records the same.

Before anything is written it refuses (exit 2, one message per problem) when

* an ``exercises/X.ipynb`` is not exactly what ``python -m course_lib.grading.release``
  makes from ``solutions/X.ipynb`` (or one of the pair is missing);
* a line of a solution region (``# BEGIN SOLUTION`` ... ``# END SOLUTION``) or of a model
  answer would be published anywhere, unless the same line is already in the course's
  teaching material (the ``notebooks/`` chapters and the ``course_lib`` library, which
  implement several of the exercises' functions on purpose);
* ``OUT_DIR`` lies inside the repository, contains it, or is a non-empty folder and
  ``--force`` is not given. With ``--force`` the folder's current contents are deleted first.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from course_lib.grading import release

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "RELEASE.md"

# (glob pattern on the repository-relative path, why it is left out). ``*`` matches across "/".
EXCLUDED: list[tuple[str, str]] = [
    ("solutions/*", "the solved exercises: the grader's reference, never for students"),
    (
        "course_lib/grading/chapters/*",
        "the hidden checks: each graded chapter's questions, test-case generators, tolerances and references "
        "(`course_lib/grading/chapters/__init__.py`, a docstring only, stays so that the package imports)",
    ),
    ("tests/test_grading*", "the grader's tests: they hold solved exercises and import the hidden checks"),
    ("tests/grading_attacks/*", "attack submissions against the grader, with solved exercises inside"),
    ("tests/test_student_release.py", "tests of this release command: they need solutions/"),
    ("tests/test_hygiene.py", "checks that every chapter has its solutions notebook, which this copy has not"),
    ("benchmarks/grading.py", "the grader's benchmark: it grades copies of solutions/"),
]

# Never taken when walking a folder that is not a git checkout.
WALK_SKIP_DIRS = {
    ".git", ".venv", "venv", "env", "_build", "build", "dist", "__pycache__", ".pytest_cache",
    ".ipynb_checkpoints", ".mypy_cache", ".ruff_cache", "node_modules", ".tox", ".nox",
}
WALK_SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")
MIN_SECRET_CHARS = 8  # shorter solution lines (`return x`, `pass`) say nothing on their own


class ReleaseRefused(Exception):
    """The release would be wrong or unsafe; the message says why and what to do."""


@dataclass
class Plan:
    root: Path
    files: list[str]  # repository-relative paths to copy
    excluded: dict[str, list[str]]  # pattern -> the paths it left out
    exercises_checked: list[str]
    source: str  # where the files came from (git commit, or "a folder")


def excluded_by(rel: str) -> str | None:
    """The ``EXCLUDED`` pattern that leaves ``rel`` out, if any."""
    for pattern, _ in EXCLUDED:
        if fnmatch.fnmatchcase(rel, pattern):
            if rel == "course_lib/grading/chapters/__init__.py":
                return None
            return pattern
    return None


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def repository_files(root: Path) -> tuple[list[str], str]:
    """The repository's files (relative, ``/``-separated) and a line saying where they came from."""
    if (root / ".git").exists():
        listed = _git(root, "ls-files", "-z")
        if listed is not None:
            head = (_git(root, "rev-parse", "HEAD") or "").strip() or "no commit yet"
            dirty = bool((_git(root, "status", "--porcelain", "--untracked-files=no") or "").strip())
            files = sorted(p for p in listed.split("\0") if p and (root / p).is_file())
            untracked = [
                p for p in (_git(root, "ls-files", "-z", "--others", "--exclude-standard") or "").split("\0")
                if p and not set(Path(p).parts[:-1]) & WALK_SKIP_DIRS and excluded_by(p) is None
            ]
            if untracked:
                shown = ", ".join(untracked[:8]) + (", ..." if len(untracked) > 8 else "")
                print(f"course-release: note: {len(untracked)} file(s) that git does not track are left out "
                      f"(git add them to release them): {shown}", file=sys.stderr)
            note = " plus uncommitted changes to tracked files" if dirty else ""
            return files, f"the files git tracks at commit {head}{note}"
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in WALK_SKIP_DIRS and not d.endswith(WALK_SKIP_SUFFIXES))
        for name in sorted(names):
            if not name.endswith(WALK_SKIP_SUFFIXES):
                files.append((Path(folder) / name).relative_to(root).as_posix())
    return files, f"every file under {root.name}/ except build outputs, caches and virtual environments"


def check_exercises(root: Path, files: list[str]) -> tuple[list[str], list[str]]:
    """``(checked, problems)``: each exercises/X.ipynb must be what release makes from solutions/X.ipynb."""
    solutions = {Path(p).name for p in files if fnmatch.fnmatchcase(p, "solutions/*.ipynb") and p.count("/") == 1}
    exercises = {Path(p).name for p in files if fnmatch.fnmatchcase(p, "exercises/*.ipynb") and p.count("/") == 1}
    checked, problems = [], []
    for name in sorted(solutions | exercises):
        solution, exercise = root / "solutions" / name, root / "exercises" / name
        if name not in exercises:
            problems.append(f"solutions/{name} has no exercises/{name}; generate it: "
                            f"python -m course_lib.grading.release solutions/{name} exercises/{name}")
            continue
        if name not in solutions:
            problems.append(f"exercises/{name} has no solutions/{name} to check it against "
                            "(every exercise must be generated from a solutions notebook)")
            continue
        try:
            problem = release.exercise_problem(solution, exercise)
        except (release.ReleaseError, OSError, ValueError) as exc:
            problems.append(f"solutions/{name}: {exc}")
            continue
        if problem:
            problems.append(f"exercises/{name} is not what solutions/{name} generates (edited by hand, or stale); "
                            f"regenerate it: python -m course_lib.grading.release solutions/{name} exercises/{name}")
        else:
            checked.append(f"exercises/{name}")
    return checked, problems


def _normalise(line: str) -> str:
    return " ".join(line.split())


def secret_lines(solution: Path) -> list[str]:
    """The lines of a solutions notebook's solution regions and model answers (whitespace-normalised)."""
    nb = nbformat.read(solution, as_version=4)
    found: list[str] = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and "graded" in tags:
            inside = False
            for line in cell.source.split("\n"):
                if release.BEGIN_SOLUTION.match(line):
                    inside = True
                elif release.END_SOLUTION.match(line):
                    inside = False
                elif inside:
                    found.append(_normalise(line))
        elif cell.cell_type == "markdown" and "answer" in tags:
            for region in release.ANSWER_REGION.findall(cell.source):
                found += [_normalise(line) for line in region.split("\n")]
    return [line for line in dict.fromkeys(found) if len(line) >= MIN_SECRET_CHARS and not line.startswith("#")]


def _searchable_text(path: Path) -> str | None:
    """A file's text with whitespace normalised per line (a notebook: its cells' sources); None if binary."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if b"\0" in raw[:8192]:
        return None
    text = raw.decode("utf-8", errors="replace")
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(text).get("cells", [])
            text = "\n".join("".join(c.get("source", "")) if isinstance(c.get("source"), list) else str(c.get("source", ""))
                             for c in cells if isinstance(c, dict))
        except (ValueError, AttributeError):
            pass
    return "\n".join(_normalise(line) for line in text.split("\n"))


def _is_teaching_material(rel: str) -> bool:
    return (rel.startswith("notebooks/") and rel.endswith(".ipynb")) or (
        rel.startswith("course_lib/") and rel.endswith(".py") and not rel.startswith("course_lib/grading/")
    )


def find_leaks(root: Path, all_files: list[str], released: list[str]) -> list[str]:
    """Solution or model-answer lines that would appear in a released file without being in the
    course's teaching material already; one message per (line, file)."""
    secrets: dict[str, str] = {}
    for rel in all_files:
        if fnmatch.fnmatchcase(rel, "solutions/*.ipynb"):
            try:
                for line in secret_lines(root / rel):
                    secrets.setdefault(line, rel)
            except Exception as exc:  # an unreadable solutions notebook is reported by check_exercises
                secrets.setdefault(f"\0{rel}: {exc}", rel)
    secrets = {k: v for k, v in secrets.items() if not k.startswith("\0")}
    if not secrets:
        return []
    texts = {rel: _searchable_text(root / rel) for rel in released}
    public = "\n".join(t for rel, t in texts.items() if t is not None and _is_teaching_material(rel))
    leaks = []
    for line, source in secrets.items():
        if line in public:
            continue
        for rel, text in texts.items():
            if text is not None and line in text:
                shown = line if len(line) <= 70 else line[:67] + "..."
                leaks.append(f"{rel} contains a line of {source}'s solutions: {shown!r}")
    return leaks


def plan_release(root: Path) -> Plan:
    """What to copy; ``ReleaseRefused`` listing every problem when the exercises or a leak forbid it."""
    root = root.resolve()
    if not (root / "course_lib").is_dir():
        raise ReleaseRefused(f"{root} is not the course repository (no course_lib/ folder); pass --repo")
    all_files, source = repository_files(root)
    files, excluded = [], {pattern: [] for pattern, _ in EXCLUDED}
    for rel in all_files:
        pattern = excluded_by(rel)
        if pattern is None:
            files.append(rel)
        else:
            excluded[pattern].append(rel)
    if MANIFEST in files:
        files.remove(MANIFEST)  # replaced by this release's manifest
    checked, problems = check_exercises(root, all_files)
    problems += find_leaks(root, all_files, files)
    if problems:
        raise ReleaseRefused("refusing to release the student copy:\n" + "\n".join(f"  - {p}" for p in problems))
    return Plan(root, files, excluded, checked, source)


def _check_destination(out: Path, root: Path, force: bool) -> None:
    out_r = out.resolve()
    if out_r == root or root in out_r.parents:
        raise ReleaseRefused(f"{out}: inside the repository {root}; write the student copy somewhere else")
    if out_r in root.parents:
        raise ReleaseRefused(f"{out}: contains the repository {root}; choose a folder of its own")
    if out_r == Path(out_r.anchor) or out_r == Path.home().resolve():
        raise ReleaseRefused(f"{out}: choose a folder of its own for the student copy")
    if out_r.exists() and not out_r.is_dir():
        raise ReleaseRefused(f"{out}: exists and is not a folder")
    if out_r.is_dir() and any(out_r.iterdir()) and not force:
        raise ReleaseRefused(f"{out}: not empty; pass --force to delete its contents and write the release there")


def manifest(plan: Plan) -> str:
    lines = [
        "# Student release",
        "",
        "This is the student copy of the course, written by `course-release` "
        "(`python -m course_lib.grading.student_release`).",
        f"It holds {len(plan.files)} files: {plan.source}, except:",
        "",
        "| left out | why | files |",
        "| --- | --- | --- |",
    ]
    for pattern, why in EXCLUDED:
        lines.append(f"| `{pattern}` | {why} | {len(plan.excluded[pattern])} |")
    lines += [
        "",
        f"Checked before writing: every exercise notebook ({', '.join(plan.exercises_checked) or 'none'}) is "
        "exactly what `python -m course_lib.grading.release` generates from its solutions notebook, so each "
        "exercise is stubbed (`raise NotImplementedError`) where a solution was; and no line of a solution "
        "region or model answer appears in this copy except where the chapters (`notebooks/`) or the library "
        "(`course_lib/`) already show it.",
        "",
        "Notes:",
        "",
        "- The notebooks run and `import course_lib` works as in the full repository "
        "(`pip install -e .`, or the set-up cell at the top of each notebook).",
        "- `course-grade` is included but has no chapter checks here, so it grades nothing: the exercises are "
        "graded by the instructor.",
        "- `make test` is the instructor's check and expects `solutions/`; in this copy run "
        "`pytest tests -m \"not notebooks\"` for the library's tests.",
        "",
    ]
    return "\n".join(lines)


def write_release(plan: Plan, out: Path, force: bool = False) -> None:
    """Copy the plan's files into ``out`` (created; with ``force`` emptied first) and write the manifest."""
    _check_destination(out, plan.root, force)
    out = out.resolve()
    if out.is_dir():
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for rel in plan.files:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(plan.root / rel, target)
    (out / MANIFEST).write_text(manifest(plan), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="course-release",
        description="Write the student copy of the course (no solutions, no hidden checks) into a folder.",
    )
    parser.add_argument("out_dir", help="the folder to write; must be empty or new, and outside the repository")
    parser.add_argument("--force", action="store_true", help="delete what OUT_DIR holds and write the release there")
    parser.add_argument("--repo", default=None, help=f"the course repository (default: {PACKAGE_ROOT})")
    args = parser.parse_args(argv)
    root = Path(args.repo).resolve() if args.repo else PACKAGE_ROOT
    out = Path(args.out_dir)
    try:
        _check_destination(out, root, args.force)  # fail fast, before the checks
        plan = plan_release(root)
        write_release(plan, out, args.force)
    except ReleaseRefused as exc:
        print(f"course-release: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"course-release: {exc}", file=sys.stderr)
        return 2
    left_out = sum(len(v) for v in plan.excluded.values())
    print(f"wrote the student copy to {out}: {len(plan.files)} files, {left_out} left out (see {out / MANIFEST})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
