"""What the demo app does with uploads and models (medclass.serving), without Streamlit."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from medclass import images, records, serving
from tests.conftest import ROOT, damaged_jpegs, write_evaluation


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(mode: str = "RGB", size=(48, 36)) -> Image.Image:
    ramp = np.tile(np.linspace(0, 255, size[0], dtype="uint8"), (size[1], 1))
    return Image.fromarray(np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=-1)).convert(mode)


@pytest.fixture
def model_dir(saved_model, tmp_path) -> Path:
    """The session's small brain model, copied so that a test may add or break files."""
    return Path(shutil.copytree(saved_model, tmp_path / "brain_mri", ignore=shutil.ignore_patterns("work")))


def tumour_scan(synthetic_dir: Path) -> Path:
    return sorted((synthetic_dir / "Training" / "glioma").glob("*.jpg"))[0]


def bundle_of(class_names, evaluation=None) -> serving.Bundle:
    return serving.Bundle(
        None, Path("."), {"class_names": class_names, "image_size": [8, 8]}, evaluation or {}
    )


# Reading uploads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "fmt", "note"),
    [
        ("RGB", "JPEG", None),
        ("L", "JPEG", "grayscale"),
        ("L", "PNG", "grayscale"),
        ("RGBA", "PNG", "transparency flattened onto black"),
        ("LA", "PNG", "transparency flattened onto black"),
        ("P", "PNG", "palette"),
        ("CMYK", "JPEG", "converted from CMYK"),
    ],
)
def test_every_colour_mode_becomes_rgb_with_a_note(mode, fmt, note):
    pixels, notes = serving.read_image(encode(gradient(mode), fmt), f"scan.{fmt.lower()}")
    assert pixels.dtype == np.uint8 and pixels.shape == (36, 48, 3)
    if note is None:
        assert notes == []
    else:
        assert any(note in text for text in notes), notes


def odd_files() -> dict[str, bytes]:
    """Files that decoders disagree on: transparency, 16 bits, a palette, an EXIF rotation, CMYK."""
    transparent = Image.new("RGBA", (48, 36), (255, 255, 255, 0))
    transparent.paste((200, 100, 50, 255), (5, 5, 20, 20))
    deep = Image.fromarray((np.arange(1728, dtype="uint16").reshape(36, 48) * 35).astype("uint16"))
    rotated = gradient(size=(48, 36))
    exif = rotated.getexif()
    exif[0x0112] = 6
    return {
        "transparent.png": encode(transparent),
        "deep.png": encode(deep),
        "palette.png": encode(gradient("P"), "PNG"),
        "rotated.jpg": encode(rotated, "JPEG", exif=exif),
        "cmyk.jpg": encode(gradient("CMYK"), "JPEG"),
        "plain.jpg": encode(gradient(), "JPEG"),
    }


@pytest.mark.parametrize("name", list(odd_files()))
def test_training_and_the_app_read_the_same_pixels_from_the_same_file(name, tmp_path):
    from medclass.pipeline import decode_and_resize, resize_image

    path = tmp_path / name
    path.write_bytes(odd_files()[name])
    app_pixels, _ = serving.read_image(path.read_bytes(), name)
    size = app_pixels.shape[:2]
    training = decode_and_resize(tf.constant(str(path)), size).numpy()
    np.testing.assert_array_equal(training, resize_image(app_pixels, size).numpy())


def test_transparent_pixels_are_flattened_onto_black():
    image = Image.new("RGBA", (40, 40), (255, 255, 255, 0))
    image.putpixel((0, 0), (200, 100, 50, 255))
    pixels, _ = serving.read_image(encode(image))
    assert pixels[5, 5].tolist() == [0, 0, 0] and pixels[0, 0].tolist() == [200, 100, 50]


def test_a_16_bit_png_is_scaled_to_8_bits():
    deep = Image.fromarray((np.arange(1600, dtype="uint16").reshape(40, 40) * 40).astype("uint16"))
    pixels, notes = serving.read_image(encode(deep))
    assert pixels.max() == 255 and pixels[0, 0, 0] == 0
    assert any("more than 8 bits" in note for note in notes)


