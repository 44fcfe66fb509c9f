"""The autograder: ``course-grade`` runs a submitted notebook in a sandbox and scores its functions.

Notebook format
===============

* Notebook metadata ``metadata["course"] = {"chapter": "04_forward_diffusion",
  "kind": "solutions" | "exercises" | "chapter"}``. The grader takes the chapter from
  ``course.chapter``, else from the file name (``04_forward_diffusion.ipynb``) when that
  is a graded chapter; ``--chapter`` must agree with the metadata when both are given.
* The **solutions** notebook is the source of truth. In a code cell whose metadata tags
  contain ``graded``, the solution lines lie between a line ``# BEGIN SOLUTION`` and a
  line ``# END SOLUTION`` (any indentation)::

      def linear_betas(num_timesteps, beta_start=1e-4, beta_end=0.02):
          # BEGIN SOLUTION
          return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
          # END SOLUTION

* Free-text answers are markdown cells tagged ``answer``; the model answer lies between
  ``<!-- BEGIN ANSWER -->`` and ``<!-- END ANSWER -->``. They are not auto-graded.
* ``python -m course_lib.grading.release SOLUTIONS EXERCISES`` (``release.make_exercise``)
  writes the **exercises** notebook: each solution region becomes
  ``raise NotImplementedError("exercise linear_betas: replace this line with your solution")``
  at the marker's indentation, each answer region becomes ``*Write your answer here.*``
  between the kept markers, outputs and execution counts are stripped, cell ids and
  tags are kept, ``course.kind`` becomes ``"exercises"``. ``--check`` (no paths: every
  ``solutions/*.ipynb`` against ``exercises/``) exits 1 when an exercise is out of date.
  SOLUTION markers outside a ``graded`` cell, or ANSWER markers outside an ``answer``
  cell, are errors.

What is graded
==============

Each graded chapter has ``course_lib/grading/chapters/chNN_slug.py`` with a list
``QUESTIONS`` of ``spec.Question``: the name of a function the student writes, its
points, a generator of test cases (keyword arguments) and a trusted reference. The
grader calls the student's function by keyword with the arguments the exercise stub
declares, on inputs drawn at grading time from a fresh secret seed. A question earns
``points * (cases passed / cases)``; a case passes when the returned ``torch.Tensor`` or
numpy array has the reference's shape, the required dtype (float64 for chapter 04's arrays), is
finite where the reference is, and is ``np.isclose`` to it (the question's rtol/atol).

Every code cell of the submission runs, in order, in one namespace; a cell that raises
is recorded and the next one runs, so an error in one cell costs only the questions
that depend on it. IPython magics and ``!`` commands do nothing (``%%time``,
``%%timeit`` and ``%%capture`` cells run their body). The run uses
``COURSE_PROFILE=smoke``.

Trust model
===========

The submission is untrusted. It runs in a separate process (``sandbox``): fresh scratch
directory as cwd and HOME, scrubbed environment, ``python -I``, a new session killed as a
group at the timeout, and rlimits on CPU time, address space, file size, tasks and core
files. It receives only plain Python cells, the call plan and the input arrays, and
sends back only ``results.npz`` (read with ``allow_pickle=False``, numeric arrays only)
and ``status.json``. References are computed and compared in the trusted process, so
nothing the submission prints, writes or patches can raise its score. The process is
not yet confined from reading the file system (see the project's issues).

Command line
============

    course-grade PATH [--chapter ID] [--json OUT] [--timeout S] [--memory-mb M] [--seed N]

PATH is a notebook or a folder of notebooks. Exit 0 when grading happened, 2 (one line
on stderr) when a submission cannot be graded. ``--json`` writes ``{"notebook",
"chapter", "questions": [{"name", "points", "max_points", "passed", "cases", "feedback",
"summary"}], "total", "max_total", "isolation", "timed_out", "problem", "cell_errors",
"seed", "elapsed_s"}`` (for a folder: ``{"submissions": [...], "errors": [...]}``).

Python API: ``grade_notebook(path, chapter=None, limits=Limits(), seed=None) -> GradeReport``.
"""

from __future__ import annotations

__all__ = ["grade_notebook", "GradeReport", "Limits", "Question", "SubmissionError", "make_exercise"]

_EXPORTS = {
    "grade_notebook": "grader",
    "GradeReport": "grader",
    "Limits": "sandbox",
    "Question": "spec",
    "SubmissionError": "notebook",
    "make_exercise": "release",
}


def __getattr__(name: str):  # lazy, so the sandbox's runner imports only what it needs
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"course_lib.grading.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'course_lib.grading' has no attribute {name!r}")
