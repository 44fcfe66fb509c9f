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
(``SystemExit`` included) is recorded and the next one runs, so an error in one cell costs
only the questions that depend on it. A cell that runs longer than the cell limit, or
ends the process (``os._exit``, a crash), is skipped: the grader starts the notebook
again without it, keeping the questions already graded; functions defined before and
after it are still graded. A question whose calls hang (question limit) or end the
process earns 0 ("timed out after S s"), and the others are still graded. An honest
notebook runs in one process. IPython magics and ``!`` commands do nothing (``%%time``,
``%%timeit`` and ``%%capture`` cells run their body); ``get_ipython()`` is a stub without
input transformers or events. The run uses ``COURSE_PROFILE=smoke``.

Trust model
===========

The submission is untrusted; the grader's process never runs its code. The runner
(``runner.py``, standalone) runs it in a separate process (``sandbox``, ``isolation``):

* **bubblewrap** when ``bwrap`` works here: new network (no network at all), pid, IPC and
  UTS namespaces; a root file system holding only ``/usr``, the loader's files, the
  interpreter's and the virtual environment's prefixes (read-only), the scratch
  directory (the only writable place, with a private ``/tmp``) and a read-only **student
  view** of ``course_lib``: a copy without ``course_lib/grading`` and without the
  chapter's ``LIBRARY_ANSWERS`` (e.g. ``course_lib/diffusion`` for chapter 04), which are
  stubs whose import raises ``ModuleNotFoundError``. The repository, ``solutions/`` and
  the question specs are not mounted. Without bubblewrap, a plain subprocess
  (``subprocess+rlimits``); the report says which.
* ``python -I -S`` with the student view first on ``sys.path`` (the editable install's
  finder is never loaded), a scrubbed environment (nothing secret: PATH, LANG, HOME = the
  scratch directory, the profile, thread counts), stdin/stdout/stderr not connected to
  the grader, a new session.
* rlimits: CPU seconds, address space, file size, tasks, no core files. When the grader
  is root, the process drops to a fresh unprivileged uid before any student code runs, so
  the task cap (``RLIMIT_NPROC``, not enforced for root) stops fork bombs.
* Wall-clock limits per cell, per question and per notebook, enforced by the grader from
  the runner's progress lines (it kills the process group, the pid namespace and the uid).
* It receives the plain Python cells, the call plan and the input arrays (drawn from a
  fresh secret seed), and sends back only ``status_*.json`` and ``results_*.npz`` (read
  as regular files only, size-capped, ``allow_pickle=False``, numeric arrays only).
  The runner accepts only exact ``torch.Tensor``/``numpy.ndarray``/number results, clears
  trace and profile hooks around each call, and binds what it uses before student code
  runs. None of that is trusted: shapes, dtypes, finiteness and values are checked in the
  grader's process against references computed there, so nothing the submission prints,
  writes or patches can raise its score.

``GradeReport.isolation`` names what was in force, e.g. ``bubblewrap (no network, pid
namespace, private /tmp, read-only student view of the file system) + rlimits
(unprivileged uid)``, or ``subprocess+rlimits (runs as root: no process cap; file system
and network not confined; ...)``.

Not covered: without bubblewrap the submission can read whatever the grader's user can
(solutions, specs), use the network, and, as root, fork without limit; disk use of the
scratch directory and of the private ``/tmp`` is limited per file (``file_mb``), not in
total; memory is limited as address space (not resident memory, no cgroup); CPU time is
limited per process, not across the processes a submission starts; a submission can
still compute answers with any library installed in the environment (e.g. torch), and
can see the inputs of the calls (never the expected outputs).

Command line
============

    course-grade PATH [--chapter ID] [--json OUT] [--out DIR] [--jobs N] [--timeout S] [--memory-mb M] [--seed N]
    course-release OUT_DIR [--force]

PATH is a notebook or a class folder (one ``<student>.ipynb`` or ``<student>/`` per
student; see ``batch``). One notebook: exit 0 when graded, 2 and one line on stderr when
it cannot be. A folder: exit 0 when the batch ran, 2 only when it holds no submission;
``--out DIR`` writes ``DIR/<student>.json`` and ``DIR/grades.csv``. ``--json`` writes the
report: for one notebook ``{"notebook", "chapter", "questions": [{"name", "points",
"max_points", "passed", "cases", "feedback", "summary"}], "total", "max_total",
"isolation", "timed_out", "problem", "cell_errors", "seed", "elapsed_s", "runs"}``, for a
folder ``{"folder", "chapter", "students": [...]}``. ``course-release`` writes the student
copy of the course (no solutions, no question specs; see ``student_release``).

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
