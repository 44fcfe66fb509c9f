"""Making the students' exercise notebook from the solutions notebook.

    python -m course_lib.grading.release solutions/04_forward_diffusion.ipynb exercises/04_forward_diffusion.ipynb
    python -m course_lib.grading.release --check      # every solutions/*.ipynb against exercises/ (CI)

``make_exercise`` replaces each ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` region of a
code cell tagged ``graded`` by ``raise NotImplementedError(...)`` at the marker's
indentation, replaces the text between ``<!-- BEGIN ANSWER -->`` and ``<!-- END ANSWER -->``
of a markdown cell tagged ``answer`` by ``*Write your answer here.*`` (markers kept, so
the student's answer can be found), strips outputs and execution counts, and sets
``metadata.course.kind = "exercises"``. Cell ids and tags are kept, so regenerating gives
the same file byte for byte; ``--check`` exits 1 when the exercise on disk differs.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

BEGIN_SOLUTION = re.compile(r"^([ \t]*)# BEGIN SOLUTION[ \t]*$")
END_SOLUTION = re.compile(r"^[ \t]*# END SOLUTION[ \t]*$")
BEGIN_ANSWER = "<!-- BEGIN ANSWER -->"
END_ANSWER = "<!-- END ANSWER -->"
ANSWER_PLACEHOLDER = "*Write your answer here.*"
ANSWER_REGION = re.compile(re.escape(BEGIN_ANSWER) + r"(.*?)" + re.escape(END_ANSWER), re.DOTALL)
DEF_LINE = re.compile(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+(\w+)")
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")


class ReleaseError(ValueError):
    """The solutions notebook's markers are malformed."""


def _enclosing_function(lines: list[str], indent: str) -> str | None:
    for line in reversed(lines):
        match = DEF_LINE.match(line)
        if match and len(match.group(1)) < len(indent):
            return match.group(2)
    return None


def strip_solution(source: str, where: str = "cell") -> str:
    """``source`` with each solution region replaced by a ``raise NotImplementedError`` stub."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.split("\n"), start=1):
        begin = BEGIN_SOLUTION.match(line)
        if begin:
            if inside:
                raise ReleaseError(f"{where}, line {number}: BEGIN SOLUTION inside another solution region")
            inside, indent = True, begin.group(1)
            name = _enclosing_function(out, indent)
            message = f"exercise {name}: replace this line with your solution" if name else "exercise: write your solution here"
            out.append(f'{indent}raise NotImplementedError("{message}")')
        elif END_SOLUTION.match(line):
            if not inside:
                raise ReleaseError(f"{where}, line {number}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ReleaseError(f"{where}: BEGIN SOLUTION is never closed by END SOLUTION")
    return "\n".join(out)


def strip_answer(source: str, where: str = "cell") -> str:
    """``source`` with the text of each answer region replaced by the placeholder."""
    if source.count(BEGIN_ANSWER) != source.count(END_ANSWER):
        raise ReleaseError(f"{where}: unbalanced BEGIN ANSWER / END ANSWER markers")
    return ANSWER_REGION.sub(f"{BEGIN_ANSWER}\n{ANSWER_PLACEHOLDER}\n{END_ANSWER}", source)


def _check_compiles(source: str, where: str) -> None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        compile(TransformerManager().transform_cell(source), where, "exec")
    except SyntaxError as exc:
        raise ReleaseError(f"{where}: the exercise stub does not compile ({exc.msg}, line {exc.lineno})") from None


def make_exercise(solution_nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise notebook for a solutions notebook (which is left unchanged)."""
    nb = copy.deepcopy(solution_nb)
    course = dict(nb.metadata.get("course", {}))
    course["kind"] = "exercises"
    nb.metadata["course"] = course
    nb.metadata.pop("widgets", None)
    for index, cell in enumerate(nb.cells):
        where = f"cell {index}"
        tags = cell.metadata.get("tags", [])
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            has_markers = any(BEGIN_SOLUTION.match(l) or END_SOLUTION.match(l) for l in cell.source.split("\n"))
            if "graded" in tags:
                cell.source = strip_solution(cell.source, where)
                if has_markers:
                    _check_compiles(cell.source, where)
            elif has_markers:
                raise ReleaseError(f"{where} has SOLUTION markers but is not tagged 'graded'")
        elif cell.cell_type == "markdown":
            if "answer" in tags:
                cell.source = strip_answer(cell.source, where)
            elif BEGIN_ANSWER in cell.source:
                raise ReleaseError(f"{where} has ANSWER markers but is not tagged 'answer'")
    return nb


