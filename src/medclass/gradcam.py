"""Grad-CAM: which part of the image drove the prediction (Selvaraju et al., 2017).

First used in chapter "Convolutional networks" (notebooks/concepts_01_cnn.ipynb) (what a small
network looks at); explained in chapter "Brain MRI: evaluation"
(notebooks/brain_03_evaluation.ipynb).

For a class score y (the logit, before the sigmoid or softmax, as in the paper) and the
feature maps A of a convolutional layer, Grad-CAM weights each map by the average gradient
dy/dA over its pixels and keeps the positive part of the weighted sum: a coarse heatmap, at
that layer's resolution, of where evidence for the class lies. Grad-CAM++ (Chattopadhay et al.,
2018) weights the positive gradients pixel by pixel instead, which spreads the map over several
instances of a class. The heatmap is brought to the image's size with bicubic interpolation, so
that its peak can fall between the layer's coarse grid points.

The last convolutional layer is chosen automatically (the deepest layer of the backbone with a
spatial output); pass ``layer`` to look at a finer one: at 224 px the last layer of ResNet50,
EfficientNet and MobileNetV2 is a 7x7 grid, one cell per 32x32 pixels, coarser than a small
lesion. Gradients need a backend's autodiff; this module uses TensorFlow's ``GradientTape``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from medclass import figures
from medclass.evaluation import as_columns, predict_batch
from medclass.pipeline import decode_and_resize

METHODS = ("gradcam", "gradcam++")


METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}


def find_backbone(model: keras.Model) -> keras.Model:
    """The nested backbone model inside a classifier from :func:`medclass.models.build_classifier`."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(f"Expected one backbone model inside {model.name}, found {len(nested)}.")
    return nested[0]


def _spatial_layers(backbone: keras.Model):
    """The backbone's layers with a spatial (4-D) output, deepest first."""
    for layer in reversed(backbone.layers):
        if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4:
            yield layer


def last_conv_layer(backbone: keras.Model) -> str:
    """The name of the deepest layer with a spatial (4-D) output: ResNet50's ``conv5_block3_out``,
    EfficientNet's ``top_activation``, MobileNetV2's ``out_relu``."""
    for layer in _spatial_layers(backbone):
        return layer.name
    raise ValueError(f"{backbone.name} has no layer with a spatial output to explain.")


