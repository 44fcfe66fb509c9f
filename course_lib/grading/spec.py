"""What a chapter grades: one ``Question`` per graded function, and the chapter registry.

A chapter's questions live in ``course_lib/grading/chapters/chNN_slug.py``, which
defines ``QUESTIONS``; the file name gives the chapter id (``ch04_forward_diffusion.py``
grades chapter ``04_forward_diffusion``), so adding a chapter is adding one file.

A chapter module may also declare ``LIBRARY_ANSWERS``: the paths (relative to the
repository root, e.g. ``("course_lib/diffusion",)``) of library modules that implement
the graded functions. They are left out of the student view of ``course_lib`` in the
sandbox, so that a submission cannot return the library's answer.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Case = dict[str, Any]


@dataclass(frozen=True)
class Question:
    """One graded function of an exercise notebook.

    ``make_cases(rng)`` returns the keyword arguments of each test call: numpy arrays,
    ints, floats, bools or strings, drawn from ``rng`` (seeded by the grader at grading
    time, so the cases are new every time). ``reference(**case)`` is the trusted
    behaviour, run in the grader's own process. Arguments named in ``tensor_args``
    reach the student's function as torch tensors (same dtype), the rest as given.

    A result passes a case when it has the reference's shape, a real numeric dtype
    (exactly ``dtype`` when that is set), is finite where the reference is, and matches
    ``np.isclose(result, reference, rtol, atol)`` everywhere. The question earns
    ``points`` times the fraction of cases passed.
    """

    name: str
    points: float
    make_cases: Callable[[np.random.Generator], list[Case]]
    reference: Callable[..., Any]
    tensor_args: tuple[str, ...] = ()
    rtol: float = 1e-6
    atol: float = 1e-8
    dtype: str | None = None
    summary: str = ""


def known_chapters() -> list[str]:
    """Ids of the chapters that have a grader (from the module names in ``chapters/``)."""
    from course_lib.grading import chapters

    return sorted(
        info.name[2:]
        for info in pkgutil.iter_modules(chapters.__path__)
        if info.name.startswith("ch") and info.name[2:4].isdigit()
    )


def _chapter_module(chapter: str):
    """The module ``chapters/ch<chapter>.py``; ``KeyError`` when the chapter has no grader."""
    if chapter not in known_chapters():
        raise KeyError(chapter)
    return importlib.import_module(f"course_lib.grading.chapters.ch{chapter}")


def questions_for(chapter: str) -> list[Question]:
    """The questions of ``chapter``; ``KeyError`` when the chapter has no grader."""
    questions = list(_chapter_module(chapter).QUESTIONS)
    names = [q.name for q in questions]
    if len(set(names)) != len(names):
        raise ValueError(f"chapter {chapter} grades a function twice: {names}")
    return questions


def library_answers(chapter: str) -> tuple[str, ...]:
    """The library paths the chapter's ``LIBRARY_ANSWERS`` withholds from the sandbox."""
    hidden = tuple(getattr(_chapter_module(chapter), "LIBRARY_ANSWERS", ()))
    for path in hidden:
        if not isinstance(path, str) or not path.startswith("course_lib/") or ".." in path.split("/"):
            raise ValueError(f"chapter {chapter}: LIBRARY_ANSWERS entry {path!r} must be a path under course_lib/")
    return hidden
