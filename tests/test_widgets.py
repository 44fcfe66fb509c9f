import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from course_lib import widgets  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def draw(value, ax):
    ax.plot([0, 1], [0, value])


def test_static_mode_one_panel_per_value(monkeypatch):
    monkeypatch.setenv(widgets.STATIC_ENV, "1")
    assert widgets.static_mode()
    fig = widgets.slider_figure(draw, name="t", values=range(0, 1000, 10), static_values=[0, 250, 500])
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["t = 0", "t = 250", "t = 500"]


def test_default_static_values_span_the_range(monkeypatch):
    monkeypatch.setenv(widgets.STATIC_ENV, "1")
    fig = widgets.slider_figure(draw, name="w", values=[0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0], description="guidance")
    assert [ax.get_title() for ax in fig.axes] == ["w = 0", "w = 1", "w = 2", "w = 4", "w = 16"]
    assert fig._suptitle.get_text() == "guidance"


def test_not_live_outside_a_kernel(monkeypatch):
    monkeypatch.delenv(widgets.STATIC_ENV, raising=False)
    assert widgets.static_mode()  # pytest is no IPython kernel


def test_live_mode_builds_a_slider_that_redraws():
    import ipywidgets

    seen = []
    box = widgets.slider_figure(lambda v, ax: seen.append(v), name="t", values=[1, 2, 3], initial=2, static=False)
    slider = next(c for c in box.children if isinstance(c, ipywidgets.SelectionSlider))
    assert slider.value == 2 and list(slider.options) == [("1", 1), ("2", 2), ("3", 3)]
    slider.value = 3
    assert seen[-1] == 3


@pytest.mark.parametrize(
    "kwargs, word",
    [(dict(values=[]), "values"), (dict(values=5), "values"), (dict(values=[1, 2], initial=7), "initial"),
     (dict(values=[1, 2], static_values=[]), "static_values")],
)
def test_bad_arguments_name_themselves(kwargs, word):
    with pytest.raises(ValueError, match=word):
        widgets.slider_figure(draw, name="t", static=True, **kwargs)
