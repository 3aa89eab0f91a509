"""Model cards, and evaluating a saved model on another folder of images (external validation).

First used in chapter "Brain MRI: evaluation" (notebooks/brain_03_evaluation.ipynb).

Command line, for a model trained by this book and a folder with one sub-folder per class
(the class names of the model's ``model.json``, or the folder names the datasets' registry maps
to them: Kaggle's four brain folders, Br35H's yes/no, PH2's three):

    python -m medclass.report --model outputs/brain_mri --data /path/to/other/hospital \\
        --out outputs/external/other_hospital

It writes ``metrics.csv``, ``report.csv``, ``predictions.csv``, ``skipped.csv``,
``confusion_matrix.png``, ``roc.png`` and ``model_card.md`` to ``--out``. Folders of other names
are read as a class with ``--map FOLDER=CLASS`` (``--map lesions_benign=nv``).

Pointed at the LGG set (``kaggle_3m/`` patient folders with tumour masks, as Kaggle's
mateuszbuda/lgg-mri-segmentation unpacks), it reads each slice's three sequences as greyscale
images, resamples patients for the intervals, and adds the evaluation with source and sequence
held fixed (:mod:`medclass.within_source`): ``within_source.csv`` and ``tumour_size.csv``.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from medclass import datasets, folders, records
from medclass.intervals import clustered_wilson
from medclass.splits import EXTERNAL_SPLITS

NOT_A_DEVICE = (
    "**This model is a teaching example, not a medical device.** It has not been validated "
    "for clinical use and must not be used to diagnose, treat or triage patients."
)


def load_folder(
    root: str | Path, class_names: list[str], mapping: dict[str, str] | None = None
) -> pd.DataFrame:
    """One row per usable image of ``root/<class>/...`` (any depth below the class folder).

    Class folders match ``class_names`` case-insensitively, and so do the folder names the
    registry's datasets use for those classes (:func:`medclass.datasets.folder_labels_for`:
    Kaggle's ``glioma`` is Tumor, PH2's ``melanoma`` is mel); ``mapping`` names more
    (``{"lesions_benign": "nv"}``).
    Anything under a ``masks/`` folder (segmentations, such as the synthetic phantoms carry) is
    not an image to classify and is left out. Unusable files are skipped and listed in
    ``frame.attrs["skipped"]``; folders that hold images but name no class are listed in
    ``frame.attrs["ignored_folders"]``, classes without a usable image in
    ``frame.attrs["empty_classes"]``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"External data folder {root} does not exist.")
    by_name = {name.lower(): name for name in class_names}
    by_name.update(datasets.folder_labels_for(class_names))
    for folder, label in (mapping or {}).items():
        if label not in class_names:
            raise ValueError(
                f"--map {folder}={label}: {label!r} is not one of the model's classes {class_names}."
            )
        by_name[folder.lower()] = label
    found = folders.read_class_folders(root, by_name)
    skipped, ignored = found.skipped, found.ignored
    rows = [{"path": str(path), "label": label, "group": str(path)} for path, label, _, _ in found.images]
    frame = pd.DataFrame(rows, columns=["path", "label", "group"])
    if frame.empty and skipped:
        examples = "; ".join(f"{row['path']}: {row['reason']}" for row in skipped[:3])
        raise ValueError(
            f"The class folders under {root} hold no usable image: all {len(skipped)} file(s) were "
            f"skipped, e.g. {examples}."
        )
    if frame.empty:
        raise ValueError(
            f"No usable images in class folders under {root}. Expected sub-folders named after "
            f"the model's classes: {class_names}"
            + (
                f"; these folders name no class: {ignored} (map them with --map FOLDER=CLASS)."
                if ignored
                else "."
            )
        )
    frame.attrs["skipped"] = pd.DataFrame(skipped, columns=["path", "reason"])
    frame.attrs["ignored_folders"] = ignored
    frame.attrs["empty_classes"] = [name for name in class_names if not (frame["label"] == name).any()]
    return frame


