"""Reading a submitted notebook in the trusted process: validate it, find its chapter, and
turn its code cells into plain Python (IPython syntax such as ``%time`` or ``!pip`` becomes
``get_ipython()`` calls, which the sandbox's stub ignores). Nothing here executes the code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat

MAX_NOTEBOOK_BYTES = 50 * 2**20


class SubmissionError(Exception):
    """A problem with the submission itself (missing, not a notebook, wrong chapter): no grading happens."""


def read_notebook(path: str | os.PathLike) -> nbformat.NotebookNode:
    """Read and validate an ``.ipynb`` file as nbformat 4; ``SubmissionError`` on any problem."""
    path = Path(path)
    if not path.exists():
        raise SubmissionError(f"{path}: no such file")
    if not path.is_file():
        raise SubmissionError(f"{path}: not a file")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"{path}: {size / 2**20:.0f} MiB is too large for a notebook (clear its outputs)")
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: not a Jupyter notebook (not UTF-8 text)") from None
    except ValueError as exc:
        raise SubmissionError(f"{path}: not a Jupyter notebook (invalid JSON: {exc})") from None
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several kinds on malformed input
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SubmissionError(f"{path}: not a valid Jupyter notebook ({reason})") from None
    return nb


def notebook_chapter(nb: nbformat.NotebookNode) -> str | None:
    """The chapter named in the notebook's metadata ``course.chapter``, if any."""
    course = nb.metadata.get("course")
    if isinstance(course, dict) and isinstance(course.get("chapter"), str):
        return course["chapter"]
    return None


def resolve_chapter(nb: nbformat.NotebookNode, path: str | os.PathLike, requested: str | None, known: list[str]) -> str:
    """Which chapter grades this notebook: metadata ``course.chapter``, else the file name stem
    when it is a known chapter. ``--chapter`` (``requested``) must agree with the metadata."""
    declared = notebook_chapter(nb)
    stem = Path(path).stem
    if requested is not None:
        if declared is not None and declared != requested:
            raise SubmissionError(f"{path}: this notebook is for chapter {declared}, not {requested}")
        chapter = requested
    elif declared is not None:
        chapter = declared
    elif stem in known:
        chapter = stem
    else:
        raise SubmissionError(f"{path}: cannot tell which chapter this is (no course.chapter metadata); pass --chapter")
    if chapter not in known:
        raise SubmissionError(f"{path}: no grader for chapter {chapter!r} (graded chapters: {', '.join(known)})")
    return chapter


# Cell magics whose body is ordinary code that should still run (once).
RUN_BODY_MAGICS = ("%%time", "%%timeit", "%%capture")


def code_cells(nb: nbformat.NotebookNode) -> list[dict]:
    """The code cells as plain Python: ``[{"index": i, "source": python}]``, ``i`` counting all cells.

    ``%%time``, ``%%timeit`` and ``%%capture`` cells run their body once; other cell
    magics and all line magics and ``!`` commands become ``get_ipython()`` calls.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    manager = TransformerManager()
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        text = cell.source
        first, _, body = text.lstrip().partition("\n")
        if first.split(" ")[0] in RUN_BODY_MAGICS:
            text = body
        try:
            source = manager.transform_cell(text)
        except Exception:  # leave it to the sandbox's compile() to report the error
            source = text
        cells.append({"index": index, "source": source})
    return cells
