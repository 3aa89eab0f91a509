"""Figures sized for the book's page.

First used in chapter "Residual networks" (notebooks/concepts_02_resnet.ipynb); every plotting
helper of medclass draws through it.

The book's text column is 784 px wide in a 1400 px window (sphinx-book-theme), and the
notebooks draw at matplotlib's 100 dpi, so a figure wider than about 7.8 inches is shrunk to
fit, and its labels with it: a 14-inch figure shows its 8-point titles at 4.5 points. Every
figure of :mod:`medclass` is at most :data:`PAGE_WIDTH` wide; a grid of images keeps its
cells' shape and is scaled down as a whole, with a constrained layout so titles do not collide.
"""

PAGE_WIDTH = 7.8  # inches: the text column at 100 dpi


def fit(width: float, height: float) -> tuple[float, float]:
    """``(width, height)`` in inches, scaled down (shape kept) to at most the page's width."""
    scale = min(1.0, PAGE_WIDTH / width)
    return width * scale, height * scale


def grid(rows: int, columns: int, cell: tuple[float, float], **subplots):
    """``plt.subplots`` for a grid of ``cell``-sized panels (inches), fitted to the page."""
    import matplotlib.pyplot as plt

    size = fit(columns * cell[0], rows * cell[1])
    return plt.subplots(rows, columns, figsize=size, squeeze=False, layout="constrained", **subplots)


def panels(columns: int, height: float, rows: int = 1, **subplots):
    """``plt.subplots`` for plots side by side across the page's width, ``height`` inches tall."""
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(PAGE_WIDTH, height), layout="constrained", **subplots)