def record_evaluation(
    run_dir: str | Path, output_dir: str | Path, info: dict, results: dict, operating_name: str
) -> Path:
    """Write ``results`` to ``evaluation.json`` beside the model (atomically: a failed write keeps
    the previous file) and add the test metrics to the training run's MLflow record.

    ``results`` holds ``test`` and ``test_at_operating_point`` (metric name -> value), the fitted
    ``temperature``, the ``operating_threshold`` and the ECE ``ece_before``/``ece_after``; the
    operating point's metrics are logged as ``test_<operating_name>_<metric>``. The Streamlit app
    reads the temperature and threshold from this file.
    """
    run_dir = Path(run_dir)
    results = {**results, "model_sha256": records.model_digest(run_dir / "model.keras")}
    records.check_evaluation(results, info["class_names"], "the evaluation's results")
    path = records.write_json(run_dir / "evaluation.json", results)
    if info.get("mlflow_run_id"):
        from medclass import tracking

        tracker = tracking.Tracker(output_dir, run_id=info["mlflow_run_id"])
        tracker.log_metrics({f"test_{name}": value for name, value in results["test"].items()})
        at_operating_point = results["test_at_operating_point"]
        tracker.log_metrics(
            {f"test_{operating_name}_{name}": value for name, value in at_operating_point.items()}
        )
        tracker.log_metrics(
            {
                "temperature": results["temperature"],
                "operating_threshold": results["operating_threshold"],
                "test_ece_before": results["ece_before"],
                "test_ece_after": results["ece_after"],
            }
        )
        tracker.end()
        print(f"test metrics logged to MLflow run {info['mlflow_run_id']}")
    return path


def model_card(info: dict, sections: dict[str, str], title: str) -> str:
    """A model card in markdown: model, data, split, then the given sections, then limits."""
    lines = [
        f"# Model card: {title}",
        "",
        NOT_A_DEVICE,
        "",
        "## Model",
        "",
        f"- Backbone: {info.get('backbone')}"
        + (f" (alpha {info['alpha']})" if info.get("backbone") == "mobilenet_v2" and "alpha" in info else ""),
        f"- Initial weights: {info.get('weights')}",
        f"- Input: RGB images resized inside the model to {info.get('image_size')} px; raw 0-255 pixels in",
        f"- Classes: {', '.join(info.get('class_names', []))}",
        (
            f"- Decision threshold: P({info.get('class_names', ['', '?'])[-1]}) >= {info['threshold']:g}"
            if info.get("threshold") is not None
            else "- Decision rule: the most probable class"
        ),
        f"- MLflow run: {info.get('mlflow_run_id')}",
        "",
        "## Data",
        "",
        f"- Data: {info.get('data')}",
        f"- Split manifest SHA-256: `{info.get('manifest_sha256')}`",
        "",
    ]
    for heading, body in sections.items():
        lines += [f"## {heading}", "", body.strip(), ""]
    lines += [f"_Generated {datetime.date.today().isoformat()} by medclass.report._", ""]
    return "\n".join(lines)


def split_markdown(frame: pd.DataFrame) -> str:
    """Images per split and class (and distinct groups: patients, lesions, duplicates), as
    markdown; a second source's held-out splits (``external_val``, ``external_test``) too."""
    present = set(frame["split"])
    columns = ["train", "val", "test"] + [name for name in EXTERNAL_SPLITS if name in present]
    counts = pd.crosstab(frame["label"], frame["split"]).reindex(columns=columns, fill_value=0)
    rows = [f"| class | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    rows += [f"| {label} | {' | '.join(str(n) for n in row)} |" for label, row in counts.iterrows()]
    groups = frame.groupby("split")["group"].nunique().reindex(counts.columns, fill_value=0)
    rows.append(f"| *distinct groups* | {' | '.join(str(n) for n in groups)} |")
    return "\n".join(rows)


def demote_headings(markdown: str, levels: int = 2) -> str:
    """The same markdown with every heading ``levels`` deeper, to show it inside a chapter."""
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in markdown.splitlines())


def table_markdown(table: pd.DataFrame) -> str:
    """Any table as a markdown pipe table, its index first (floats to three decimals)."""

    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    header = [table.index.name or ""] + [str(column) for column in table.columns]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in table.iterrows():
        label = " / ".join(map(str, name)) if isinstance(name, tuple) else str(name)
        rows.append("| " + " | ".join([label] + [cell(value) for value in row]) + " |")
    return "\n".join(rows)


def metrics_markdown(table: pd.DataFrame) -> str:
    """A metrics table with intervals, as markdown."""
    rows = ["| metric | value | 95% interval |", "|---|---|---|"]
    for name, row in table.iterrows():
        rows.append(f"| {name} | {row['value']:.3f} | {row['ci_low']:.3f} – {row['ci_high']:.3f} |")
    return "\n".join(rows)


