"""What the Streamlit demo app does with a model and an uploaded image, kept apart from the page
so that it can be tested without a browser.

Defined in chapter "Deployment: the demo app" (book/deployment.md); the page is
``src/medclass/app/streamlit_app.py``. First used in chapter "Skin lesions: evaluation"
(notebooks/skin_03_evaluation.ipynb), which measures the app's risk colours on the test split.

The app serves any model exported by a training chapter: a folder with ``model.keras`` and its
``model.json`` sidecar (class names, image size), and, once the evaluation chapter has run,
``evaluation.json`` (the temperature fitted on validation and the operating threshold).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from medclass import datasets, records
from medclass.images import MIN_IMAGE_SIDE, jpeg_damage, to_rgb

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUTS = ROOT / "_build" / "outputs"
# The cpu run's exported models, committed with the book: what the app serves on a fresh clone.
PUBLISHED_MODELS = ROOT / "book" / "published" / "cpu" / "models"
APP = Path(__file__).resolve().parent / "app" / "streamlit_app.py"

MAX_UPLOAD_MB = 20  # the same cap as server.maxUploadSize in .streamlit/config.toml
MAX_PIXELS = 40_000_000  # larger images are refused before they are decoded
# A JPEG more than twice this on its shorter side is decoded at 1/2, 1/4 or 1/8 scale, to no
# less than this (libjpeg's DCT scaling, no full-size copy in memory): the models see 160-380 px.
DECODE_SIDE = 1024
ACCEPTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "MPO": "JPEG"}  # MPO: a phone camera's JPEG
UPLOAD_TYPES = ["jpg", "jpeg", "png"]

RED_DEFAULT = 0.5  # red at or above this risk score when the evaluation chose no threshold for it
AMBER_FRACTION = 0.5  # amber from half the red threshold


class AppError(Exception):
    """A problem the app shows to its user as a message, and then keeps running."""


class ModelUnavailable(AppError):
    """The selected model cannot be loaded."""


class UnreadableImage(AppError):
    """The upload is not an image the app can classify."""


@dataclass
class Bundle:
    """A loaded model with what was written beside it."""

    model: object
    model_dir: Path
    info: dict
    evaluation: dict = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(int(side) for side in self.info["image_size"])

    @property
    def risk_classes(self) -> list[str]:
        """The classes whose probabilities make the risk score, as ``model.json`` records them
        (the registry's, for a sidecar written before it did)."""
        return list(self.info.get("risk_classes", risk_classes(self.class_names)))

    @property
    def class_definitions(self) -> dict[str, str]:
        """What each class means, as ``model.json`` records it (else the registry's words)."""
        return {**class_definitions(), **self.info.get("class_definitions", {})}

    @property
    def temperature(self) -> float:
        return float(self.evaluation.get("temperature", 1.0))

    @property
    def tta(self) -> bool:
        return bool(self.evaluation.get("tta", False))


@dataclass
class Risk:
    """The traffic-light reading of a prediction; ``level`` is None without risk classes."""

    level: str | None
    score: float
    classes: list[str]
    amber: float
    red: float
    red_source: str


def find_exports(output_dir: str | Path) -> list[Path]:
    """Folders under ``output_dir`` (at most two levels down) holding ``model.keras`` and
    ``model.json``, the most recently written first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = {
        path.parent
        for pattern in ("model.keras", "*/model.keras", "*/*/model.keras")
        for path in output_dir.glob(pattern)
    }
    exports = [folder for folder in found if (folder / "model.json").is_file()]
    return sorted(exports, key=lambda folder: (folder / "model.keras").stat().st_mtime, reverse=True)


def exports_dir(output_dir: str | Path | None = None) -> Path:
    """Where the app looks for exports: ``output_dir``, else ``MEDCLASS_OUTPUT_DIR``, else
    ``_build/outputs``."""
    return Path(output_dir or os.environ.get("MEDCLASS_OUTPUT_DIR") or DEFAULT_OUTPUTS).expanduser()


def exports_found(output_dir: str | Path | None = None) -> list[Path]:
    """The exports under :func:`exports_dir`, latest first; when no folder was named (neither
    ``output_dir`` nor ``MEDCLASS_OUTPUT_DIR``), the published models follow them, so a fresh
    clone serves the book's models without training."""
    found = find_exports(exports_dir(output_dir))
    if output_dir is None and not os.environ.get("MEDCLASS_OUTPUT_DIR"):
        found += find_exports(PUBLISHED_MODELS)
    return found


def default_model_dir(output_dir: str | Path | None = None) -> Path | None:
    """The model the app opens with: ``MEDCLASS_MODEL`` when set, otherwise the first of
    :func:`exports_found`."""
    if os.environ.get("MEDCLASS_MODEL"):
        return Path(os.environ["MEDCLASS_MODEL"]).expanduser()
    exports = exports_found(output_dir)
    return exports[0] if exports else None


def files_modified(model_dir: str | Path) -> tuple[int, ...]:
    """When, how large and which file the model and its sidecars are (zeros for a missing file):
    a cache keyed on it loads the bundle again when any of them is rewritten or replaced."""
    paths = [Path(model_dir) / name for name in ("model.keras", "model.json", "evaluation.json")]
    stats = [path.stat() if path.exists() else None for path in paths]
    return tuple(
        value
        for stat in stats
        for value in ((stat.st_mtime_ns, stat.st_size, stat.st_ino) if stat else (0, 0, 0))
    )


def load_bundle(model_dir: str | Path) -> Bundle:
    """Load the model in ``model_dir`` with Keras's ``safe_mode=True``, and its sidecars.

    Raises :class:`ModelUnavailable` with what to do when the folder, the model or its
    ``model.json`` is missing or unreadable.
    """

    model_dir = Path(model_dir)
    how_to = (
        "Train one with a training chapter (`make book`), or choose another model in the sidebar "
        "or with MEDCLASS_MODEL=/path/to/export."
    )
    if not (model_dir / "model.keras").is_file():
        raise ModelUnavailable(f"No model file at {model_dir / 'model.keras'}. {how_to}")
    if not (model_dir / "model.json").is_file():
        raise ModelUnavailable(
            f"{model_dir} has model.keras but no model.json (class names, image size): export the "
            "model with the training chapter, which writes both."
        )
    from medclass.saved_models import load_model

    try:  # cut short, foreign, inflating, or not one probability per class: refused, said why
        model, info = load_model(model_dir)
        if "image_size" not in info:
            raise records.RecordError(f"{model_dir / 'model.json'} has no image_size.")
    except records.RecordError as error:
        raise ModelUnavailable(f"{error} {how_to}") from None
    try:
        evaluation = records.read_evaluation(model_dir, info["class_names"])
    except records.RecordError as error:
        raise ModelUnavailable(str(error)) from None
    return Bundle(model, model_dir, info, evaluation)


def read_image(data: bytes, name: str = "upload") -> tuple[np.ndarray, list[str]]:
    """Decode an uploaded JPEG or PNG in memory into RGB uint8 pixels, and notes on what was done.

    The pixels are those the training pipeline reads from the same file
    (:func:`medclass.images.to_rgb`: grayscale, 16-bit, palette and CMYK images become RGB,
    transparency is flattened onto black, the EXIF orientation is applied), except that a very
    large JPEG is decoded at a reduced scale. Anything else, too large, or broken raises
    :class:`UnreadableImage`.
    """
    from PIL import UnidentifiedImageError

    if len(data) > MAX_UPLOAD_MB * 2**20:
        raise UnreadableImage(f"{name} is {len(data) / 2**20:.0f} MB; the limit is {MAX_UPLOAD_MB} MB.")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise UnreadableImage(f"{name} has too many pixels to decode safely; downscale it first.") from None
    except (UnidentifiedImageError, OSError):  # not an image at all
        raise UnreadableImage(
            f"{name} is not an image that can be read: upload a JPEG or PNG file."
        ) from None
    except ValueError as error:  # Pillow's guard against a text chunk that inflates (a PNG bomb)
        raise UnreadableImage(
            f"{name} cannot be read safely ({error}): upload a plain JPEG or PNG."
        ) from None
    if image.format not in ACCEPTED_FORMATS:
        raise UnreadableImage(f"{name} is a {image.format} image; upload a JPEG or PNG file.")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise UnreadableImage(
            f"{name} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); the limit is "
            f"{MAX_PIXELS / 1e6:.0f} megapixels. Downscale it first."
        )
    if min(width, height) < MIN_IMAGE_SIDE:  # as training refuses it (medclass.folders.check_image)
        raise UnreadableImage(
            f"{name} is {width}x{height} px: too small to classify; the model learned from images at "
            f"least {MIN_IMAGE_SIDE} px a side."
        )
    notes = []
    if image.format in ("JPEG", "MPO") and min(width, height) > 2 * DECODE_SIDE:  # MPO: phone JPEGs
        image.draft(image.mode, (DECODE_SIDE, DECODE_SIDE))
        notes.append(f"decoded at {image.size[0]}x{image.size[1]} px, as large as the model needs")
    try:
        image.load()
        if image.format not in ("JPEG", "MPO") and min(width, height) > 2 * DECODE_SIDE:
            image = reduced(image, min(width, height) // DECODE_SIDE)
            if image.size != (width, height):
                notes.append(f"reduced to {image.size[0]}x{image.size[1]} px, as large as the model needs")
        pixels, conversions = to_rgb(image)
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt data
        raise UnreadableImage(f"{name} is damaged and cannot be decoded ({error}).") from None
    if image.format in ("JPEG", "MPO") and (damage := jpeg_damage(data)):
        raise UnreadableImage(
            f"{name} has damaged JPEG data (libjpeg: {damage}): parts of it would be shown to the "
            "model as garbled pixels. Upload an undamaged copy."
        )
    return pixels, notes + conversions


REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK")


def reduced(image, factor: int):
    """``image`` shrunk by a whole ``factor`` (box averages) in its own mode, before any colour
    conversion copies it at full size: a 40-megapixel 16-bit PNG then costs about 240 MB, not
    750 MB. Palette and 1-bit images, which cannot be averaged, are converted band by band
    (RGBA where they have transparency, which :func:`medclass.images.to_rgb` then flattens), so
    that their full-size colour copy never exists."""
    if image.mode == "I;16":
        image = image.convert("I")
    if image.mode in REDUCIBLE_MODES:
        return image.reduce(factor)
    mode = (
        "RGBA"
        if image.mode in ("P", "PA") and (image.mode == "PA" or "transparency" in image.info)
        else "RGB"
    )
    width, height = image.size
    rows = factor * max(1, 256 // factor)  # a band a whole number of factors high
    out = Image.new(mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(height, top + rows))).convert(mode).reduce(factor)
        out.paste(band, (0, top // factor))
    return out


def model_input(bundle: Bundle, pixels: np.ndarray) -> np.ndarray:
    """The image resized as the training pipeline resized it, as a float32 batch of one."""
    from medclass.pipeline import resize_image

    return np.asarray(resize_image(pixels, bundle.image_size), dtype="float32")[None]


def predict(bundle: Bundle, pixels: np.ndarray) -> dict[str, float]:
    """Class probabilities for one RGB image, with the evaluation's test-time augmentation and
    temperature (when ``evaluation.json`` is there), as ``{class name: probability}``."""
    from medclass.calibration import apply_temperature
    from medclass.evaluation import as_columns, predict_batch

    probabilities = predict_batch(bundle.model, model_input(bundle, pixels), bundle.tta)
    probabilities = as_columns(apply_temperature(probabilities, bundle.temperature))[0]
    if not np.isfinite(probabilities).all():
        raise ModelUnavailable(
            f"The model in {bundle.model_dir} gives no usable probabilities ({probabilities.tolist()}): "
            "its weights are broken, as after a training run whose loss became NaN. Retrain it (a lower "
            "learning_rate) or choose another export."
        )
    return dict(zip(bundle.class_names, probabilities.tolist(), strict=True))


def risk_classes(class_names: list[str]) -> list[str]:
    """The classes that count towards the risk score, as the datasets' registry names them
    (Tumor and the tumour types; mel, bcc and akiec); a model with none of them gets no colour."""
    risky = datasets.risk_classes()
    return [name for name in class_names if name in risky]


def class_definitions() -> dict[str, str]:
    """What each class the registry knows means, in plain words, for the app's table."""
    return datasets.class_definitions()


def risk_thresholds(bundle: Bundle) -> tuple[float, float, str]:
    """``(amber, red, where red comes from)`` for ``bundle``: see :func:`thresholds_for`."""
    return thresholds_for(bundle.evaluation, bundle.class_names, bundle.risk_classes)


def thresholds_for(
    evaluation: dict, class_names: list[str], risky: list[str] | None = None
) -> tuple[float, float, str]:
    """``(amber, red, where red comes from)`` from a model's ``evaluation.json`` values.

    Red is the operating threshold the evaluation chapter chose on validation, when it was
    chosen for the risk score itself (P(Tumor) for the brain model); otherwise ``RED_DEFAULT``.
    Amber starts at ``AMBER_FRACTION`` of red. The skin evaluation chapter measures this rule.
    """
    chosen_for = evaluation.get("operating_class")
    risky = risk_classes(class_names) if risky is None else risky  # None: the registry's
    if chosen_for and risky == [chosen_for]:
        red = float(evaluation["operating_threshold"])
        target = evaluation.get("target_sensitivity")
        source = f"the operating threshold chosen on validation for sensitivity {target}"
    else:
        red, source = RED_DEFAULT, "the default, 0.5"
    return AMBER_FRACTION * red, red, source


def assess_risk(bundle: Bundle, probabilities: dict[str, float]) -> Risk:
    """Green, amber or red from the summed probability of the risk classes."""
    classes = bundle.risk_classes
    amber, red, source = risk_thresholds(bundle)
    score = float(sum(probabilities[name] for name in classes))
    if not np.isfinite(score):  # NaN fails every comparison, which would read as green
        raise ModelUnavailable(f"The risk score is {score}, not a probability: no colour can be given.")
    if not classes:
        level = None
    else:
        level = "red" if score >= red else "amber" if score >= amber else "green"
    return Risk(level, score, classes, amber, red, source)


def explanation(bundle: Bundle) -> dict:
    """The saliency map the app shows, and how far to trust it: the layer and method that the
    brain evaluation chapter found to put their peak inside real tumour masks most often (LGG's
    held-out tumour slices; ``evaluation.json``'s ``explanation``), with that rate. Without one,
    Grad-CAM++ at the backbone's deepest stride-16 layer, the choice measured on phantoms with a
    planted mass (book/performance.md, "Does Grad-CAM point at the lesion?")."""
    chosen = bundle.evaluation.get("explanation") or {}
    return {
        "layer": chosen.get("layer"),
        "method": chosen.get("method", "gradcam++"),
        "peak_inside": chosen.get("peak inside the mask"),
        "measured_on": chosen.get("measured on", "phantoms with a planted mass"),
    }


def explain(bundle: Bundle, pixels: np.ndarray, class_name: str) -> np.ndarray:
    """The saliency overlay (:func:`explanation`) for ``class_name`` on the image as the model
    sees it (resized and, for a standardised model, greyscale, cropped to the head and stretched)."""
    from medclass import gradcam

    batch = model_input(bundle, pixels)
    index = bundle.class_names.index(class_name)  # for a sigmoid model 1 is the positive class
    chosen = explanation(bundle)
    backbone = gradcam.find_backbone(bundle.model)
    layer = chosen["layer"] or gradcam.layer_at_stride(backbone, 16)
    heatmap = gradcam.gradcam(bundle.model, batch, class_index=index, layer=layer, method=chosen["method"])[0]
    return gradcam.overlay(gradcam.model_view(bundle.model, batch)[0], heatmap)


def explanation_caption(bundle: Bundle, class_name: str) -> str:
    """What the app says under the map: where the evidence lies, and how often such maps missed."""
    chosen = explanation(bundle)
    if chosen["peak_inside"] is None:
        return (
            f"Where the evidence for {class_name} lies (red: most), Grad-CAM++ at a stride-16 layer: a "
            "coarse guide that missed the lesion in about one tumour phantom in eight"
        )
    return (
        f"Where the evidence for {class_name} lies (red: most), {chosen['method']} at {chosen['layer']}: its "
        f"hottest point fell inside the tumour on {chosen['peak_inside']:.0%} of the "
        f"{chosen['measured_on']}, "
        f"and outside it on the rest"
    )
