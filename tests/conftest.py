"""Shared fixtures: small image folders made on the fly, and the real data when it is there."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

# On pytest-xdist's two workers (make test's first stage, make test-fast) each worker computes
# on one thread, and so do the processes its tests start: two processes each spinning a pool of
# threads sized to the whole machine slowed single tests up to sixfold; most of a small test is
# one core's work (tracing a model) anyway. Set before NumPy and TensorFlow are imported.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")  # two replicas' collectives, side by side

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL_BRAIN = SHARED / "data" / "brain-tumor-mri"
REAL_HAM = SHARED / "data" / "ham10000"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_imagenet_notop.weights.h5"


def write_image(path: Path, mode: str = "L", size=(64, 64), fmt: str = "JPEG", seed: int = 0) -> Path:
    """A random image of the given colour mode and file format."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB").convert(mode)
    image.save(path, fmt)
    return path


def damaged_jpegs(variants: int = 40) -> dict[str, bytes]:
    """A smooth 256-px JPEG damaged in its compressed data, as a disk fault or a broken transfer
    damages one: bytes added before the end marker, a stretch of the scan cut out, and
    ``variants`` copies with one to eight bytes of the scan changed at random (seeded)."""
    y, x = np.mgrid[0:256, 0:256]
    pixels = (128 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").convert("RGB").save(buffer, "JPEG", quality=90)
    good = buffer.getvalue()
    scan = good.index(b"\xff\xda") + 20  # past the start-of-scan header
    out = {
        "extra_bytes.jpg": good[:-2] + bytes(range(1, 17)) + good[-2:],
        "cut_scan.jpg": good[: scan + 300] + good[scan + 1300 :],
    }
    rng = np.random.default_rng(0)
    for index in range(variants):
        damaged = bytearray(good)
        for position in rng.integers(scan, len(good) - 10, size=int(rng.integers(1, 9))):
            damaged[int(position)] = int(rng.integers(0, 256))
        out[f"changed_{index:02d}.jpg"] = bytes(damaged)
    return out


@pytest.fixture
def healthy_tumor_dir(tmp_path) -> Path:
    """A plain Healthy/ + Tumor/ folder with 12 grayscale JPEGs per class."""
    for label in ("Healthy", "Tumor"):
        for index in range(12):
            write_image(tmp_path / label / f"{label}_{index}.jpg", seed=index + 100 * (label == "Tumor"))
    return tmp_path


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """The embedded synthetic phantoms, written once per test session (small set)."""
    from medclass.synthetic import write_synthetic_brain_mri

    return write_synthetic_brain_mri(tmp_path_factory.mktemp("synthetic"), n_images=60, seed=3, size=128)


@pytest.fixture(scope="session")
def real_brain_frame():
    """The real Brain Tumor MRI dataset from ../shared/data, loaded once."""
    if not REAL_BRAIN.is_dir():
        pytest.skip(f"real data not found at {REAL_BRAIN} (see ../shared/data/README.md)")
    from medclass.data import load_dataset

    return load_dataset("brain_mri", REAL_BRAIN)


def requires_mobilenet_weights():
    return pytest.mark.skipif(
        not MOBILENET_WEIGHTS.is_file(), reason=f"pretrained weights not found at {MOBILENET_WEIGHTS}"
    )


@pytest.fixture(scope="session")
def saved_model(synthetic_dir, tmp_path_factory) -> Path:
    """A small brain model trained here (MobileNetV2 0.35, not pretrained, 48 px, one epoch) and
    exported the way the training chapter exports one: ``model.keras`` and ``model.json``."""
    from medclass import data, models, pipeline, splits, training

    class_names = ["Healthy", "Tumor"]
    run_dir = tmp_path_factory.mktemp("run")
    frame = splits.split_frame(data.load_dataset("brain_mri", synthetic_dir), seed=0)
    train = pipeline.make_dataset(frame[frame.split == "train"], class_names, (48, 48), 16)
    val = pipeline.make_dataset(frame[frame.split == "val"], class_names, (48, 48), 16)
    model, base = models.build_classifier("mobilenet_v2", None, (48, 48), 2, alpha=0.35)
    metadata = {
        "class_names": class_names,
        "image_size": [48, 48],
        "threshold": 0.5,
        "backbone": "mobilenet_v2",
        "weights": None,
        "data": "synthetic phantoms",
    }
    recipe = training.Recipe(epochs_frozen=1, epochs_finetune=0)
    training.train_two_phase(model, base, train, val, run_dir, 2, recipe, metadata=metadata)
    return run_dir


def write_evaluation(model_dir: Path, record: dict) -> Path:
    """``evaluation.json`` beside the model in ``model_dir``, naming that model as the evaluation
    chapter's record does."""
    from medclass import records

    digest = records.model_digest(Path(model_dir) / "model.keras")
    return records.write_json(Path(model_dir) / "evaluation.json", {**record, "model_sha256": digest})


@pytest.fixture(scope="session")
def demo_book(tmp_path_factory):
    """Run `make book`'s runner once, demo profile, into a temporary build folder."""
    build_dir = tmp_path_factory.mktemp("build")
    result = subprocess.run(
        [sys.executable, "-m", "tools.book", "--profile", "demo", "--build-dir", str(build_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return build_dir, result.stdout + result.stderr


# make test runs the tests on two workers, then the tests marked ``alone`` one at a time: those
# that run processes of their own side by side, each using both cores (the demo book's chains,
# the Colab rehearsal's lone chapters, a server and a browser). Every test that needs the demo
# book or the rehearsal is one of them, marked here by the fixtures it uses.
ALONE_FIXTURES = {"demo_book", "colab_kernel", "lone_runs"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if ALONE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.alone)


# The bad-input cases (issue 16) ---------------------------------------------------------------
# A test marked ``@pytest.mark.case(item, what, behaviour)`` reproduces one bad input, fault or
# race, and asserts the behaviour described. ``make cases`` runs the marked tests and writes the
# table the performance appendix includes: each case, its behaviour, its test and whether the
# test passed. tests/test_publishing.py checks that the committed table lists every marked case.

CASE_OUTCOMES: dict[str, list[str]] = {}


def pytest_addoption(parser):
    parser.addoption("--cases-table", default=None, help="write the table of bad-input cases here")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "case(item, what, behaviour): a bad-input case of issue 16 this test reproduces"
    )


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        CASE_OUTCOMES.setdefault(report.nodeid.split("[")[0], []).append(report.outcome)


def case_rows(items) -> list[dict]:
    """One row per (test function, case marker), parametrised copies of a test counted once."""
    rows = {}
    for item in items:
        test = item.nodeid.split("[")[0]
        for mark in item.iter_markers("case"):
            item_number, what, behaviour = mark.args
            rows[(test, what)] = {"item": item_number, "case": what, "behaviour": behaviour, "test": test}
    return list(rows.values())


REHEARSAL = "test_each_chapter_runs_alone_in_a_fresh_environment"


def pytest_collection_finish(session):
    """When the session will run the Colab rehearsal (tests/test_prerequisites.py), start
    building its fresh environment now, in the background; not on an xdist worker, where each
    worker would build one."""
    rehearsal = [item for item in session.items if getattr(item, "originalname", "") == REHEARSAL]
    if rehearsal and not hasattr(session.config, "workerinput"):
        rehearsal[0].module.start_colab_environment()


def pytest_sessionfinish(session, exitstatus):
    for item in session.items:  # a session stopped before the rehearsal leaves no 3 GB behind
        if getattr(item, "originalname", "") == REHEARSAL:
            item.module.remove_colab_environment()
            break
    target = session.config.getoption("--cases-table")
    if not target:
        return
    rows = case_rows(session.items)
    for row in rows:
        outcomes = CASE_OUTCOMES.get(row["test"], ["not run"])
        row["result"] = "passed" if set(outcomes) == {"passed"} else ", ".join(sorted(set(outcomes)))
    if exitstatus == pytest.ExitCode.INTERRUPTED or any(row["result"] == "not run" for row in rows):
        print(f"\nNot all cases ran: {target} was left as it was.")  # a partial run never replaces it
        return
    rows.sort(key=lambda row: (str(row["item"]).zfill(3), row["test"]))
    good = sum(row["result"] == "passed" for row in rows)
    lines = [
        f"{len(rows)} cases tried, {good} behaving as described (their tests passed): "
        "`make cases`, which runs `pytest -m case --cases-table=book/generated/bad_input_cases.md`.",
        "",
        "| item | case | behaviour | test | result |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        name = row["test"].replace("::", " :: ")
        lines.append(f"| {row['item']} | {row['case']} | {row['behaviour']} | `{name}` | {row['result']} |")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text("\n".join(lines) + "\n")


@pytest.fixture
def history():
    """A training history as medclass.training writes it: three epochs, two phases."""
    import pandas as pd

    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "phase": ["frozen", "frozen", "fine-tune"],
            "loss": [0.7, 0.5, 0.4],
            "val_loss": [0.6, 0.5, 0.45],
            "accuracy": [0.6, 0.7, 0.8],
            "val_accuracy": [0.6, 0.65, 0.7],
        }
    )
    return history