def test_the_exif_orientation_is_applied():
    image = gradient(size=(48, 36))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    pixels, notes = serving.read_image(encode(image, "JPEG", exif=exif))
    assert pixels.shape == (48, 36, 3) and any("EXIF" in note for note in notes)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"these are not the pixels you are looking for", "not an image that can be read"),
        (b"", "not an image that can be read"),
        (encode(gradient(), "GIF"), "is a GIF image"),
        (encode(gradient(), "BMP"), "is a BMP image"),
        (encode(gradient(size=(200, 150)), "JPEG", quality=95)[:3000], "damaged"),
        (damaged_jpegs(0)["extra_bytes.jpg"], "damaged JPEG data .*extraneous bytes"),
        (damaged_jpegs(0)["cut_scan.jpg"], "damaged JPEG data"),
    ],
)
@pytest.mark.case(
    5,
    "uploads that are text, empty, GIF, BMP, a truncated JPEG or a JPEG with damaged data",
    "refused with the reason; never decoded as garbled pixels",
)
def test_what_is_not_a_usable_jpeg_or_png_is_refused_with_a_reason(data, message):
    with pytest.raises(serving.UnreadableImage, match=message):
        serving.read_image(data, "upload.png")


@pytest.mark.case(10, "a 17-megapixel JPEG upload", "decoded at a reduced scale (2400x1800), not in full")
def test_a_large_jpeg_is_decoded_at_a_reduced_scale_not_in_full():
    buffer = io.BytesIO()
    Image.new("RGB", (4800, 3600), (90, 20, 40)).save(buffer, "JPEG", quality=50)  # 17 megapixels
    pixels, notes = serving.read_image(buffer.getvalue(), "large.jpg")
    assert pixels.shape == (1800, 2400, 3), "1/2 scale: the shorter side stays above DECODE_SIDE"
    assert any("decoded at 2400x1800 px" in note for note in notes)
    assert tuple(pixels[900, 1200]) == pytest.approx((90, 20, 40), abs=3)


