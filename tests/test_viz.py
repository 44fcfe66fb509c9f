import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from course_lib import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_image_grid_values_on_tiny_example():
    images = torch.tensor([[[-1.0, 1.0]], [[0.0, 0.0]], [[1.0, -1.0]]])  # (3, 1, 2): three 1x2 images
    grid = viz.image_grid(images, nrow=2, padding=1, pad_value=0.5)
    assert grid.shape == (2 * (1 + 1) + 1, 2 * (2 + 1) + 1)
    expected = np.full((5, 7), 0.5)
    expected[1, 1:3] = [0, 1]
    expected[1, 4:6] = [0.5, 0.5]
    expected[3, 1:3] = [1, 0]
    np.testing.assert_allclose(grid, expected)


def test_image_grid_colour_and_clipping():
    images = np.full((5, 3, 4, 4), 3.0)
    grid = viz.image_grid(images, value_range=(0, 1), padding=0)
    assert grid.shape == (2 * 4, 3 * 4, 3) and grid.max() == 1.0


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 4, 4)), np.zeros(5), np.zeros((0, 1, 4, 4))])
def test_image_grid_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="images"):
        viz.image_grid(bad)


def test_show_images_grid_and_titles():
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    assert isinstance(viz.show_images(x, title="samples"), Figure)
    fig = viz.show_images(x, nrow=3, titles=list("abcdef"))
    assert len([a for a in fig.axes if a.get_title()]) == 6
    with pytest.raises(ValueError, match="titles"):
        viz.show_images(x, titles=["a"])
    _, ax = plt.subplots()
    assert viz.show_images(x, ax=ax) is ax.figure


def test_image_strip_labels():
    fig = viz.image_strip(torch.zeros(4, 8, 8), [f"t={t}" for t in (0, 250, 500, 999)], title="noising")
    assert [a.get_xlabel() for a in fig.axes] == ["t=0", "t=250", "t=500", "t=999"]
    with pytest.raises(ValueError, match="labels"):
        viz.image_strip(torch.zeros(4, 8, 8), ["t=0"])


def test_plot_losses_raw_and_smoothed():
    losses = list(np.linspace(1, 0.1, 100) + 0.05 * np.random.default_rng(0).standard_normal(100))
    fig = viz.plot_losses(losses, smooth=10)
    raw, smooth = fig.axes[0].lines
    assert len(raw.get_ydata()) == 100 and len(smooth.get_ydata()) == 91
    np.testing.assert_allclose(smooth.get_ydata()[0], np.mean(losses[:10]))
    assert len(viz.plot_losses(torch.ones(3), logy=True).axes[0].lines) == 1
    with pytest.raises(ValueError, match="smooth"):
        viz.plot_losses(losses, smooth=0)
    with pytest.raises(ValueError, match="losses"):
        viz.plot_losses([])


def test_plot_curves():
    t = np.arange(10)
    fig = viz.plot_curves(t, {"linear": t / 9, "cosine": np.cos(t)}, "t", "value", logy=False)
    assert [line.get_label() for line in fig.axes[0].lines] == ["linear", "cosine"]
    with pytest.raises(ValueError, match="curves\\['short'\\]"):
        viz.plot_curves(t, {"short": t[:3]}, "t", "y")
