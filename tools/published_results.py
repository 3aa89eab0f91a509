"""The performance appendix's tables of published results, read from the published chapters.

``python -m tools.published_results [--profile cpu]`` reads ``book/published/<profile>/``: each
executed chapter's provenance record (``metadata.medclass``), the tables it recorded with
:func:`medclass.runtime.show_result`, and the models' ``evaluation.json``. It writes
``book/generated/published_results.md``, which ``book/performance.md`` includes. ``make book
PROFILE=cpu`` runs it after publishing, and a test checks that the committed file is what it
writes, so the appendix cannot quote another run than the chapters show.
"""

from __future__ import annotations

import argparse
import json
import numbers
from pathlib import Path

import numpy as np
import pandas as pd

from medclass import case_studies, intervals, report
from medclass.runtime import RESULT_KEY
from tools import chapters, provenance

TARGET = chapters.ROOT / "book" / "generated" / "published_results.md"


def recorded_results(notebook: Path) -> dict[str, pd.DataFrame]:
    """The tables a chapter recorded with :func:`medclass.runtime.show_result`, by name."""
    import nbformat

    document = nbformat.read(notebook, as_version=4)
    tables = {}
    for cell in document.cells:
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get(RESULT_KEY)
            if record:
                split = record["table"]
                index = [tuple(i) if isinstance(i, list) else i for i in split["index"]]
                table = pd.DataFrame(split["data"], index=index, columns=split["columns"])
                table.index.name = " / ".join(name for name in record.get("index_names", []) if name)
                tables[record["name"]] = table
    return tables


def number(value, digits: int = 3) -> str:
    """A value as the appendix prints it: integers with thousands separators, floats rounded,
    a missing value as a dash."""
    if isinstance(value, str):
        return value
    if value is None or pd.isna(value):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{float(value):.{digits}f}"
    return str(value)


def with_interval(row) -> str:
    """``value [low, high]`` from a row with ``ci_low`` and ``ci_high`` and the value first
    (a column ``value``, or the metric's own name)."""
    value = row["value"] if "value" in row.index else row.iloc[0]
    if pd.isna(row.get("ci_low")):
        return number(value)
    return f"{number(value)} [{number(row['ci_low'])}, {number(row['ci_high'])}]"


def markdown_table(frame: pd.DataFrame, index_name: str = "") -> str:
    """A pipe table of ``frame``; a table of values with ``ci_low``/``ci_high`` shows each value
    with its 95% interval in one column, named after the values' column."""
    if {"ci_low", "ci_high"} <= set(frame.columns):
        name = "value" if "value" in frame.columns else frame.columns[0]
        others = [column for column in frame.columns if column not in (name, "ci_low", "ci_high")]
        intervals = frame.apply(with_interval, axis=1).rename(f"{name} [95% interval]")
        frame = pd.concat([intervals, frame[others]], axis=1)
    table = frame.apply(lambda column: column.map(number))
    table.index.name = index_name or frame.index.name or ""
    return report.table_markdown(table)


def split_sizes(table: pd.DataFrame) -> str:
    """Image counts per split from a chapter's split table (a crosstab with margins): either
    (source, split) down and labels across, or labels down and splits across."""
    if isinstance(table.index[0], tuple):
        rows = table[[label[0] != "All" for label in table.index]]
        totals = rows["All"].groupby([label[-1] for label in rows.index], sort=False).sum()
    else:
        totals = table.loc["All"].drop("All")
    order = {"train": 0, "val": 1, "test": 2}
    ranked = sorted(totals.items(), key=lambda item: order.get(item[0], len(order)))
    return ", ".join(f"{name} {int(count):,}" for name, count in ranked)


def kept_epoch(history: pd.DataFrame) -> str:
    """The epoch a training run kept (lowest validation loss), with its validation accuracy."""
    best = history.loc[history["val_loss"].idxmin()]
    return (
        f"validation accuracy {number(best['val_accuracy'])} at the epoch of lowest validation loss "
        f"(epoch {int(best['epoch'])} of {len(history)}, phase {best['phase']})"
    )


def metrics_line(table: pd.DataFrame, names) -> str:
    return "; ".join(f"{name} {with_interval(table.loc[name])}" for name in names if name in table.index)