def evaluate_folder(
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    batch_size: int = 32,
    seed: int = 0,
    mapping: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Evaluate the model saved in ``model_dir`` on the images of ``data_dir``; write a report.

    The model's probabilities as the app gives them: with the flip averaging and temperature of
    its ``evaluation.json`` and, for a binary model, at the operating threshold chosen there on
    validation (0.5 without one). The same metrics, intervals and figures as the evaluation
    chapters; with images of one class only, just that class's recall. Returns the metrics table.
    """
    import matplotlib

    matplotlib.use("Agg")
    from medclass import calibration, evaluation, pipeline, records, saved_models

    out = Path(out_dir)
    check_out(out, model_dir, data_dir)
    model, info = saved_models.load_model(model_dir)
    class_names = info["class_names"]
    recorded = records.read_evaluation(model_dir, class_names)
    threshold = 0.5
    if len(class_names) == 2 and recorded.get("operating_class") == class_names[1]:
        threshold = recorded["operating_threshold"]
    frame = read_external(data_dir, class_names, mapping)
    print(what_was_read(frame))
    groups = frame["group"].to_numpy() if "patient" in frame else None
    dataset = pipeline.make_dataset(frame, class_names, info["image_size"], batch_size)
    y_true, probabilities = evaluation.predict_probabilities(model, dataset, tta=recorded.get("tta", False))
    probabilities = calibration.apply_temperature(probabilities, recorded.get("temperature", 1.0))
    present = sorted(set(y_true.tolist()))
    if len(present) > 1:
        table = evaluation.headline_metrics(y_true, probabilities, threshold, seed=seed, groups=groups)
    else:  # accuracy is then one class's recall; ROC-AUC and the other class's rate do not exist
        only = class_names[present[0]]
        hits = evaluation.predicted_labels(probabilities, threshold) == y_true
        value, low, high = clustered_wilson(hits, np.arange(len(hits)) if groups is None else groups)
        table = pd.DataFrame(
            {"value": [value], "ci_low": [low], "ci_high": [high]},
            index=pd.Index([f"recall of {only} (the only class present)"], name="metric"),
        )
    write_report(out, frame, table, y_true, probabilities, threshold, info, recorded, data_dir, seed)
    return table


def write_report(out: Path, frame, table, y_true, probabilities, threshold, info, recorded, data_dir, seed):
    """The report's files in ``out``: metrics, per-image predictions, the skipped files, the
    figures and the model card."""
    from medclass import evaluation

    class_names = info["class_names"]
    predicted = evaluation.predicted_labels(probabilities, threshold)
    present = sorted(set(y_true.tolist()))
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "metrics.csv")
    evaluation.classification_report(y_true, probabilities, class_names, threshold).to_csv(out / "report.csv")
    frame.assign(predicted=[class_names[i] for i in predicted]).to_csv(out / "predictions.csv", index=False)
    frame.attrs["skipped"].to_csv(out / "skipped.csv", index=False)
    evaluation.plot_confusion_matrix(y_true, probabilities, class_names, threshold).savefig(
        out / "confusion_matrix.png"
    )
    if len(present) > 1:
        evaluation.plot_roc(y_true, probabilities, class_names=class_names).savefig(out / "roc.png")
    sections = external_sections(frame, data_dir, table, threshold, recorded)
    if "sequence" in frame:
        sections |= within_source_report(frame, probabilities, threshold, out, seed)
    card_info = {**info, "threshold": threshold if len(class_names) == 2 else "the most probable class"}
    (out / "model_card.md").write_text(
        model_card(card_info, sections, f"{info.get('backbone')} on external data")
    )


def check_out(out: Path, model_dir, data_dir) -> None:
    """Refuse, before any inference, an ``--out`` the report cannot or must not write to."""
    if out.resolve() == Path(model_dir).resolve() or (out / "model.keras").exists():
        raise ValueError(
            f"--out {out} holds a model: the report would overwrite its model card. Choose another folder."
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a folder (it is made if missing).")
    if out.resolve().is_relative_to(Path(data_dir).resolve()):
        raise ValueError(
            f"--out {out} lies inside --data {data_dir}: the report's figures would be read as images "
            "by the next run. Choose a folder outside the data."
        )


def what_was_read(frame: pd.DataFrame) -> str:
    """What the command read, and what it left out and why, in a few lines."""
    counts = ", ".join(f"{label} {n}" for label, n in frame["label"].value_counts().sort_index().items())
    lines = [f"read {len(frame)} images: {counts}"]
    skipped = frame.attrs.get("skipped")
    if skipped is not None and len(skipped):
        lines.append(f"skipped {len(skipped)} file(s), listed with why in skipped.csv")
    for folder in frame.attrs.get("ignored_folders", []):
        lines.append(f"not read: {folder} (map it with --map FOLDER=CLASS)")
    for name in frame.attrs.get("empty_classes", []):
        lines.append(f"no images of class {name}: its rates cannot be measured here")
    return "\n".join(lines)


def read_external(data_dir, class_names, mapping) -> pd.DataFrame:
    """A dataset laid out in its own way (LGG: one row per slice and sequence, patients as
    groups) by its own loader, any other folder by :func:`load_folder`."""
    dataset = datasets.laid_out_as(Path(data_dir))
    if dataset is not None:
        if list(class_names) != list(dataset.class_names):
            raise ValueError(
                f"{data_dir} holds {dataset.name} ({', '.join(dataset.class_names)} images); the "
                f"model's classes are {list(class_names)}."
            )
        frame = dataset.read(Path(data_dir))
        frame.attrs["ignored_folders"], frame.attrs["empty_classes"] = [], []
        return frame
    return load_folder(data_dir, class_names, mapping)


def within_source_report(frame, probabilities, threshold, out: Path, seed: int) -> dict[str, str]:
    """The evaluation with source and sequence held fixed, written to ``within_source.csv`` and
    ``tumour_size.csv``, and its model-card section."""
    from medclass import within_source

    table = within_source.sequence_table(frame, probabilities, threshold, seed=seed)
    sizes = within_source.size_table(frame, probabilities, threshold)
    table.to_csv(out / "within_source.csv")
    sizes.to_csv(out / "tumour_size.csv", index=False)
    copies = frame.attrs.get("copied_sequences")
    note = (
        f"\n\n{len(copies)} (patient, sequence) pairs whose channel is the dataset's copy of FLAIR were "
        "left out."
        if copies is not None and len(copies)
        else ""
    )
    return {
        "Source and sequence held fixed": within_source.describe(table, sizes, threshold)
        + "\n\n"
        + within_source.markdown(table)
        + "\n\n"
        + within_source.size_markdown(sizes)
        + "\n\nROC-AUC: 95% bootstrap over patients; sensitivity and specificity: Wilson intervals on "
        "the patients' effective sample size. Matched slices: at least a quarter of the slice is brain, "
        "and the slice lies where the tumours lie (10th to 90th percentile of their positions)." + note
    }


def external_sections(frame, data_dir, table, threshold, recorded) -> dict[str, str]:
    """The external report's model-card sections: what was read, left out and measured."""
    counts = frame["label"].value_counts()
    skipped = frame.attrs["skipped"]
    read = [
        f"{len(frame)} images from `{data_dir}` ({', '.join(f'{n} {c}' for c, n in counts.items())}); "
        f"{len(skipped)} files skipped (listed in `skipped.csv`)."
    ]
    read += [f"- skipped `{row.path}`: {row.reason}" for row in skipped.head(10).itertuples()]
    if frame.attrs["ignored_folders"]:
        read.append(
            f"\nFolders with images that name no class of the model, **not read**: "
            f"{', '.join(f'`{folder}`' for folder in frame.attrs['ignored_folders'])} "
            "(name them with `--map FOLDER=CLASS`)."
        )
    if frame.attrs["empty_classes"]:
        read.append(f"\nNo usable images of: {', '.join(frame.attrs['empty_classes'])}.")
    how = (
        f"Threshold {threshold:.4f}"
        + (" (the operating point chosen on validation)" if threshold != 0.5 else "")
        + f"; test-time flip averaging {'on' if recorded.get('tta') else 'off'}; temperature "
        f"{recorded.get('temperature', 1.0):.3f}. Intervals: 95% bootstrap over "
        + ("patients." if "patient" in frame else "images (this folder carries no patient or lesion ids).")
    )
    return {
        "External evaluation data": "\n".join(read),
        "Metrics on these images": metrics_markdown(table) + "\n\n" + how,
    }


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="folder with model.keras and model.json")
    parser.add_argument("--data", required=True, help="folder with one sub-folder per class")
    parser.add_argument("--out", required=True, help="where the report goes")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FOLDER=CLASS",
        help="read a folder of another name as one of the model's classes (repeatable): --map melanoma=mel",
    )
    args = parser.parse_args(argv)
    mapping = {}
    for item in args.map:
        folder, sep, label = item.partition("=")
        if not sep or not folder or not label:
            parser.error(f"--map {item!r}: write it as FOLDER=CLASS, e.g. --map melanoma=mel")
        mapping[folder] = label
    try:
        table = evaluate_folder(args.model, args.data, args.out, args.batch_size, mapping=mapping)
    except (ValueError, FileNotFoundError) as error:  # each says what to do: no traceback needed
        parser.exit(2, f"medclass.report: {error}\n")
    print(table.round(3).to_string())
    print(f"report written to {args.out}")


if __name__ == "__main__":
    main()
