"""Checking one returned value against the reference, in the trusted process.

Each check returns ``None`` when the case passes, else one line a student can act on:
which check failed and by how much, with at most a few of the expected values.
"""

from __future__ import annotations

import numpy as np

from course_lib.grading.spec import Question

MAX_TEXT = 200
SHOWN_MISMATCHES = 3


def clean_text(text: object, limit: int = MAX_TEXT) -> str:
    """Untrusted text (an exception message) as one short printable line."""
    line = " ".join(str(text).split())
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_case(name: str, case: dict) -> str:
    """``name(arg=value, x0=<float64 array (2, 3)>)``: enough to rebuild the call."""
    parts = []
    for key, value in case.items():
        if isinstance(value, np.ndarray):
            parts.append(f"{key}=<{value.dtype} array {tuple(value.shape)}>")
        elif isinstance(value, float):
            parts.append(f"{key}={value:.6g}")
        else:
            parts.append(f"{key}={value!r}")
    return f"{name}({', '.join(parts)})"


def call_problem(call: object) -> str | None:
    """What went wrong in the submission's process for one call, from its status entry."""
    if not isinstance(call, dict):
        return "no result came back"
    error = call.get("error")
    message = clean_text(call.get("message", ""))
    if error is None:
        return None
    if error == "missing":
        return message or "function missing"
    if error == "type":
        return f"wrong return type: {message}"
    if error == "raised":
        exception = clean_text(call.get("exception", "an exception"), 60)
        if exception == "NotImplementedError":
            return "not implemented yet (raised NotImplementedError)"
        return f"raised {exception}: {message}" if message else f"raised {exception}"
    return "no result came back"


def _index(flat: int, shape: tuple[int, ...]) -> str:
    if not shape:
        return "[]"
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]"


def check_values(question: Question, result: np.ndarray, expected: np.ndarray) -> str | None:
    """Shape, dtype, finiteness and closeness of ``result`` to ``expected``."""
    if result.shape != expected.shape:
        return f"wrong shape: expected {tuple(expected.shape)}, got {tuple(result.shape)}"
    if question.dtype is not None and result.dtype != np.dtype(question.dtype):
        return f"wrong dtype: expected {question.dtype}, got {result.dtype}"
    got = result.astype(np.float64) if result.dtype.kind == "b" else result
    bad_finite = np.isfinite(expected) & ~np.isfinite(got)
    if bad_finite.any():
        first = int(np.flatnonzero(bad_finite.ravel())[0])
        return (
            f"non-finite values (nan or inf) at {int(bad_finite.sum())} of {expected.size} positions, "
            f"first at {_index(first, expected.shape)}"
        )
    close = np.isclose(got, expected, rtol=question.rtol, atol=question.atol, equal_nan=True)
    if close.all():
        return None
    wrong = np.flatnonzero(~close.ravel())
    both_finite = np.isfinite(expected) & np.isfinite(got)
    errors = np.abs(got.astype(np.float64) - expected)[both_finite]
    max_error = f"max abs error {errors.max():.3g}; " if errors.size else ""
    shown = ", ".join(
        f"at {_index(int(i), expected.shape)} got {got.ravel()[i]:.6g}, expected {expected.ravel()[i]:.6g}"
        for i in wrong[:SHOWN_MISMATCHES]
    )
    return f"values differ at {wrong.size} of {expected.size} positions ({max_error}{shown})"
