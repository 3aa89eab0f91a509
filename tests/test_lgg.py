"""LGG: one row per slice and sequence, copied sequences recognised, both layouts read, and the
evaluation that holds source and sequence fixed."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass import datasets, images, report, shortcuts, splits, within_source
from medclass.datasets import lgg

REAL_LGG = Path(__file__).resolve().parents[2] / "shared" / "data" / "lgg"


def write_slice(folder: Path, patient: str, index: int, channels, mask, compression=None) -> None:
    folder = folder / patient
    folder.mkdir(parents=True, exist_ok=True)
    options = {"compression": compression} if compression else {}
    Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8), "RGB").save(
        folder / f"{patient}_{index}.tif", **options
    )
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{patient}_{index}_mask.tif")


def small_set(root: Path, compression=None) -> Path:
    """Two patients of four slices; patient B's T1 post-contrast channel is a copy of FLAIR."""
    rng = np.random.default_rng(0)
    for patient in ("TCGA_AA_0001_20000101", "TCGA_BB_0002_20000101"):
        for index in range(1, 5):
            flair = rng.integers(0, 255, (40, 40))
            channels = [rng.integers(0, 255, (40, 40)), flair, rng.integers(0, 255, (40, 40))]
            if patient.startswith("TCGA_BB"):
                channels[2] = flair
            mask = np.zeros((40, 40), bool)
            mask[10 : 10 + 4 * (index - 1), 10:20] = index in (2, 3)
            write_slice(root / "kaggle_3m", patient, index, channels, mask, compression)
    return root


@pytest.mark.parametrize("compression", [None, "jpeg"], ids=["uncompressed, as Kaggle", "JPEG, as staged"])
def test_each_sequence_is_a_row_and_a_copied_sequence_is_left_out_once(tmp_path, compression):
    frame = lgg.load(small_set(tmp_path, compression))
    copies = frame.attrs["copied_sequences"]
    assert copies[["patient", "sequence"]].values.tolist() == [["TCGA_BB_0002_20000101", "T1 post-contrast"]]
    assert len(frame) == 4 * 3 + 4 * 2
    assert frame.groupby("patient")["sequence"].nunique().to_dict() == {
        "TCGA_AA_0001_20000101": 3,
        "TCGA_BB_0002_20000101": 2,
    }
    assert (frame["group"] == frame["patient"]).all()
    first = frame[(frame.patient == "TCGA_AA_0001_20000101") & (frame.slice_index == 1)]
    assert first["slice_position"].tolist() == [0.0] * 3
    tumour = frame[(frame.slice_index == 2)]
    assert (tumour["label"] == "Tumor").all() and (tumour["tumour_area"] > 0).all()


def test_a_channel_path_decodes_that_channel_as_greyscale(tmp_path):
    frame = lgg.load(small_set(tmp_path))
    row = frame[(frame.sequence == "FLAIR")].iloc[0]
    file, channel = images.split_channel(row["path"])
    assert channel == 1
    with Image.open(file) as image:
        expected = np.asarray(image)[..., 1]
    pixels = images.read_rgb(row["path"])
    assert (pixels[..., 0] == expected).all() and (pixels[..., 0] == pixels[..., 2]).all()
    assert lgg.read_mask(row["path"]).shape == expected.shape


def test_a_slice_without_its_mask_is_reported_not_dropped(tmp_path):
    root = small_set(tmp_path)
    next(root.glob("kaggle_3m/TCGA_AA*/*_3_mask.tif")).unlink()
    frame = lgg.load(root)
    assert frame.attrs["skipped"]["reason"].str.contains("no mask").sum() == 1
    assert not ((frame.patient == "TCGA_AA_0001_20000101") & (frame.slice_index == 3)).any()


def test_a_folder_without_slices_is_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="No LGG slices found in .*kaggle_3m"):
        lgg.load(tmp_path)


def test_the_kagglehub_layout_one_folder_down_is_found(tmp_path):
    small_set(tmp_path / "lgg-mri-segmentation")
    assert lgg.holds_lgg(tmp_path)
    assert len(lgg.load(tmp_path)) == 20