def read_solution(path: str | Path) -> nbformat.NotebookNode:
    """Read a solutions notebook; cells without an id get one derived from the file name and position,
    so that the exercise is the same every time it is regenerated."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    raw_cells = json.loads(text).get("cells", [])
    nb = nbformat.reads(text, as_version=4)
    for index, (raw, cell) in enumerate(zip(raw_cells, nb.cells)):
        if "id" not in raw:
            cell["id"] = hashlib.sha1(f"{path.stem}:{index}".encode()).hexdigest()[:8]
    nb.nbformat, nb.nbformat_minor = 4, max(nb.nbformat_minor, 5)
    return nb


def exercise_text(solution_path: str | Path) -> str:
    """The exercise notebook for ``solution_path``, as the exact text that gets written."""
    return nbformat.writes(make_exercise(read_solution(solution_path)))


def _first_difference(expected: str, actual: str) -> str:
    try:
        want, have = json.loads(expected), json.loads(actual)
    except ValueError:
        return "the file is not valid JSON"
    if want.get("metadata") != have.get("metadata"):
        return "notebook metadata differs"
    want_cells, have_cells = want.get("cells", []), have.get("cells", [])
    for index, (a, b) in enumerate(zip(want_cells, have_cells)):
        if a != b:
            return f"cell {index} differs"
    return f"{len(have_cells)} cells instead of {len(want_cells)}"


def exercise_problem(solution: Path, exercise: Path) -> str | None:
    """None when ``exercise`` is exactly what ``solution`` generates (any JSON formatting), else why not."""
    if not exercise.exists():
        return f"{exercise}: missing; generate it from {solution}"
    expected = exercise_text(solution)
    actual = exercise.read_text(encoding="utf-8")
    try:
        actual = nbformat.writes(nbformat.reads(actual, as_version=4))  # same content, any formatting
    except Exception:
        pass
    if actual == expected:
        return None
    return (
        f"{exercise}: out of date with {solution} ({_first_difference(expected, actual)}); "
        f"run python -m course_lib.grading.release {solution} {exercise}"
    )


def release(solution: Path, exercise: Path, check: bool) -> bool:
    """Write (or with ``check``, compare) one exercise; True when it is up to date."""
    if not check:
        exercise.parent.mkdir(parents=True, exist_ok=True)
        exercise.write_text(exercise_text(solution), encoding="utf-8")
        print(f"wrote {exercise} from {solution}")
        return True
    problem = exercise_problem(solution, exercise)
    if problem:
        print(problem, file=sys.stderr)
    return problem is None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grading.release", description=__doc__.split("\n")[0])
    parser.add_argument("solution", nargs="?", help="solutions notebook (default: every solutions/*.ipynb)")
    parser.add_argument("exercise", nargs="?", help="exercise notebook to write (default: exercises/<same name>)")
    parser.add_argument("--check", action="store_true", help="exit 1 if an exercise differs from what would be generated")
    args = parser.parse_args(argv)
    if args.solution:
        pairs = [(Path(args.solution), Path(args.exercise or Path("exercises") / Path(args.solution).name))]
    else:
        pairs = [(s, Path("exercises") / s.name) for s in sorted(Path("solutions").glob("*.ipynb"))]
    try:
        ok = [release(solution, exercise, args.check) for solution, exercise in pairs]
    except (ReleaseError, OSError, ValueError) as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 2
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
