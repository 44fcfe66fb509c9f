"""A slider over one knob that falls back to a static row of panels.

A slider teaches only where a live widget front end runs it. The book build, CI and
nbval execute notebooks in a kernel with no front end, where a slider would render as
nothing (or as a stale text repr); there the same ``draw`` function is called for a few
values of the knob instead, one panel each, so every reader sees what the knob does.

``draw(value, ax)`` draws into the axes it is given. Passing the axes in (rather than
letting ``draw`` make its own figure) is what lets the static mode put all values into
one figure and the live mode redraw a single panel.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

STATIC_ENV = "COURSE_STATIC_FIGURES"
N_STATIC = 5


def static_mode() -> bool:
    """True unless a live widget front end can be relied on.

    ``COURSE_STATIC_FIGURES=1`` (set by the book build and CI) always means static.
    Otherwise only an IPython *kernel* with ipywidgets importable counts as live;
    a terminal IPython or a plain script gets static figures.
    """
    if os.environ.get(STATIC_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from IPython import get_ipython

        import ipywidgets  # noqa: F401
    except ImportError:
        return True
    shell = get_ipython()
    return shell is None or not hasattr(shell, "kernel")


def _label(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def default_static_values(values: Sequence[Any], n: int = N_STATIC) -> list[Any]:
    """Up to ``n`` values evenly spaced through ``values``, always including both ends."""
    if len(values) <= n:
        return list(values)
    return [values[int(round(i))] for i in np.linspace(0, len(values) - 1, n)]


def slider_figure(
    draw: Callable[[Any, Axes], Any],
    *,
    name: str,
    values: Sequence[Any],
    initial: Any = None,
    static_values: Sequence[Any] | None = None,
    description: str | None = None,
    panel_size: tuple[float, float] = (3.0, 3.0),
    static: bool | None = None,
):
    """Let the reader move ``name`` through ``values`` and watch ``draw(value, ax)`` respond.

    Live (see :func:`static_mode`): displays a slider over ``values`` with one panel
    below it and returns the widget. Static: draws one panel per value of
    ``static_values`` (default: five evenly spaced values) into a single figure and
    returns that Figure. Each panel without a title of its own gets ``"name = value"``;
    ``description`` is a one-line caption above. ``static`` overrides the detection.
    In a notebook, end the call with ``;`` so the result is not shown twice.
    """
    if not callable(draw):
        raise ValueError(f"draw must be a function draw(value, ax); got {type(draw).__name__}")
    try:
        values = list(values)
    except TypeError:
        values = []
    if not values:
        raise ValueError("values must be a non-empty sequence of the knob's settings, e.g. range(0, 1000, 50)")
    if initial is not None and initial not in values:
        raise ValueError(f"initial must be one of values; got {initial!r}")
    shown = default_static_values(values) if static_values is None else list(static_values)
    if not shown:
        raise ValueError("static_values must be non-empty (or None for evenly spaced values)")
    if static if static is not None else static_mode():
        return _static_panels(draw, name, shown, description, panel_size)
    return _live_slider(draw, name, values, values[0] if initial is None else initial, description, panel_size)


def _draw_panel(draw, ax: Axes, name: str, value: Any) -> None:
    draw(value, ax)
    if not ax.get_title():
        ax.set_title(f"{name} = {_label(value)}")


def _static_panels(draw, name, shown, description, panel_size) -> Figure:
    ncol = min(len(shown), N_STATIC)
    rows = math.ceil(len(shown) / ncol)
    fig, axes = plt.subplots(rows, ncol, figsize=(panel_size[0] * ncol, panel_size[1] * rows), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        fig.delaxes(ax)
    for ax, value in zip(axes.flat, shown):
        _draw_panel(draw, ax, name, value)
    if description:
        fig.suptitle(description)
    fig.tight_layout()
    return fig


def _live_slider(draw, name, values, initial, description, panel_size):
    import ipywidgets as widgets
    from IPython.display import display

    slider = widgets.SelectionSlider(
        options=[(_label(v), v) for v in values],
        value=initial,
        description=name,
        continuous_update=False,  # redraw on release: draw() may take a moment
        layout=widgets.Layout(width="min(100%, 32em)"),
    )

    def redraw(value):
        fig, ax = plt.subplots(figsize=panel_size)
        _draw_panel(draw, ax, name, value)
        fig.tight_layout()
        display(fig)
        plt.close(fig)  # shown once, through the Output widget; keep pyplot from showing it again

    output = widgets.interactive_output(redraw, {"value": slider})
    children = ([widgets.HTML(f"<b>{description}</b>")] if description else []) + [slider, output]
    box = widgets.VBox(children)
    display(box)
    return box