def test_the_report_reads_an_lgg_folder_by_its_loader_and_refuses_other_classes(tmp_path):
    root = small_set(tmp_path / "lgg")
    assert datasets.laid_out_as(root) is lgg.DATASET
    assert datasets.laid_out_as(tmp_path / "elsewhere") is None
    assert len(report.read_external(root, ["Healthy", "Tumor"], {})) == 20
    with pytest.raises(ValueError, match="holds lgg .*the model's classes are \\['akiec'"):
        report.read_external(root, ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"], {})


def test_the_split_keeps_each_patient_and_every_sequence_on_one_side(tmp_path):
    frame = lgg.load(lgg.write_synthetic(tmp_path / "lgg"))
    split = splits.split_external(frame, in_training=True, seed=1)
    assert split.groupby("patient")["split"].nunique().max() == 1
    assert set(split["split"]) >= {"external_val", "external_test", "train"}


def test_strata_are_repeated_to_the_largest_cell():
    train = pd.DataFrame(
        {
            "path": [f"p{i}" for i in range(10)],
            "source": ["a"] * 6 + ["b"] * 4,
            "sequence": [None] * 6 + ["FLAIR"] * 4,
            "label": ["Tumor"] * 5 + ["Healthy"] + ["Tumor", "Healthy", "Healthy", "Healthy"],
        }
    )
    train.attrs["skipped"] = pd.DataFrame({"path": ["x"], "reason": ["y"]})  # as a loaded frame has
    balanced = splits.balance_strata(train, ["source", "sequence", "label"])
    counts = balanced.groupby(["source", balanced["sequence"].astype(str), "label"]).size()
    assert set(counts) == {5}


def test_source_and_sequence_give_the_label_away_only_where_they_are_confounded():
    rng = np.random.default_rng(0)
    n = 400
    confounded = pd.DataFrame(
        {
            "source": np.where(np.arange(n) % 2, "a", "b"),
            "label": np.where(np.arange(n) % 2, "Tumor", "Healthy"),
            "group": np.arange(n),
        }
    )
    fair = confounded.assign(label=rng.permutation(confounded["label"].to_numpy()), sequence="FLAIR")
    assert shortcuts.acquisition_scores(confounded).loc["source", "ROC-AUC"] > 0.95
    assert shortcuts.acquisition_scores(fair).loc["source and sequence", "ROC-AUC"] < 0.6


@pytest.mark.parametrize("hits", [[1] * 30, [0] * 30, [1] * 29 + [0]])
def test_a_clustered_wilson_interval_never_collapses_at_0_or_1(hits):
    groups = np.repeat(np.arange(6), 5)
    share, low, high = within_source.clustered_wilson(np.array(hits, bool), groups)
    assert low < share or share == 0
    assert high > share or share == 1
    assert 0 < high - low < 0.6


def test_clustering_widens_the_interval():
    hits = np.repeat([1, 0, 1, 1, 0, 1, 0, 1], 25).astype(bool)  # whole patients right or wrong
    _, low_apart, high_apart = within_source.clustered_wilson(hits, np.arange(len(hits)))
    _, low_together, high_together = within_source.clustered_wilson(hits, np.repeat(np.arange(8), 25))
    assert high_together - low_together > 2 * (high_apart - low_apart)


def lgg_frame(rng, patients=12, slices=30):
    rows = []
    for patient in range(patients):
        for index in range(slices):
            start = 4 + patient * (slices - 16) // patients  # tumours lie higher or lower by patient
            tumour = start <= index < start + 8
            for sequence in lgg.SEQUENCES:
                rows.append(
                    {
                        "patient": f"P{patient}",
                        "sequence": sequence,
                        "label": "Tumor" if tumour else "Healthy",
                        "slice_position": index / (slices - 1),
                        "brain_area": 0.4 if 3 < index < slices - 3 else 0.1,
                        "tumour_area": 0.03 * tumour * rng.uniform(0.01, 1),
                    }
                )
    return pd.DataFrame(rows)


def test_a_model_that_reads_brain_area_is_caught_by_the_matched_slices():
    frame = lgg_frame(np.random.default_rng(0))
    # "Tumor" wherever much brain shows: perfect on the extremes, no better than chance inside.
    scores = frame["brain_area"].to_numpy() + np.random.default_rng(1).uniform(0, 0.01, len(frame))
    table = within_source.sequence_table(frame, scores, threshold=0.3)
    assert table.loc[("all slices", "FLAIR"), "ROC-AUC"] > 0.62
    matched = table.loc[("matched slices", "FLAIR")]
    assert matched["ROC-AUC low"] < 0.5 < matched["ROC-AUC high"]


def test_a_model_that_finds_tumours_scores_in_every_sequence_and_the_sizes_say_from_where():
    rng = np.random.default_rng(2)
    frame = lgg_frame(rng, patients=24)  # at a rate of 1, each patient counts once: 24 bound it above 0.8
    tumour = (frame["label"] == "Tumor").to_numpy()
    scores = np.where(tumour & (frame["tumour_area"] > 0.01), 0.9, 0.1) + rng.uniform(0, 0.05, len(frame))
    table = within_source.sequence_table(frame, scores, threshold=0.5)
    for sequence in lgg.SEQUENCES:
        assert table.loc[("all slices", sequence), "specificity"] == 1.0
        assert table.loc[("all slices", sequence), "specificity low"] < 1.0
    sizes = within_source.size_table(frame, scores, threshold=0.5)
    assert within_source.found_from(sizes, "FLAIR") == 0.01
    assert "finds tumours from 1.0%" in within_source.describe(table, sizes, 0.5)
    assert "| all slices | FLAIR |" in within_source.markdown(table)


@pytest.mark.slow
def test_the_report_on_an_lgg_folder_evaluates_each_sequence(tmp_path, saved_model):
    root = lgg.write_synthetic(tmp_path / "lgg")
    table = report.evaluate_folder(saved_model, root, tmp_path / "out")
    assert "ROC-AUC" in table.index
    within = pd.read_csv(tmp_path / "out" / "within_source.csv")
    assert set(within["sequence"]) == {*lgg.SEQUENCES, "all sequences"}
    card = (tmp_path / "out" / "model_card.md").read_text()
    assert "Source and sequence held fixed" in card and "bootstrap over patients" in card
    assert "1 (patient, sequence) pairs whose channel is the dataset's copy of FLAIR" in card


@pytest.mark.slow
@pytest.mark.skipif(not REAL_LGG.is_dir(), reason="the real LGG set is not in ../shared/data/lgg")
def test_the_staged_lgg_set_reads_as_its_readme_says():
    frame = lgg.load(REAL_LGG)
    slices = frame.drop_duplicates(["patient", "slice_index"])
    assert frame["patient"].nunique() == 90 and len(slices) == 3264
    assert (slices["label"] == "Tumor").sum() == 1109
    copies = frame.attrs["copied_sequences"]
    assert copies["patient"].nunique() == 8 and (copies["sequence"] == "T1 post-contrast").sum() == 8
    assert frame.attrs["skipped"].empty


def rule_rows(**rows):
    columns = ["variant", *shortcuts.LGG_VAL, shortcuts.EXTERNAL_VAL, shortcuts.SHARED_VAL_AUC]
    return pd.DataFrame([[name, *values] for name, values in rows.items()], columns=columns)


def test_the_rule_picks_the_variant_that_ranks_lgg_best_among_those_that_keep_the_floors():
    nan = float("nan")
    results = rule_rows(
        before_lgg=(nan, nan, 0.95, 0.995),
        lgg=(0.88, 0.85, 0.93, 0.992),
        lgg_better_but_internal_low=(0.95, 0.95, 0.95, 0.95),
        lgg_worse=(0.90, 0.80, 0.95, 0.995),
    )
    assert shortcuts.chosen_recipe(results) == "lgg"
    seeds = rule_rows(lgg=(0.70, 0.70, 0.93, 0.992), lgg_worse=(0.90, 0.80, 0.95, 0.995))
    assert shortcuts.chosen_recipe(results, seeds) == "lgg_worse"  # means over training runs


def test_with_no_variant_on_both_floors_the_internal_floor_goes_first():
    results = rule_rows(
        chance_on_lgg=(0.52, 0.50, 0.885, 0.991),
        finds_tumours=(0.84, 0.83, 0.913, 0.987),
        misses_br35h=(0.90, 0.90, 0.80, 0.999),
    )
    assert shortcuts.chosen_recipe(results) == "finds_tumours"


def test_without_lgg_columns_the_rule_is_the_br35h_one():
    nan = float("nan")
    results = rule_rows(a=(nan, nan, 0.90, 0.995), b=(nan, nan, 0.95, 0.991), c=(nan, nan, 0.99, 0.98))
    assert shortcuts.chosen_recipe(results) == "b"