def headline(chapter: str, results: dict[str, pd.DataFrame], evaluation: dict) -> str:
    """A chapter's headline result in words, made from what it recorded."""
    if chapter == "concepts_02_resnet" and "resnet_training" in results:
        losses = results["resnet_training"]["final training loss"]
        return "final training loss: " + ", ".join(f"{name} {number(v)}" for name, v in losses.items())
    if chapter == "concepts_03_transfer" and "transfer_strategies" in results:
        auc = results["transfer_strategies"].filter(like="ROC-AUC").iloc[:, 0]
        return "validation ROC-AUC: " + ", ".join(f"{name} {number(v)}" for name, v in auc.items())
    if chapter.endswith("_01_data"):
        table = results.get(f"{chapter.split('_')[0]}_split")
        return "" if table is None else "images by split: " + split_sizes(table)
    if chapter.endswith("_02_training"):
        history = results.get(f"{chapter.split('_')[0]}_history")
        return "" if history is None else kept_epoch(history)
    if chapter.endswith("_03_evaluation") and "operating_threshold" not in evaluation:
        return "no evaluation.json beside the published model"
    if chapter == "brain_03_evaluation" and "brain_test" in results:
        text = metrics_line(results["brain_test"], ("accuracy", "ROC-AUC"))
        text += f"; at P(Tumor) ≥ {number(evaluation['operating_threshold'])}: " + metrics_line(
            results["brain_test_operating_point"], ("sensitivity", "specificity")
        )
        if "brain_external" in results:
            external = results["brain_external"].iloc[0]
            text += f"; **external (Br35H held-out tumours): sensitivity {with_interval(external)}**"
        if "brain_lgg" in results:
            text += "; **" + lgg_line(results["brain_lgg"]) + "**"
        return text
    if chapter == "skin_03_evaluation" and "skin_test" in results:
        text = metrics_line(
            results["skin_test"], ("balanced accuracy", "accuracy", "macro-F1", "weighted-F1")
        )
        if "skin_test_prior_rule" in results:
            text += f"; with the prior rule (e = {number(evaluation.get('prior_exponent', float('nan')))}): "
            text += metrics_line(
                results["skin_test_prior_rule"], ("balanced accuracy", "accuracy", "macro-F1")
            )
        text += f"; melanoma at P(mel) ≥ {number(evaluation['operating_threshold'])}: " + metrics_line(
            results["skin_test_operating_point"], ("sensitivity", "specificity")
        )
        if "skin_ph2" in results:
            text += (
                "; **external (PH2, another hospital): "
                + metrics_line(results["skin_ph2"], ("sensitivity", "specificity"))
                + "**"
            )
        return text
    return ""


def lgg_line(table: pd.DataFrame) -> str:
    """The brain model on LGG's held-out patients, where source and sequence are fixed."""
    from medclass import within_source

    rows = {name[1]: row for name, row in table.iterrows() if name[0] == "all slices"}
    sequences = [name for name in rows if name != "all sequences"]
    pooled = rows["all sequences"]
    return (
        "LGG held-out patients (source and sequence fixed): ROC-AUC "
        + ", ".join(f"{name} {within_source.interval(rows[name], 'ROC-AUC')}" for name in sequences)
        + "; at the operating point, all sequences, specificity "
        + within_source.interval(pooled, "specificity")
        + f", sensitivity {within_source.interval(pooled, 'sensitivity')}"
    )


SETTINGS = (  # the training chapters' settings the appendix lists, in this order
    "backbone",
    "alpha",
    "weights",
    "image_size",
    "cache_features",
    "epochs_frozen",
    "epochs_finetune",
    "unfreeze_blocks",
    "finetune_schedule",
    "augmentation",
    "imbalance",
    "learning_rate",
    "batch_size",
    "standardise",
    "br35h_in_training",
    "lgg_in_training",
    "seed",
    "extra_seeds",
)


def settings_table(records: dict[str, dict]) -> str:
    """The published training chapters' settings, side by side, from their provenance records."""
    trained = [name for name in ("brain_02_training", "skin_02_training") if name in records]
    declared = {
        chapter: chapters.notebook_defaults(chapters.ROOT / "notebooks" / f"{chapter}.ipynb")
        for chapter in trained
    }
    frame = pd.DataFrame(
        {
            chapter: {
                key: Path(str(value)).name if key == "weights" and value else value
                for key, value in records[chapter]["parameters"].items()
                if key in SETTINGS and key in declared[chapter]
            }
            for chapter in trained
        }
    ).reindex([key for key in SETTINGS if any(key in records[c]["parameters"] for c in trained)])
    return markdown_table(frame.fillna("–").astype(str), "setting")