@pytest.mark.case(
    10,
    "large PNG uploads, 8-bit grey, RGB and 16-bit (2100 px a side here, 40 megapixels in the benchmark)",
    "shrunk by whole factors in their own mode before any conversion (peak memory "
    "benchmarks/upload_memory.py)",
)
@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
def test_a_large_png_is_reduced_before_it_is_converted(mode):
    y, x = np.mgrid[0:2100, 0:2100]
    pixels = ((x // 30 + y // 30) % 2 * 200 + 20).astype("uint8")
    image = Image.fromarray(pixels.astype("uint16") * 256) if mode == "I;16" else Image.fromarray(pixels)
    decoded, notes = serving.read_image(encode(image.convert(mode) if mode == "RGB" else image), "big.png")
    assert decoded.shape == (1050, 1050, 3), "reduced by 2: the shorter side stays above DECODE_SIDE"
    assert any("reduced to 1050x1050 px" in note for note in notes)
    halved = pixels.reshape(1050, 2, 1050, 2).mean(axis=(1, 3))
    scale = 255 / (220 * 256) * 256 if mode == "I;16" else 1  # 16 bits are scaled by their maximum
    assert np.abs(decoded[..., 0] - halved * scale).max() <= 2


@pytest.mark.case(
    "32.5",
    "a 40-megapixel palette PNG with transparency (2100 px a side here; memory in the benchmark)",
    "converted band by band while it is reduced: the same pixels as converting it whole, no full-size "
    "colour copy (peak memory benchmarks/upload_memory.py)",
)
def test_a_large_palette_png_with_transparency_is_reduced_band_by_band():
    y, x = np.mgrid[0:2100, 0:2100]
    pixels = ((x // 30 + y // 30) % 4 * 60).astype("uint8")
    image = Image.fromarray(pixels).convert("P")
    image.info["transparency"] = int(image.getpixel((0, 0)))
    decoded, notes = serving.read_image(encode(image), "palette.png")
    assert decoded.shape == (1050, 1050, 3) and any("reduced to 1050x1050" in note for note in notes)
    whole, _ = images.to_rgb(Image.open(io.BytesIO(encode(image))).convert("RGBA").reduce(2))
    assert np.abs(decoded.astype(int) - whole.astype(int)).max() <= 1


@pytest.mark.parametrize("size", [(1, 1), (1, 30000), (31, 400)], ids=str)
@pytest.mark.case(
    "32.5",
    "uploads of 1x1, 1x30000 and 31x400 px",
    "refused as too small to classify, as training skips images under 32 px a side",
)
def test_an_upload_too_small_to_classify_is_refused(size):
    with pytest.raises(serving.UnreadableImage, match="too small to classify"):
        serving.read_image(encode(Image.new("RGB", size, (90, 20, 40))), "tiny.png")


@pytest.mark.case(
    "32.5",
    "a 50 kB PNG whose compressed text chunk inflates past Pillow's limit",
    "refused with a reason (not a ValueError in the page)",
)
def test_a_png_with_a_text_bomb_is_refused_with_a_reason():
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("comment", "A" * (64 * 2**20), zip=True)  # 64 MB of text in a few dozen kB
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "PNG", pnginfo=meta)
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(serving.UnreadableImage, match="cannot be read safely"):
        serving.read_image(buffer.getvalue(), "bomb.png")


@pytest.mark.case("kept", "an upload over 20 MB or over the pixel limit", "refused before decoding")
def test_oversized_uploads_are_refused_before_decoding(monkeypatch):
    with pytest.raises(serving.UnreadableImage, match=r"the limit is 20 MB"):
        serving.read_image(b"\xff" * (serving.MAX_UPLOAD_MB * 2**20 + 1), "huge.jpg")
    monkeypatch.setattr(serving, "MAX_PIXELS", 1000)
    with pytest.raises(serving.UnreadableImage, match=r"48x36 pixels .* Downscale it first"):
        serving.read_image(encode(gradient()), "big.png")


# Finding and loading models ------------------------------------------------------------------


def test_the_latest_export_is_the_default_and_the_environment_overrides_it(model_dir, tmp_path, monkeypatch):
    older = Path(shutil.copytree(model_dir, tmp_path / "outputs" / "cpu" / "ham10000"))
    newer = Path(shutil.copytree(model_dir, tmp_path / "outputs" / "demo" / "brain_mri"))
    now = time.time()  # copies keep the session model's time: set both
    os.utime(older / "model.keras", (now - 60, now - 60))
    os.utime(newer / "model.keras", (now, now))
    (tmp_path / "outputs" / "half").mkdir()
    (tmp_path / "outputs" / "half" / "model.keras").write_bytes(b"no sidecar: not an export")
    monkeypatch.delenv("MEDCLASS_MODEL", raising=False)
    assert serving.find_exports(tmp_path / "outputs") == [newer, older]
    assert serving.default_model_dir(tmp_path / "outputs") == newer
    assert serving.find_exports(tmp_path / "nowhere") == []
    monkeypatch.setenv("MEDCLASS_OUTPUT_DIR", str(tmp_path / "outputs"))
    assert serving.default_model_dir() == newer
    monkeypatch.setenv("MEDCLASS_MODEL", str(older))
    assert serving.default_model_dir() == older


def test_a_fresh_clone_serves_the_published_models_unless_a_folder_is_named(model_dir, tmp_path, monkeypatch):
    published = Path(shutil.copytree(model_dir, tmp_path / "published" / "brain_mri"))
    monkeypatch.setattr(serving, "PUBLISHED_MODELS", tmp_path / "published")
    monkeypatch.setattr(serving, "DEFAULT_OUTPUTS", tmp_path / "no_outputs_yet")
    monkeypatch.delenv("MEDCLASS_MODEL", raising=False)
    monkeypatch.delenv("MEDCLASS_OUTPUT_DIR", raising=False)
    assert serving.default_model_dir() == published
    trained = Path(shutil.copytree(model_dir, tmp_path / "no_outputs_yet" / "demo" / "brain_mri"))
    assert serving.exports_found() == [trained, published], "a local export comes first"
    assert serving.exports_found(tmp_path / "elsewhere") == [], "a named folder is all that is searched"
    monkeypatch.setenv("MEDCLASS_OUTPUT_DIR", str(tmp_path / "elsewhere"))
    assert serving.default_model_dir() is None


def test_missing_incomplete_or_broken_models_say_what_to_do(model_dir, tmp_path):
    with pytest.raises(serving.ModelUnavailable, match="No model file at .*make book"):
        serving.load_bundle(tmp_path / "nowhere")
    (model_dir / "model.json").rename(model_dir / "elsewhere.json")
    with pytest.raises(serving.ModelUnavailable, match="no model.json"):
        serving.load_bundle(model_dir)
    (model_dir / "elsewhere.json").write_text("{not json")
    (model_dir / "elsewhere.json").rename(model_dir / "model.json")
    with pytest.raises(serving.ModelUnavailable, match="model.json is unreadable"):
        serving.load_bundle(model_dir)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    (broken / "model.json").write_text(
        json.dumps({"class_names": ["Healthy", "Tumor"], "image_size": [48, 48]})
    )
    with pytest.raises(serving.ModelUnavailable, match="is not a whole Keras model file"):
        serving.load_bundle(broken)


@pytest.mark.case(
    3, "evaluation.json cut short (not JSON)", "refused: 'evaluation.json is unreadable', delete or rerun"
)
def test_an_unreadable_evaluation_record_is_named(model_dir):
    (model_dir / "evaluation.json").write_text('{"temperature": 1.2,')  # cut short
    with pytest.raises(serving.ModelUnavailable, match="evaluation.json is unreadable .* delete"):
        serving.load_bundle(model_dir)


@pytest.mark.case("kept", "a model.keras with a Lambda layer (Python bytecode)", "refused by Keras safe mode")
def test_a_model_that_would_run_code_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)  # Python bytecode in the file
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")
    (tmp_path / "model.json").write_text(json.dumps({"class_names": ["a", "b"], "image_size": [8, 8]}))
    with pytest.raises(serving.ModelUnavailable, match="safe mode"):
        serving.load_bundle(tmp_path)


@pytest.mark.case(
    "kept",
    "a model.keras whose config names a function outside Keras (os.system as an activation)",
    "refused: Keras cannot locate it in safe mode; nothing runs",
)
def test_a_model_config_naming_a_function_outside_keras_is_refused(tmp_path):
    import zipfile

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "clean.keras")
    with zipfile.ZipFile(tmp_path / "clean.keras") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    gadget = {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
    config = (
        files["config.json"]
        .decode()
        .replace('"activation": "sigmoid"', json.dumps({"activation": gadget})[1:-1])
    )
    assert '"os"' in config
    files["config.json"] = config.encode()
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    (tmp_path / "model.json").write_text(json.dumps({"class_names": ["a", "b"], "image_size": [8, 8]}))
    with pytest.raises(serving.ModelUnavailable, match="Could not locate function 'system'"):
        serving.load_bundle(tmp_path)


@pytest.mark.case(3, "model.json naming 3 classes for a model with 1 output", "refused, naming both counts")
def test_a_sidecar_that_disagrees_with_the_model_is_refused(model_dir):
    info = json.loads((model_dir / "model.json").read_text())
    info["class_names"] = ["a", "b", "c"]
    (model_dir / "model.json").write_text(json.dumps(info))
    with pytest.raises(serving.ModelUnavailable, match=r"gives 1 output\(s\) but model.json names 3 classes"):
        serving.load_bundle(model_dir)


# Predictions, calibration, Grad-CAM ------------------------------------------------------------


def test_probabilities_use_the_evaluation_temperature_and_flip_averaging(model_dir, synthetic_dir):
    image = tumour_scan(synthetic_dir)
    pixels, _ = serving.read_image(image.read_bytes(), image.name)
    plain = serving.load_bundle(model_dir)
    assert plain.evaluation == {} and plain.temperature == 1.0
    raw = plain.model.predict_on_batch(serving.model_input(plain, pixels))[0, 0]
    probabilities = serving.predict(plain, pixels)
    assert list(probabilities) == ["Healthy", "Tumor"]
    assert probabilities["Tumor"] == pytest.approx(raw, abs=1e-6)
    assert sum(probabilities.values()) == pytest.approx(1)

    write_evaluation(model_dir, {"temperature": 2.0, "tta": True})
    calibrated = serving.load_bundle(model_dir)
    batch = serving.model_input(calibrated, pixels)
    mean = (
        calibrated.model.predict_on_batch(batch)[0, 0]
        + calibrated.model.predict_on_batch(batch[:, :, ::-1])[0, 0]
    ) / 2
    logit = np.log(mean / (1 - mean))
    assert serving.predict(calibrated, pixels)["Tumor"] == pytest.approx(
        1 / (1 + np.exp(-logit / 2)), abs=1e-5
    )


def test_gradcam_overlay_is_an_image_of_the_model_input_size(model_dir, synthetic_dir):
    bundle = serving.load_bundle(model_dir)
    image = tumour_scan(synthetic_dir)
    pixels, _ = serving.read_image(image.read_bytes())
    overlay = serving.explain(bundle, pixels, "Tumor")
    assert overlay.shape == (48, 48, 3) and overlay.dtype == np.uint8
    assert not np.array_equal(overlay, serving.model_input(bundle, pixels)[0].astype("uint8"))


def test_the_app_shows_the_map_the_evaluation_chose_and_says_how_often_it_missed(model_dir, synthetic_dir):
    from medclass import gradcam

    bundle = serving.load_bundle(model_dir)
    assert "one tumour phantom in eight" in serving.explanation_caption(bundle, "Tumor")
    last = gradcam.last_conv_layer(gradcam.find_backbone(bundle.model))
    chosen = {"layer": last, "method": "gradcam", "peak inside the mask": 0.625, "measured on": "8 slices"}
    write_evaluation(model_dir, {"temperature": 1.0, "explanation": chosen})
    chosen_bundle = serving.load_bundle(model_dir)
    caption = serving.explanation_caption(chosen_bundle, "Tumor")
    assert f"gradcam at {last}" in caption and "on 62% of the 8 slices" in caption
    pixels, _ = serving.read_image(tumour_scan(synthetic_dir).read_bytes())
    batch = serving.model_input(chosen_bundle, pixels)
    expected = gradcam.gradcam(chosen_bundle.model, batch, 1, layer=last, method="gradcam")[0]
    view = gradcam.model_view(chosen_bundle.model, batch)[0]
    assert np.array_equal(serving.explain(chosen_bundle, pixels, "Tumor"), gradcam.overlay(view, expected))


def test_an_explanation_without_a_method_is_refused():
    from medclass import records

    with pytest.raises(records.RecordError, match="explanation must name a layer and a method"):
        records.check_evaluation(
            {"temperature": 1.0, "explanation": {"layer": "x", "method": "saliency"}}, ["a", "b"]
        )


# The risk colour ------------------------------------------------------------------------------


def test_brain_risk_uses_the_operating_threshold_chosen_on_validation():
    bundle = bundle_of(
        ["Healthy", "Tumor"],
        {"operating_class": "Tumor", "operating_threshold": 0.3, "target_sensitivity": 0.98},
    )
    assert serving.risk_thresholds(bundle)[:2] == (0.15, 0.3)
    for p_tumor, level in ((0.1, "green"), (0.15, "amber"), (0.29, "amber"), (0.3, "red"), (0.99, "red")):
        risk = serving.assess_risk(bundle, {"Healthy": 1 - p_tumor, "Tumor": p_tumor})
        assert (risk.level, risk.score) == (level, pytest.approx(p_tumor)), p_tumor
    assert "sensitivity 0.98" in risk.red_source
    default = serving.assess_risk(bundle_of(["Healthy", "Tumor"]), {"Healthy": 0.6, "Tumor": 0.4})
    assert (default.amber, default.red, default.level) == (0.25, 0.5, "amber")


@pytest.mark.case(
    1,
    "a model whose weights are NaN, and NaN probabilities given to the risk colour",
    "refused as broken; NaN is 'not a probability', never green",
)
def test_a_model_with_broken_weights_is_refused_not_shown_green(model_dir, synthetic_dir):
    bundle = serving.load_bundle(model_dir)
    pixels, _ = serving.read_image(tumour_scan(synthetic_dir).read_bytes())
    for weights in bundle.model.weights:
        weights.assign(np.full(weights.shape, np.nan, dtype=weights.dtype))
    with pytest.raises(serving.ModelUnavailable, match="broken"):
        serving.predict(bundle, pixels)
    with pytest.raises(serving.ModelUnavailable, match="not a probability"):
        serving.assess_risk(bundle_of(["Healthy", "Tumor"]), {"Healthy": float("nan"), "Tumor": float("nan")})


def test_skin_risk_sums_the_malignant_classes():
    names = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    bundle = bundle_of(names, {"operating_class": "mel", "operating_threshold": 0.1})
    probabilities = dict(zip(names, [0.1, 0.15, 0.05, 0.0, 0.3, 0.35, 0.05], strict=True))
    risk = serving.assess_risk(bundle, probabilities)
    assert risk.classes == ["akiec", "bcc", "mel"] and risk.score == pytest.approx(0.55)
    assert (risk.amber, risk.red, risk.level) == (0.25, 0.5, "red"), "a melanoma-only threshold is not used"
    probabilities.update(mel=0.05, nv=0.6)
    assert serving.assess_risk(bundle, probabilities).level == "amber"
    probabilities.update(akiec=0.0, bcc=0.0, mel=0.0, nv=0.9)
    assert serving.assess_risk(bundle, probabilities).level == "green"
    assert serving.assess_risk(bundle_of(["cat", "dog"]), {"cat": 0.5, "dog": 0.5}).level is None


def test_every_class_of_both_case_studies_has_a_definition():
    for name in ["Healthy", "Tumor", "akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]:
        assert len(serving.class_definitions()[name]) > 20


def test_the_app_takes_risk_classes_and_definitions_from_model_json():
    """A model.json that names its risk classes and definitions is followed, not the registry:
    a model trained on other classes is coloured and explained by what it recorded."""
    info = {
        "class_names": ["cat", "lynx"],
        "image_size": [8, 8],
        "risk_classes": ["lynx"],
        "class_definitions": {"lynx": "A wild cat with tufted ears, which this model flags."},
    }
    bundle = serving.Bundle(None, Path("."), info, {})
    risk = serving.assess_risk(bundle, {"cat": 0.3, "lynx": 0.7})
    assert (risk.classes, risk.level) == (["lynx"], "red")
    assert bundle.class_definitions["lynx"].startswith("A wild cat")
    assert bundle.class_definitions["Tumor"] == serving.class_definitions()["Tumor"]  # registry kept
    older = bundle_of(["Healthy", "Tumor"])  # a sidecar from before model.json recorded them
    assert older.risk_classes == ["Tumor"]


def test_a_model_json_whose_risk_classes_are_not_its_classes_is_refused():
    info = {"class_names": ["Healthy", "Tumor"], "image_size": [8, 8], "risk_classes": ["mel"]}
    with pytest.raises(records.RecordError, match="risk_classes"):
        records.check_model_info(info)


# Streamlit Community Cloud -----------------------------------------------------------------------


def test_the_app_requirements_pin_what_the_app_imports_at_the_book_versions():
    lock = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            lock[name.lower()] = version.strip()
    pins = {}
    for line in (ROOT / "src" / "medclass" / "app" / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("tensorflow-cpu", "tensorflow")] = version.strip()
    for name, version in pins.items():
        assert lock.get(name) == version, f"{name}: app pins {version}, requirements.txt {lock.get(name)}"
    probe = (
        "import sys, medclass.serving as s; from medclass import training, gradcam, calibration, evaluation, "
        "pipeline, models; print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    modules = {
        "keras_cv": "keras-cv",
        "mlflow": "mlflow",
        "kagglehub": "kagglehub",
        "sklearn": "scikit-learn",
        "PIL": "pillow",
        "pandas": "pandas",
        "matplotlib": "matplotlib",
        "tensorflow": "tensorflow",
        "keras": "keras",
        "streamlit": "streamlit",
    }
    for module, distribution in modules.items():
        if f"'{module}'" in imported and module != "streamlit":
            assert distribution in pins, f"the app imports {module} but its requirements lack {distribution}"
    assert "streamlit" in pins


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("risk_classes", ["Tumor", "Tumor"]),  # counted twice, a score above 1
        ("risk_classes", [["Tumor"]]),
        ("class_definitions", ["Tumor: a tumour"]),
        ("class_definitions", {"Tumor": 3}),
    ],
)
def test_a_model_json_with_unusable_risk_classes_or_definitions_is_refused(field, value):
    info = {"class_names": ["Healthy", "Tumor"], "image_size": [8, 8], field: value}
    with pytest.raises(records.RecordError, match=field):
        records.check_model_info(info)


def test_recorded_risk_classes_decide_which_binary_order_is_backwards():
    """A model whose model.json flags its first class is refused as the registry's Tumor-first
    order is: its one output is the probability of the second class."""
    info = {"class_names": ["lynx", "cat"], "image_size": [8, 8], "risk_classes": ["lynx"]}
    with pytest.raises(records.RecordError, match="first"):
        records.check_model_info(info)
