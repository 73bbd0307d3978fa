"""The evaluation report: "Performance evaluation" as Markdown, JSON and plots in one folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from callmood.training.evaluate import EvaluationResult

REPORT_MARKDOWN = "report.md"
REPORT_JSON = "report.json"
CONFUSION_PNG = "confusion_matrix.png"
FOLDS_PNG = "fold_ua.png"
PREDICTIONS_CSV = "predictions.csv"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def render_markdown(result: EvaluationResult) -> str:
    """The report as Markdown: protocol, summary table, per-class recall, folds, confusion."""
    summary = result.summary
    mean, std = summary.mean, summary.std
    lines = [
        "# Performance evaluation",
        "",
        f"**Protocol:** {result.protocol}: {result.description}.",
        "",
        f"Classes: {', '.join(result.classes)}. Every test clip is predicted whole. "
        "UA = unweighted average recall (mean of per-class recalls), WA = accuracy.",
        "",
        "| metric | mean over folds (%) | std (%) | pooled (%) |",
        "|---|---|---|---|",
    ]
    pooled = summary.pooled
    for name, title in (
        ("unweighted_average_recall", "UA"),
        ("weighted_accuracy", "WA"),
        ("macro_f1", "macro-F1"),
    ):
        lines.append(
            f"| {title} | {_percent(mean[name])} | {_percent(std[name])} "
            f"| {_percent(getattr(pooled, name))} |"
        )
    lines += [
        "",
        f"{len(result.folds)} fold(s), {pooled.num_examples} test clips, "
        f"{result.seconds / 60:.1f} min.",
        "",
        "## Recall per class (pooled over folds)",
        "",
        "| class | recall (%) | test clips |",
        "|---|---|---|",
    ]
    for label in result.classes:
        recall = pooled.per_class_recall.get(label)
        shown = "-" if recall is None else _percent(recall)
        lines.append(f"| {label} | {shown} | {pooled.support[label]} |")
    per_corpus = result.per_corpus()
    if per_corpus:
        lines += [
            "",
            "## Per corpus (pooled over folds)",
            "",
            "| corpus | test clips | UA (%) | WA (%) |",
            "|---|---|---|---|",
        ]
        for corpus, metrics in per_corpus.items():
            lines.append(
                f"| {corpus} | {metrics.num_examples} "
                f"| {_percent(metrics.unweighted_average_recall)} "
                f"| {_percent(metrics.weighted_accuracy)} |"
            )
    lines += [
        "",
        "## Folds",
        "",
        "| fold | test groups | train / val / test clips | epochs (best) | UA (%) | WA (%) |",
        "|---|---|---|---|---|---|",
    ]
    for fold in result.folds:
        groups = ", ".join(fold.test_groups)
        if len(groups) > 60:
            groups = f"{len(fold.test_groups)} groups"
        lines.append(
            f"| {fold.name} | {groups} | {fold.num_train} / {fold.num_validation} / "
            f"{fold.num_test} | {fold.epochs_run} ({fold.best_epoch}) "
            f"| {_percent(fold.metrics.unweighted_average_recall)} "
            f"| {_percent(fold.metrics.weighted_accuracy)} |"
        )
    as_calls = [fold.call_metrics for fold in result.folds if fold.call_metrics is not None]
    if len(as_calls) == len(result.folds) and as_calls:
        ua = [m.unweighted_average_recall for m in as_calls]
        wa = [m.weighted_accuracy for m in as_calls]
        lines += [
            "",
            "## As calls (caller normalisation over each test speaker's clips)",
            "",
            "Each test speaker's clips in id order as one call through one running caller "
            "normaliser, as `callmood analyze` would normalise them (only earlier clips and "
            "the clip itself are used). The tables above judge every clip as the first "
            "window of a call of its own.",
            "",
            "| fold | UA (%) | WA (%) |",
            "|---|---|---|",
        ]
        for fold, metrics in zip(result.folds, as_calls, strict=True):
            lines.append(
                f"| {fold.name} | {_percent(metrics.unweighted_average_recall)} "
                f"| {_percent(metrics.weighted_accuracy)} |"
            )
        lines.append(f"| mean | {_percent(float(np.mean(ua)))} | {_percent(float(np.mean(wa)))} |")
    ensemble = result.details.get("ensemble")
    if ensemble:
        lines += [
            "",
            "## Ensemble members (their class probabilities are averaged per clip)",
            "",
            "| report | seed | mean UA (%) |",
            "|---|---|---|",
        ]
        for folder, seed, ua in zip(
            ensemble["members"], ensemble["member_seeds"], ensemble["member_mean_ua"], strict=True
        ):
            lines.append(f"| {folder} | {'-' if seed is None else seed} | {_percent(ua)} |")
    lines += [
        "",
        "## Confusion matrix (pooled; rows = true class, columns = predicted)",
        "",
        "| true \\ predicted | " + " | ".join(result.classes) + " |",
        "|---" * (len(result.classes) + 1) + "|",
    ]
    for label, row in zip(result.classes, pooled.confusion, strict=True):
        lines.append(f"| {label} | " + " | ".join(str(int(v)) for v in row) + " |")
    lines += ["", f"![confusion matrix]({CONFUSION_PNG})", ""]
    if len(result.folds) > 1:
        lines += [f"![UA per fold]({FOLDS_PNG})", ""]
    return "\n".join(lines)


def plot_confusion(confusion: np.ndarray, labels: tuple[str, ...], path: Path) -> None:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    size = max(4.0, 0.8 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = "white" if share[i, j] > 0.5 else "black"
            axis.text(j, i, f"{confusion[i, j]}", ha="center", va="center", color=colour)
    axis.set_title("Confusion matrix (rows: true class)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_fold_ua(result: EvaluationResult, path: Path) -> None:
    """UA and WA of each fold as bars, with the mean UA as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [fold.name for fold in result.folds]
    ua = [fold.metrics.unweighted_average_recall for fold in result.folds]
    wa = [fold.metrics.weighted_accuracy for fold in result.folds]
    positions = np.arange(len(names))
    figure, axis = plt.subplots(figsize=(max(5.0, 0.6 * len(names) + 2), 4))
    axis.bar(positions - 0.2, ua, width=0.4, label="UA")
    axis.bar(positions + 0.2, wa, width=0.4, label="WA")
    axis.axhline(result.summary.mean["unweighted_average_recall"], color="black", linewidth=1)
    axis.set_xticks(positions, names, rotation=45, ha="right")
    axis.set_ylim(0, 1)
    axis.set_title("UA and WA per fold (line: mean UA)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(result: EvaluationResult, output_dir: Path) -> Path:
    """Write ``report.md``, ``report.json``, ``predictions.csv`` and the plots into `output_dir`.

    Returns the path of ``report.md``.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / REPORT_JSON).write_text(
        json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8"
    )
    write_predictions(result, output_dir / PREDICTIONS_CSV)
    plot_confusion(result.summary.pooled.confusion, result.classes, output_dir / CONFUSION_PNG)
    if len(result.folds) > 1:
        plot_fold_ua(result, output_dir / FOLDS_PNG)
    markdown = output_dir / REPORT_MARKDOWN
    markdown.write_text(render_markdown(result), encoding="utf-8")
    return markdown


def write_predictions(result: EvaluationResult, path: Path) -> None:
    """One row per test clip: fold, clip, corpus, speaker, label, prediction, probabilities."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["fold", "clip", "corpus", "speaker", "label", "predicted"]
            + [f"p_{name}" for name in result.classes]
        )
        for fold in result.folds:
            for clip in fold.predictions:
                writer.writerow(
                    [
                        fold.name,
                        clip.clip,
                        clip.corpus_name,
                        clip.speaker,
                        clip.label,
                        clip.predicted,
                    ]
                    + [f"{p:.5f}" for p in clip.probabilities]
                )
