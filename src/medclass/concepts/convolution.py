"""Convolution by hand and by Keras: filters, stride, padding, pooling, receptive fields.

First used in chapter "Convolutional networks" (notebooks/concepts_01_cnn.ipynb).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medclass import figures

# Hand-made 3x3 filters. Sobel filters respond to intensity changes across one direction
# (an edge); the Laplacian to changes in every direction (spots, lines); the box filter averages.
HAND_MADE_FILTERS = {
    "vertical edges (Sobel x)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype="float32"),
    "horizontal edges (Sobel y)": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype="float32"),
    "spots and lines (Laplacian)": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype="float32"),
    "blur (3x3 mean)": np.full((3, 3), 1 / 9, dtype="float32"),
}


def convolve(image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: str = "same") -> np.ndarray:
    """Slide ``kernel`` over a 2-D grayscale ``image`` with Keras's convolution.

    ``padding="same"`` pads with zeros so that, at stride 1, the output keeps the image's size;
    ``"valid"`` only visits positions where the kernel fits entirely. Deep-learning libraries
    compute a cross-correlation (the kernel is not flipped); for learned filters the difference
    does not matter.
    """
    from keras import ops

    x = np.asarray(image, dtype="float32")[None, :, :, None]
    k = np.asarray(kernel, dtype="float32")[:, :, None, None]
    return np.asarray(ops.conv(x, k, strides=stride, padding=padding))[0, :, :, 0]


def output_size(size: int, kernel: int, stride: int = 1, padding: str = "same") -> int:
    """Output length of a convolution or pooling along one axis: ceil(size / stride) with
    "same" padding, floor((size - kernel) / stride) + 1 with "valid"."""
    if padding == "same":
        return -(-size // stride)
    if padding == "valid":
        return (size - kernel) // stride + 1
    raise ValueError(f"padding={padding!r}; use 'same' or 'valid'.")


def receptive_fields(layers: Sequence[tuple[str, int, int]]) -> list[dict]:
    """The receptive field after each layer of a stack of ``(name, kernel, stride)``.

    Each layer widens the field by ``(kernel - 1)`` times the product of the strides before
    it (the "jump" between neighbouring outputs, in input pixels).
    """
    field, jump, rows = 1, 1, []
    for name, kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
        rows.append(
            {"layer": name, "kernel": kernel, "stride": stride, "jump": jump, "receptive field": field}
        )
    return rows


def parameter_counts(height: int, width: int, channels: int, units: int, kernel: int = 3) -> dict:
    """Weights of a dense layer with ``units`` outputs on a flattened image vs a convolution with
    ``units`` filters of ``kernel`` x ``kernel``, each with one bias per output."""
    return {
        "dense": height * width * channels * units + units,
        "convolution": kernel * kernel * channels * units + units,
    }


def plot_maps(maps: Sequence[np.ndarray], titles: Sequence[str], columns: int = 4, cmap: str = "gray"):
    """Show 2-D maps side by side, each scaled to its own range."""
    rows = int(np.ceil(len(maps) / columns))
    figure, axes = figures.grid(rows, columns, cell=(2.0, 2.1))
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, maps, titles, strict=False):
        axis.imshow(image, cmap=cmap)
        axis.set_title(title, fontsize=8)
    return figure


def first_layer_filters(backbone) -> np.ndarray:
    """The first convolution's kernels as RGB patches in [0, 1]: ``(filters, k, k, 3)``."""
    import keras

    conv = next(layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D))
    kernels = np.moveaxis(np.asarray(conv.kernel), -1, 0)  # (filters, k, k, 3)
    low = kernels.min(axis=(1, 2, 3), keepdims=True)
    high = kernels.max(axis=(1, 2, 3), keepdims=True)
    return (kernels - low) / (high - low + 1e-8)


def feature_maps(backbone, images: np.ndarray, layer: str) -> np.ndarray:
    """The output of ``layer`` inside ``backbone`` for already preprocessed ``images``."""
    import keras

    probe = keras.Model(backbone.input, backbone.get_layer(layer).output)
    return np.asarray(probe(images, training=False))