def layer_at_stride(backbone: keras.Model, stride: int = 16) -> str:
    """The deepest layer whose output is the input downsampled ``stride`` times (rounded up):
    a finer map than the last layer's, still deep in the network. At stride 16: ResNet50's
    ``conv4_block6_out``, EfficientNet's ``block6a_expand_activation``, MobileNetV2's
    ``block_13_expand_relu``."""
    height = backbone.input.shape[1]
    if height is None:
        raise ValueError(f"{backbone.name} has no fixed input size to measure strides against.")
    wanted = -(-height // stride)
    for layer in _spatial_layers(backbone):
        if layer.output.shape[1] == wanted:
            return layer.name
    raise ValueError(f"{backbone.name} has no layer at stride {stride} (a {wanted}x{wanted} output).")


def _class_scores(model: keras.Model, features, class_index: int | None):
    """The logit of the explained class per image, from the backbone's output ``features``."""
    output = model.layers[-1]  # Dense "probability" (sigmoid) or "probabilities" (softmax)
    pooled = model.get_layer("pool")(features)
    logits = tf.matmul(tf.cast(pooled, tf.float32), tf.cast(output.kernel, tf.float32)) + tf.cast(
        output.bias, tf.float32
    )
    if logits.shape[-1] == 1:  # sigmoid: the logit favours Tumor when positive
        logit = logits[:, 0]
        if class_index is None:
            sign = tf.where(logit >= 0, 1.0, -1.0)
        else:
            sign = tf.fill(tf.shape(logit), 1.0 if class_index == 1 else -1.0)
        return sign * logit
    if class_index is None:
        index = tf.argmax(logits, axis=-1)
    else:
        index = tf.fill([tf.shape(logits)[0]], class_index)
    return tf.gather(logits, index, batch_dims=1)


def gradcam(
    model: keras.Model,
    images: np.ndarray,
    class_index: int | None = None,
    layer: str | None = None,
    method: str = "gradcam",
) -> np.ndarray:
    """Heatmaps in [0, 1], one per image, at the images' own height and width.

    ``class_index`` is the class to explain: None explains the predicted class. For a binary
    (sigmoid) model, 1 explains the positive class (Tumor), 0 the negative one. ``method`` is
    ``"gradcam"`` or ``"gradcam++"``.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; use one of {METHODS}.")
    images = np.asarray(images, dtype="float32")
    backbone = find_backbone(model)
    layer = layer or last_conv_layer(backbone)
    to_backbone = keras.Model(model.input, model.get_layer("preprocess").output)
    inside = keras.Model(backbone.input, [backbone.get_layer(layer).output, backbone.output])
    x = to_backbone(images, training=False)
    with tf.GradientTape() as tape:
        maps, features = inside(x, training=False)
        tape.watch(maps)
        score = _class_scores(model, features, class_index)
    gradients = tf.cast(tape.gradient(score, maps), tf.float32)
    maps = tf.cast(maps, tf.float32)
    if method == "gradcam":
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    else:  # Grad-CAM++, the closed form for an exponential of the score (their eq. 19)
        squared, cubed = gradients**2, gradients**3
        denominator = 2 * squared + tf.reduce_sum(maps, axis=(1, 2), keepdims=True) * cubed
        alpha = squared / tf.where(denominator != 0, denominator, tf.ones_like(denominator))
        weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))
    cam = tf.image.resize(cam[..., None], images.shape[1:3], method="bicubic")[..., 0]
    cam = tf.nn.relu(cam)  # bicubic interpolation overshoots a little below zero
    cam = cam / (tf.reduce_max(cam, axis=(1, 2), keepdims=True) + 1e-8)
    return cam.numpy()


def model_view(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The images as the backbone sees them, in 0-255 at the images' size: for a model with a
    ``standardise`` layer (:class:`medclass.models.SliceStandardisation`), greyscale, cropped
    to the head and stretched; otherwise the images themselves. Heatmaps from :func:`gradcam`
    line up with this view, not with a crop's original framing."""
    images = np.asarray(images, dtype="float32")
    names = {layer.name for layer in model.layers}
    if "standardise" not in names:
        return images
    view = keras.Model(model.input, model.get_layer("standardise").output)(images, training=False)
    return tf.image.resize(view, images.shape[1:3]).numpy()


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The image (0-255, RGB) blended with the heatmap in the 'jet' colour map, as uint8."""
    import matplotlib

    colours = matplotlib.colormaps["jet"](heatmap)[..., :3] * 255
    blended = (1 - alpha) * np.asarray(image, dtype="float32") + alpha * colours
    return np.clip(blended, 0, 255).astype("uint8")


def load_images(paths, image_size) -> np.ndarray:
    """Images decoded and resized exactly as the input pipeline does, as a float32 batch."""
    size = tuple(int(side) for side in image_size)
    return np.stack([decode_and_resize(tf.constant(str(path)), size).numpy() for path in paths]).astype(
        "float32"
    )


def plot_overlays(
    model: keras.Model,
    frame,
    class_names,
    image_size,
    class_index: int | None = None,
    layer: str | None = None,
    method: str = "gradcam",
    title: str = "",
):
    """For each row of ``frame`` (``path``, ``label``): the image as the model sees it
    (:func:`model_view`) above its heatmap overlay.

    Each column is titled with the true label and the probability of the explained class
    (``class_index``; None: the predicted class). Returns the figure.
    """
    images = load_images(frame["path"], image_size)
    probabilities = as_columns(predict_batch(model, images))
    views = model_view(model, images)
    explained = probabilities.argmax(axis=1) if class_index is None else np.full(len(images), class_index)
    heatmaps = gradcam(model, images, class_index, layer, method)
    columns = max(1, len(images))
    figure, axes = figures.grid(2, columns, cell=(2.0, 2.2))
    for column, (image, heatmap, label) in enumerate(zip(views, heatmaps, frame["label"], strict=True)):
        name = class_names[explained[column]]
        axes[0, column].imshow(image.astype("uint8"))
        axes[0, column].set_title(
            f"true {label}\nP({name})={probabilities[column, explained[column]]:.2f}", fontsize=8
        )
        axes[1, column].imshow(overlay(image, heatmap))
    for axis in axes.flat:
        axis.axis("off")
    where = f"layer {layer}" if layer else "the backbone's last convolutional layer"
    figure.suptitle(title or f"{METHOD_TITLES[method]} at {where}")
    return figure


def energy_outside_disc(heatmaps: np.ndarray) -> np.ndarray:
    """Each heatmap's share of its total value outside the disc inscribed in the image: the
    corners, where a dermatoscope's field of view ends. A uniform map puts ``UNIFORM_OUTSIDE``
    there; a map above that leans on the corners, not on the lesion in the middle."""
    heatmaps = np.asarray(heatmaps, dtype="float64")
    height, width = heatmaps.shape[1:3]
    rows, columns = np.mgrid[0:height, 0:width]
    outside = ((rows + 0.5 - height / 2) / (height / 2)) ** 2 + (
        (columns + 0.5 - width / 2) / (width / 2)
    ) ** 2 > 1
    totals = heatmaps.sum(axis=(1, 2))
    return np.where(totals > 0, heatmaps[:, outside].sum(axis=1) / np.where(totals > 0, totals, 1), np.nan)


UNIFORM_OUTSIDE = 1 - np.pi / 4  # the corners' share of the area


def peak_inside(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the heatmap's hottest pixel lies inside ``mask`` (same height and width)."""
    row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return bool(mask[row, column])
