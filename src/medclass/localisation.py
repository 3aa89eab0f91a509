"""Does a saliency map fall on the tumour? Grad-CAM and Grad-CAM++ measured against real masks.

For tumour slices with a mask (LGG's), each map's hottest pixel is inside the mask or not, and
a share of its energy (the sum of the map) lies inside the mask; a map spread evenly over the
slice would put there the mask's share of the slice, the chance level beside which the energy
share is read. Masks are cropped and scaled as the model's standardisation crops the slice
(:meth:`medclass.models.SliceStandardisation.crop_like`), so that they line up with the map.
First used in chapter "Brain MRI: evaluation" (notebooks/brain_03_evaluation.ipynb), which
chooses with it what the demo app shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medclass import gradcam, within_source


def masks_in_model_view(model, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Boolean masks (a batch, at the images' size) as they line up with :func:`gradcam.model_view`."""
    names = {layer.name for layer in model.layers}
    masks = np.asarray(masks, dtype="float32")[..., None]
    if "standardise" in names:
        layer = model.get_layer("standardise")
        if layer.crop:
            masks = np.asarray(layer.crop_like(images, masks, interpolation="nearest"))
    return masks[..., 0] > 0.5


def load_masks(frame: pd.DataFrame, image_size, read_mask) -> np.ndarray:
    """The masks of ``frame``'s rows (``read_mask(path)``), resized to ``image_size`` (nearest)."""
    from PIL import Image

    height, width = (int(side) for side in image_size)
    return np.stack(
        [
            np.asarray(
                Image.fromarray(read_mask(path).astype(np.uint8)).resize((width, height), Image.NEAREST)
            )
            > 0
            for path in frame["path"]
        ]
    )


def measure(model, images: np.ndarray, masks: np.ndarray, layer: str | None, method: str, batch: int = 16):
    """Per image: whether the map's peak is inside the mask, the share of its energy inside it,
    and the mask's share of the slice."""
    masks = masks_in_model_view(model, images, masks)
    peaks, energy = [], []
    for start in range(0, len(images), batch):
        heatmaps = gradcam.gradcam(
            model, images[start : start + batch], class_index=1, layer=layer, method=method
        )
        for heatmap, mask in zip(heatmaps, masks[start : start + batch], strict=True):
            peaks.append(gradcam.peak_inside(heatmap, mask))
            energy.append(float((heatmap * mask).sum() / max(heatmap.sum(), 1e-8)))
    return np.array(peaks), np.array(energy), masks.mean(axis=(1, 2))


def localisation_table(model, frame: pd.DataFrame, image_size, read_mask, choices) -> pd.DataFrame:
    """One row per ``(layer name or None, method)`` of ``choices``: on ``frame``'s tumour slices,
    how often the peak falls inside the mask (clustered Wilson interval over ``patient``), the
    mean share of the map's energy inside the mask, and the mean share of the slice the mask
    covers (what an even map would score)."""
    images = gradcam.load_images(frame["path"], image_size)
    masks = load_masks(frame, image_size, read_mask)
    backbone = gradcam.find_backbone(model)
    rows = []
    for layer, method in choices:
        peaks, energy, area = measure(model, images, masks, layer, method)
        share, low, high = within_source.clustered_wilson(peaks, frame["patient"].to_numpy())
        rows.append(
            {
                "layer": layer or gradcam.last_conv_layer(backbone),
                "method": method,
                "slices": len(frame),
                "peak inside the mask": share,
                "peak inside low": low,
                "peak inside high": high,
                "energy inside the mask": float(energy.mean()),
                "mask share of the slice": float(area.mean()),
            }
        )
    return pd.DataFrame(rows)


def misses(model, frame: pd.DataFrame, image_size, read_mask, layer, method) -> pd.DataFrame:
    """``frame``'s rows whose map peaks outside the mask, with the energy share inside it."""
    images = gradcam.load_images(frame["path"], image_size)
    peaks, energy, _ = measure(model, images, load_masks(frame, image_size, read_mask), layer, method)
    return frame.assign(**{"energy inside": energy})[~peaks]
