"""Figures sized for the book's page (issue 18: wide figures were shrunk until unreadable)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from medclass import colour, data, evaluation, figures  # noqa: E402


@pytest.mark.parametrize("columns", [1, 3, 6, 12])
def test_a_grid_fits_the_page_and_keeps_its_cells_shape(columns):
    figure, axes = figures.grid(2, columns, cell=(2.0, 2.2))
    width, height = figure.get_size_inches()
    assert axes.shape == (2, columns)
    assert width <= figures.PAGE_WIDTH + 1e-9
    assert width / height == pytest.approx(columns * 2.0 / (2 * 2.2))
    plt.close(figure)


def test_the_chapters_widest_figures_fit_the_page(tmp_path, history):
    from PIL import Image

    paths = []
    for index in range(14):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", (200, 150), (index * 10, 90, 120)).save(path)
        paths.append(str(path))
    frame = pd.DataFrame({"path": paths, "label": ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"] * 2})
    y_true = [0, 1, 2, 3, 4, 5, 6] * 2
    probabilities = pd.get_dummies(y_true).to_numpy(float) * 0.9 + 0.1 / 7
    curve = pd.DataFrame(
        [{"shift": "none", "amount": 0.0, "accuracy": 0.7}]
        + [
            {"shift": kind, "amount": amount, "accuracy": 0.6}
            for kind, (_, amounts) in colour.SHIFTS.items()
            for amount in amounts
        ]
    )
    drawn = [
        data.plot_samples(frame, per_class=6),
        evaluation.plot_history(history),
        evaluation.plot_confusion_matrix(y_true, probabilities, list(frame["label"].unique())),
        evaluation.plot_gallery(frame.assign(score=0.5), "P(mel)"),
        colour.example_grid(np.full((64, 64, 3), 120.0)),
        colour.plot_robustness(curve, ["accuracy"]),
    ]
    for figure in drawn:
        assert figure.get_size_inches()[0] <= figures.PAGE_WIDTH + 1e-9
        plt.close(figure)


def test_an_empty_gallery_is_a_sentence_not_an_empty_figure(capsys):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    empty = pd.DataFrame(columns=["path", "label", "score"])
    assert evaluation.plot_gallery(empty, "P(mel)", title="Most confident false negatives") is None
    assert len(plt.get_fignums()) == before
    assert "Most confident false negatives: none" in capsys.readouterr().out
