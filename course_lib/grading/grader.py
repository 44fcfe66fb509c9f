"""Grading one submission: generate inputs, run the sandbox, compare, assign points.

Everything here runs in the trusted process. Inputs come from a fresh secret seed
(``secrets.randbits``) at each grading; the references are computed here too, and the
submission only ever sees the inputs.

Scoring: a question earns ``points * (cases passed / cases)``, rounded to 0.01.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from course_lib.grading import compare, notebook, sandbox, spec


@dataclass
class QuestionResult:
    name: str
    points: float
    max_points: float
    passed: int
    cases: int
    feedback: str
    summary: str = ""


@dataclass
class GradeReport:
    notebook: str
    chapter: str
    questions: list[QuestionResult]
    seed: int
    isolation: str = sandbox.ISOLATION
    timed_out: bool = False
    elapsed_s: float = 0.0
    problem: str | None = None
    cell_errors: list[dict] = field(default_factory=list)
    runs: int = 1  # processes the notebook took: 1, or more after a cell or question hung or ended the process

    @property
    def total(self) -> float:
        return round(sum(q.points for q in self.questions), 2)

    @property
    def max_total(self) -> float:
        return round(sum(q.max_points for q in self.questions), 2)

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(total=self.total, max_total=self.max_total)
        return data


def _plan_argument(key: str, value, tensor: bool, inputs: dict) -> dict:
    if isinstance(value, np.ndarray):
        inputs[key] = value
        return {"array": key, "tensor": tensor}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"a test case argument must be an array, number or string, got {type(value).__name__}")


def build_plan(questions: list[spec.Question], rng: np.random.Generator):
    """Cases for every question: the call plan, the input arrays, and the trusted expected outputs."""
    calls, inputs, expected = [], {}, {}
    for qi, question in enumerate(questions):
        for ci, case in enumerate(question.make_cases(rng)):
            call_id = f"q{qi}c{ci}"
            args = {
                name: _plan_argument(f"{call_id}_{name}", value, name in question.tensor_args, inputs)
                for name, value in case.items()
            }
            calls.append({"id": call_id, "function": question.name, "args": args})
            reference_case = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in case.items()}
            expected[call_id] = (case, np.asarray(question.reference(**reference_case)))
    return {"calls": calls}, inputs, expected


def _cell_errors(status: dict | None) -> list[dict]:
    cells = status.get("cells") if isinstance(status, dict) else None
    if not isinstance(cells, list):
        return []
    return [
        {
            "cell": c.get("index") if isinstance(c.get("index"), int) else None,
            "error": compare.clean_text(c.get("error", ""), 60),
            "message": compare.clean_text(c.get("message", "")),
        }
        for c in cells[:50]
        if isinstance(c, dict)
    ]


def grade_question(
    question: spec.Question, plan_calls: list[dict], expected: dict, outcome, cell_errors, defining_cells=()
) -> QuestionResult:
    """Points and feedback for one question from its calls' outcomes; ``defining_cells``: the
    indices of the cells that define the function (their errors explain a missing function first)."""
    statuses = outcome.status.get("calls") if isinstance(outcome.status, dict) else None
    statuses = statuses if isinstance(statuses, dict) else {}
    passed, first_failure = 0, None
    for call in plan_calls:
        call_id = call["id"]
        case, reference = expected[call_id]
        problem = outcome.problem or outcome.question_problems.get(question.name)
        if problem:
            failure = problem
        else:
            failure = compare.call_problem(statuses.get(call_id))
            if failure is None:
                result = outcome.results.get(call_id)
                failure = "no result came back" if result is None else compare.check_values(question, result, reference)
            elif isinstance(statuses.get(call_id), dict) and statuses[call_id].get("error") == "missing" and cell_errors:
                own = [e for e in cell_errors if e["cell"] in defining_cells]
                first = (own or cell_errors)[0]
                failure += f" (cell {first['cell']} raised {first['error']}: {first['message']})"
        if failure is None:
            passed += 1
        elif first_failure is None:
            first_failure = failure if problem else f"{compare.describe_case(question.name, case)}: {failure}"
    total = len(plan_calls)
    points = round(question.points * passed / total, 2) if total else 0.0
    if first_failure is None:
        feedback = f"all {total} cases passed"
    elif outcome.problem or question.name in outcome.question_problems:
        feedback = first_failure
    else:
        feedback = f"passed {passed}/{total} cases; {first_failure}"
    return QuestionResult(question.name, points, float(question.points), passed, total, feedback, question.summary)


def grade_notebook(
    path: str | os.PathLike,
    chapter: str | None = None,
    limits: sandbox.Limits = sandbox.Limits(),
    seed: int | None = None,
) -> GradeReport:
    """Grade the notebook at ``path``; ``notebook.SubmissionError`` when it cannot be graded at all."""
    nb = notebook.read_notebook(path)
    chapter = notebook.resolve_chapter(nb, path, chapter, spec.known_chapters())
    questions = spec.questions_for(chapter)
    seed = secrets.randbits(64) if seed is None else seed
    plan, inputs, expected = build_plan(questions, np.random.default_rng(seed))
    cells = notebook.code_cells(nb)
    outcome = sandbox.run_sandbox(cells, plan, inputs, limits, spec.library_answers(chapter))
    cell_errors = _cell_errors(outcome.status)
    results = [
        grade_question(
            q,
            [c for c in plan["calls"] if c["function"] == q.name],
            expected,
            outcome,
            cell_errors,
            {c["index"] for c in cells if f"def {q.name}(" in c["source"]},
        )
        for q in questions
    ]
    return GradeReport(
        notebook=str(Path(path)),
        chapter=chapter,
        questions=results,
        seed=seed,
        timed_out=outcome.timed_out,
        elapsed_s=outcome.elapsed_s,
        problem=outcome.problem,
        cell_errors=cell_errors,
        isolation=outcome.isolation,
        runs=outcome.runs,
    )
