"""The Streamlit page, driven by Streamlit's AppTest with a small model trained in the tests."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from medclass import serving
from tests.conftest import ROOT, write_evaluation

APP = ROOT / "src" / "medclass" / "app" / "streamlit_app.py"
EVALUATION = {
    "tta": False,
    "temperature": 1.3,
    "target_sensitivity": 0.98,
    "operating_class": "Tumor",
    "operating_threshold": 0.4,
    "test": {"accuracy": 0.91, "balanced accuracy": 0.9},
}


@pytest.fixture
def model_dir(saved_model, tmp_path) -> Path:
    """The session's small brain model with an evaluation record beside it."""
    folder = Path(shutil.copytree(saved_model, tmp_path / "brain_mri", ignore=shutil.ignore_patterns("work")))
    write_evaluation(folder, EVALUATION)
    return folder


@pytest.fixture
def scan(synthetic_dir) -> Path:
    return sorted((synthetic_dir / "Training" / "glioma").glob("*.jpg"))[0]


def start(monkeypatch, model: Path | None = None, output_dir: Path | None = None) -> AppTest:
    monkeypatch.delenv("MEDCLASS_MODEL", raising=False)
    if model is not None:
        monkeypatch.setenv("MEDCLASS_MODEL", str(model))
    if output_dir is not None:
        monkeypatch.setenv("MEDCLASS_OUTPUT_DIR", str(output_dir))
    app = AppTest.from_file(str(APP), default_timeout=180)
    app.run()
    assert not app.exception, app.exception
    return app


def upload(app: AppTest, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    app.file_uploader[0].set_value((name, data, mime))
    app.run()
    assert not app.exception, app.exception
    return app


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if "__pycache__" not in path.parts}


def test_an_upload_goes_through_to_probabilities_risk_and_gradcam(monkeypatch, model_dir, scan):
    before = files_under(model_dir), files_under(ROOT / "src")
    app = start(monkeypatch, model_dir)
    assert not app.error
    assert any("not a medical device" in warning.value for warning in app.warning)
    assert "Healthy, Tumor" in app.info[0].value, "before an upload the page says what to upload"

    upload(app, scan.name, scan.read_bytes(), "image/jpeg")
    assert not app.error
    table = app.dataframe[0].value
    assert table["class"].tolist() == ["Healthy", "Tumor"]
    assert table["probability"].sum() == pytest.approx(1, abs=1e-3)
    bundle = serving.load_bundle(model_dir)
    expected = serving.predict(bundle, serving.read_image(scan.read_bytes())[0])
    assert table["probability"].tolist() == pytest.approx(list(expected.values()), abs=1e-4)
    assert bundle.temperature == 1.3, "the page's probabilities are the calibrated ones"
    assert table["what it means"].str.len().min() > 20

    predicted = max(expected, key=expected.get)
    assert app.metric[0].value == predicted
    captions = [caption for image in app.get("image") for caption in image.captions]
    assert any(caption.startswith(scan.name) for caption in captions), captions
    assert any(f"evidence for {predicted}" in caption for caption in captions), "the Grad-CAM image is shown"

    level = serving.assess_risk(bundle, expected).level
    assert any(
        f"<b>{level.upper()}</b>" in block.value and "P(Tumor)" in block.value for block in app.markdown
    )
    assert any(
        "red from 0.400" in caption.value and "sensitivity 0.98" in caption.value for caption in app.caption
    )
    assert any("temperature 1.30" in caption.value for caption in app.sidebar.caption)
    assert before == (files_under(model_dir), files_under(ROOT / "src")), "the upload was written somewhere"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.png", b"plain text, not pixels", "not an image that can be read"),
        ("anim.png", None, "is a GIF image"),
        ("cut.jpg", None, "damaged"),
    ],
)
@pytest.mark.case(
    5, "a text file, a GIF and a cut JPEG uploaded to the app", "a message in the page; the next upload works"
)
def test_a_bad_upload_shows_a_message_and_the_next_upload_works(
    monkeypatch, model_dir, scan, name, data, message
):
    if name == "anim.png":
        buffer = io.BytesIO()
        Image.new("RGB", (20, 20)).save(buffer, "GIF")
        data = buffer.getvalue()
    elif name == "cut.jpg":
        data = scan.read_bytes()[:1500]
    app = upload(start(monkeypatch, model_dir), name, data)
    assert len(app.error) == 1 and message in app.error[0].value and name in app.error[0].value
    assert not app.dataframe, "no prediction for a bad upload"
    upload(app, scan.name, scan.read_bytes(), "image/jpeg")
    assert not app.error and app.dataframe[0].value["class"].tolist() == ["Healthy", "Tumor"]


def test_an_oversized_image_is_refused(monkeypatch, model_dir):
    monkeypatch.setattr(serving, "MAX_PIXELS", 64 * 64 - 1)
    app = upload(start(monkeypatch, model_dir), "big.png", png(Image.new("RGB", (64, 64))))
    assert "megapixels" in app.error[0].value and not app.dataframe


@pytest.mark.parametrize(
    ("mode", "note"),
    [("L", "grayscale"), ("RGBA", "transparency flattened"), ("P", "palette"), ("I;16", "more than 8 bits")],
)
def test_odd_colour_modes_are_converted_and_said_so(monkeypatch, model_dir, mode, note):
    pixels = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype="uint8")
    image = Image.fromarray(pixels).convert("RGBA" if mode == "RGBA" else "L")
    if mode == "P":
        image = Image.fromarray(pixels).convert("P")
    elif mode == "I;16":
        image = Image.fromarray(pixels[..., 0].astype("uint16") * 200)
    app = upload(start(monkeypatch, model_dir), f"odd_{mode}.png", png(image))
    assert not app.error and app.dataframe[0].value["probability"].sum() == pytest.approx(1, abs=1e-3)
    assert any(note in caption.value for caption in app.caption), [c.value for c in app.caption]


@pytest.mark.case(
    3,
    "the app started on a missing or broken model",
    "an error in the page, no uploader; the app keeps running",
)
def test_missing_or_broken_models_are_reported_and_the_app_keeps_running(monkeypatch, model_dir, tmp_path):
    app = start(monkeypatch, tmp_path / "nowhere")
    assert "No model file at" in app.error[0].value and not app.file_uploader

    (model_dir / "model.keras").write_bytes(b"PK\x03\x04 this zip was cut short")
    app = start(monkeypatch, model_dir)
    assert "is not a whole Keras model file" in app.error[0].value and not app.file_uploader

    empty = tmp_path / "empty_outputs"
    empty.mkdir()
    app = start(monkeypatch, output_dir=empty)
    assert "No exported model found" in app.error[0].value


def test_the_sidebar_lists_every_export_and_switches_between_them(monkeypatch, saved_model, tmp_path):
    outputs = tmp_path / "outputs"
    first = Path(
        shutil.copytree(saved_model, outputs / "cpu" / "brain_mri", ignore=shutil.ignore_patterns("work"))
    )
    second = Path(
        shutil.copytree(saved_model, outputs / "demo" / "brain_mri", ignore=shutil.ignore_patterns("work"))
    )
    now = time.time()  # copies keep the session model's time: set both
    os.utime(first / "model.keras", (now - 60, now - 60))
    os.utime(second / "model.keras", (now, now))
    app = start(monkeypatch, output_dir=outputs)
    selector = app.sidebar.selectbox[0]
    assert {Path(option) for option in selector.options} == {first, second}
    assert Path(selector.value) == second, "the latest export is the default"
    selector.set_value(first)
    app.run()
    assert not app.exception and Path(app.sidebar.selectbox[0].value) == first and not app.error
