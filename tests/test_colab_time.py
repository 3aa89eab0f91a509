"""Each chapter's defaults fit a free Colab GPU, and each chapter says how long it takes there:
the estimate (benchmarks/colab_time.py) is of the defaults the notebooks hold now, and the time
each chapter states is the estimate's."""

from __future__ import annotations

import nbformat
import pandas as pd
import pytest

from benchmarks import colab_time
from tests.conftest import REAL_BRAIN, REAL_HAM, ROOT, SHARED
from tools import chapters, profiles

TABLE = ROOT / "benchmarks" / "results" / "colab_times.csv"
RERUN = "defaults changed since the estimate: re-run python -m benchmarks.colab_time"


@pytest.fixture(scope="module")
def estimate() -> pd.DataFrame:
    return pd.read_csv(TABLE, keep_default_na=False, dtype=str).set_index("chapter")


@pytest.mark.slow
def test_the_table_is_what_the_estimate_gives_now(estimate):
    """The committed table against the estimate made again from the chapters' defaults, the
    published cpu run and the real datasets' counts: a change to any of them shows here."""
    for folder in (REAL_BRAIN, REAL_HAM, SHARED / "data" / "lgg"):
        if not folder.is_dir():
            pytest.skip(f"the estimate counts the real data's images: {folder} not found (../shared/data)")
    now = colab_time.estimate(SHARED / "data").astype(str).set_index("chapter")
    pd.testing.assert_frame_equal(now, estimate[now.columns], check_dtype=False, obj=RERUN)


def test_every_chapter_of_the_book_is_estimated(estimate):
    assert list(estimate.index) == [path.stem for path in chapters.toc_notebooks()], RERUN


@pytest.mark.parametrize("chapter", colab_time.CHAPTERS)
def test_the_estimate_is_of_the_defaults_the_chapter_holds(estimate, chapter):
    defaults = chapters.notebook_defaults(ROOT / "notebooks" / f"{chapter}.ipynb")
    row = estimate.loc[chapter]
    assert row["backbone"] == str(defaults.get("backbone", "")), RERUN
    assert row["image_size"] == str(defaults.get("image_size", "")), RERUN
    assert row["max_images"] == str(defaults.get("max_images") or ""), RERUN
    if "epochs_frozen" in defaults:
        assert row["epochs"] == f"{defaults['epochs_frozen']}+{defaults['epochs_finetune']}", RERUN


@pytest.mark.parametrize("chapter", colab_time.CHAPTERS)
def test_the_chapter_fits_a_free_colab_session_and_says_how_long_it_takes(estimate, chapter):
    row = estimate.loc[chapter]
    assert float(row["total_min"]) <= 30, f"{chapter}: {row['total_min']} min on a T4, over 30"
    opening = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4).cells[0].source
    said = " ".join(opening.split())
    assert f"**Time**: {row['stated']} on a free Colab GPU (a T4)" in said
    if row["full_profile_stated"] != row["stated"]:  # the reference recipe is one profile away
        assert f"`full` profile ({row['full_profile_stated']} on a T4)" in said
        assert f"notebooks/profiles/full/{chapter}.yaml" in said
        full = profiles.chapter_parameters("full", chapter)
        for name in ("backbone", "image_size", "epochs_frozen", "epochs_finetune", "unfreeze_blocks"):
            value = f'"{full[name]}"' if isinstance(full[name], str) else str(full[name])
            assert f"`{name} = {value}`" in said, f"{chapter} names the full recipe's {name}"


def test_the_gpu_estimate_scales_with_pixels_and_is_floored_by_the_cpu():
    at_224 = colab_time.t4_images_per_s("resnet50", 224, forward_only=False)
    assert colab_time.t4_images_per_s("resnet50", 448, forward_only=False) == pytest.approx(at_224 / 4)
    assert colab_time.t4_images_per_s("resnet50", 224, forward_only=True) == pytest.approx(3 * at_224)
    # a tiny image trains faster than the CPU augments: the epoch is the CPU's
    seconds = colab_time.epoch_seconds("efficientnet_b0", 32, n_train=856, n_val=0, trains_backbone=True)
    assert seconds == pytest.approx(1.0)


def test_the_stated_time_rounds_up():
    assert colab_time.stated(27.8) == "about 30 minutes"
    assert colab_time.stated(30.1) == "about 35 minutes"
    assert colab_time.stated(424.0) == "about 7.5 hours"


def test_the_pages_that_quote_the_skin_reference_time_quote_the_estimate(estimate):
    hours = estimate.loc["skin_02_training", "full_profile_stated"]
    for page in (ROOT / "README.md", ROOT / "book" / "skin_lesions.md", ROOT / "book" / "performance.md"):
        assert f"{hours} on a T4" in " ".join(page.read_text().split()), page.name


def test_a_skin_cell_that_reads_every_image_adds_what_kaggles_files_cost_more(tmp_path):
    """Kaggle's HAM10000 files have 9 times the copies' pixels; a cell that reads every image
    adds the extra seconds per image that benchmarks/decode_scale.py measured for its work, not
    8 times its whole duration (found after CI: the estimate of skin_03 opened alone had passed
    30 minutes on that assumption, although most of the duplicate cell compares hashes)."""
    from benchmarks import decode_scale

    extra = decode_scale.extra_seconds()
    assert set(extra) == set(colab_time.DECODE_CELLS)
    assert all(0 < seconds < 0.1 for seconds in extra.values()), extra
    hashes = "hashes = audit.perceptual_hashes(frame['path'])"
    images = colab_time.image_count("ham10000", SHARED / "data") if REAL_HAM.is_dir() else None
    if images is not None:
        added = colab_time.kaggle_extra("skin_01_data", hashes, SHARED / "data")
        assert added == pytest.approx(extra["perceptual_hashes"] * images)
    assert colab_time.kaggle_extra("brain_01_data", hashes, None) == 0.0
    assert colab_time.kaggle_extra("skin_01_data", "frame.head()", None) == 0.0
    with pytest.raises(ValueError, match="needs data_dir"):
        colab_time.kaggle_extra("skin_01_data", hashes, None)
    with pytest.raises(SystemExit, match="run python -m benchmarks.decode_scale"):
        decode_scale.extra_seconds(tmp_path / "missing.csv")