def evaluation_sections(results: dict, evaluations: dict) -> list[str]:
    """The evaluation chapters' validation decisions and test results, side by side."""
    lines = []
    for name, title, group, rule in (
        ("brain", "Brain MRI", "duplicate groups", "threshold 0.5"),
        ("skin", "HAM10000", "lesions", "each image its most probable class"),
    ):
        evaluation = evaluations.get(name)
        if evaluation is None or f"{name}_test" not in results:
            continue
        operating = evaluation["operating_class"]
        lines += [
            f"### {title}",
            "",
            f"Decisions on the validation split: test-time augmentation "
            f"{'on' if evaluation['tta'] else 'off'}; temperature {number(evaluation['temperature'])}; "
            f"operating point P({operating}) ≥ {number(evaluation['operating_threshold'])}, chosen "
            f"for a sensitivity of {number(evaluation['target_sensitivity'], 2)}. Expected "
            f"calibration error on the test split {number(evaluation['ece_before'])} before and "
            f"{number(evaluation['ece_after'])} after temperature scaling.",
            "",
            "Test-time augmentation on the validation split:",
            "",
            markdown_table(results[f"{name}_validation_tta"], "metric"),
            "",
            f"Test split ({rule}); {intervals.described(group)}:",
            "",
            markdown_table(results[f"{name}_test"], "metric"),
            "",
            f"Test split at the operating point (P({operating}) ≥ "
            f"{number(evaluation['operating_threshold'])}):",
            "",
            markdown_table(results[f"{name}_test_operating_point"], "metric"),
            "",
        ]
        if f"{name}_external" in results:
            lines += [
                "External tumours (Br35H slices held out from training and selection):",
                "",
                markdown_table(results[f"{name}_external"], "rule"),
                "",
            ]
        if f"{name}_lgg" in results:
            from medclass import within_source

            lines += [
                "LGG's held-out patients, slices with and without tumour from the same patients, "
                "scanners and sequences (ROC-AUC: bootstrap over patients; rates: Wilson intervals on "
                "the patients' effective sample size):",
                "",
                within_source.markdown(results[f"{name}_lgg"]),
                "",
            ]
        if f"{name}_localisation" in results:
            lines += [
                "Where the saliency maps fall on LGG's held-out tumour slices (the peak inside the "
                "tumour mask; the share of the map's energy inside it, beside the mask's share of the "
                "slice):",
                "",
                markdown_table(results[f"{name}_localisation"].set_index(["layer", "method"])),
                "",
            ]
    return lines


# The colour curve of the skin model published before the recipe of issue 17 (class weights,
# top 8 blocks, no colour augmentation), read from its recorded table (skin_03_evaluation at
# commit 75fda16), so that the appendix can set the current curve beside it.
COLOUR_BEFORE = chapters.ROOT / "benchmarks" / "results" / "skin_colour_robustness_before.csv"


def colour_before_and_after(after: pd.DataFrame, before_path: Path = COLOUR_BEFORE) -> pd.DataFrame:
    """The current colour curve beside the earlier recipe's, shift by shift."""
    before = pd.read_csv(before_path).set_index(["shift", "amount"])
    columns = {}
    for metric in ("balanced accuracy", "melanoma sensitivity"):
        columns[f"{metric}, before"] = before[metric]
        columns[f"{metric}, now"] = after[metric].reindex(before.index)
    return pd.DataFrame(columns)


def read_published(profile: str) -> tuple[dict, dict, dict]:
    """``(results, evaluations, records)`` of the published ``profile``: every recorded table by
    name, each case study's ``evaluation.json`` (``brain``, ``skin``), and each chapter's
    provenance record by chapter."""
    import nbformat

    published = chapters.PUBLISHED_DIR / profile
    results, evaluations, records = {}, {}, {}
    for case in case_studies.CASE_STUDIES:
        path = published / "models" / case.dataset / "evaluation.json"
        if path.is_file():
            evaluations[case.name] = json.loads(path.read_text())
    for source in chapters.toc_notebooks():
        notebook = published / source.name
        if notebook.is_file():
            records[source.stem] = nbformat.read(notebook, as_version=4).metadata.get("medclass", {})
            results[source.stem] = recorded_results(notebook)
    return results, evaluations, records


def markdown(profile: str = "cpu", published: tuple | None = None) -> str:
    """The generated appendix section for the published ``profile`` (``published``: what
    :func:`read_published` returned for it, if read already)."""
    by_chapter, evaluations, records = published or read_published(profile)
    results = {name: table for tables in by_chapter.values() for name, table in tables.items()}
    rows = []
    for source in chapters.toc_notebooks():
        if source.stem not in records:
            rows.append(f"| `{source.stem}` | not published | | | |")
            continue
        record = records[source.stem]
        evaluation = evaluations.get(source.stem.split("_")[0], {})
        rows.append(
            f"| `{source.stem}` | {record.get('started', '?').replace('T', ' ')} | "
            f"{record.get('commit', '?')} | {provenance._duration(record.get('seconds', 0))} | "
            f"{headline(source.stem, by_chapter[source.stem], evaluation)} |"
        )
    lines = [
        f"Made by `python -m tools.published_results --profile {profile}` from "
        f"`book/published/{profile}/`: each chapter's provenance record, the tables it printed, "
        "and the models' `evaluation.json`. Intervals are 95% intervals: Wilson score intervals "
        "for accuracy, sensitivity and specificity, a percentile bootstrap for the other metrics.",
        "",
        "| chapter | started (UTC) | commit | run time | headline result (test split unless said) |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    if {"brain_02_training", "skin_02_training"} & set(records):
        lines += ["### The case studies' training settings", "", settings_table(records), ""]
    if "transfer_strategies" in results:
        lines += [
            "### Transfer learning (`concepts_03_transfer`), validation split",
            "",
            markdown_table(results["transfer_strategies"]),
            "",
        ]
    if "resnet_training" in results:
        lines += [
            "### Residual networks (`concepts_02_resnet`)",
            "",
            markdown_table(results["resnet_training"], "network"),
            "",
        ]
    lines += evaluation_sections(results, evaluations)
    for name, title in SKIN_EXTRAS:
        if name in results:
            lines += [title, "", markdown_table(results[name]), ""]
    if "skin_colour_robustness" in results and COLOUR_BEFORE.is_file():
        lines += [
            "The colour curve before and now: before is the model published at 75fda16 (class "
            "weights, the top 8 blocks fine-tuned, no colour augmentation), on the same sample "
            "of the same test split:",
            "",
            markdown_table(colour_before_and_after(results["skin_colour_robustness"])),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


SKIN_EXTRAS = (  # the skin evaluation's further tables, in the order the chapter shows them
    (
        "skin_test_prior_rule",
        "HAM10000 test split with the prior rule (the class frequencies raised to the exponent chosen "
        "on validation), intervals over lesions:",
    ),
    (
        "skin_reference_comparison",
        "Against the reference (its numbers as reported, for an image-level split; ours on the "
        "lesion-grouped test split, with both rules):",
    ),
    (
        "skin_seed_study",
        "The seed study: the recipe trained with other seeds on the same split, each model's test "
        "split at its most probable class, and the ensemble of their mean probabilities:",
    ),
    (
        "skin_subgroups_sex",
        "HAM10000 test split by sex (intervals over lesions; melanoma sensitivity at the operating point):",
    ),
    ("skin_subgroups_age_band", "By age band:"),
    ("skin_subgroups_body_site", "By body site:"),
    (
        "skin_colour_robustness",
        "HAM10000 test split under colour shifts (no flip averaging; every melanoma and at most 100 "
        "test images of each other class, the same at every point):",
    ),
    ("skin_ph2", "PH2 (another hospital), melanoma vs rest at the operating point, intervals over images:"),
    ("skin_ph2_called", "What the model calls PH2's images:"),
)


def headlines(profile: str = "cpu", published: tuple | None = None) -> dict[str, str]:
    """One paragraph per case study (``brain_mri``, ``ham10000``) that its introduction page
    includes: the evaluation chapter's headline of the published run (:func:`headline`),
    internal and external (``published`` as for :func:`markdown`)."""
    by_chapter, evaluations, _ = published or read_published(profile)
    paragraphs = {}
    for case in case_studies.CASE_STUDIES:
        dataset, chapter, groups = case.dataset, case.chapter("evaluation"), case.interval_unit
        evaluation = evaluations.get(case.name, {})
        text = headline(chapter, by_chapter.get(chapter, {}), evaluation) if evaluation else ""
        paragraphs[dataset] = (
            f"In the published `{profile}` run, on the test split unless said: {text}. "
            f"95% intervals over {groups}."
            if text
            else f"No `{profile}` run of this case study is published yet: `make book PROFILE={profile} "
            "DATA_DIR=...` publishes one."
        )
    return {name: paragraph + "\n" for name, paragraph in paragraphs.items()}


def headline_path(dataset: str, folder: Path = TARGET.parent) -> Path:
    """Where the headline paragraph of a case study (``brain_mri``, ``ham10000``) goes."""
    return folder / f"published_headline_{dataset}.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="a folder of book/published/ (default: cpu)")
    parser.add_argument("--output", type=Path, default=TARGET, help=f"default: {TARGET}")
    args = parser.parse_args(argv)
    published = read_published(args.profile)  # ten notebooks of several MB: read them once
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(args.profile, published))
    print(f"wrote {args.output}")
    for dataset, paragraph in headlines(args.profile, published).items():
        path = headline_path(dataset, args.output.parent)
        path.write_text(paragraph)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
