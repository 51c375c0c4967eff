"""Text tables (and one picture) for `ftcli eval`: base vs tuned, per class, and across runs."""

from __future__ import annotations

from pathlib import Path


def table(header: list[str], rows: list[list[str]]) -> str:
    """A plain aligned table: first column left, the rest right."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _with_stderr(results: dict, side: str, name: str) -> str:
    """A value, and its standard error where one was measured (lm-evaluation-harness metrics)."""
    value = results.get(side, {}).get(name)
    error = results.get("stderr", {}).get(side, {}).get(name)
    return _number(value) + (f" ± {error:.4f}" if error is not None and value is not None else "")


def metrics_table(results: dict) -> str:
    """Base, tuned and the change, one metric a row."""
    tuned, base = results["tuned"], results.get("base")
    header = ["metric"] + (["base", "tuned", "change"] if base else ["tuned"])
    rows = []
    for name, value in tuned.items():
        row = [name]
        if base:
            row += [_with_stderr(results, "base", name), _with_stderr(results, "tuned", name),
                    f"{value - base[name]:+.4f}" if name in base else "-"]
        else:
            row.append(_with_stderr(results, "tuned", name))
        rows.append(row)
    return f"{results['run']}  ({results.get('examples', '?')} eval examples)\n{table(header, rows)}"


def results_text(results: dict) -> str:
    """What `ftcli eval` prints: the metrics table, a classifier's per-class report and confusion
    matrix, and a few generated samples."""
    parts = [metrics_table(results)]
    details = results["tuned_details"]
    if "per_class" in details:
        parts.append("\ntuned model, per class:\n" + per_class_table(details["per_class"]))
        parts.append("\n" + confusion_table(details["confusion_matrix"], details["labels"]))
        parts.append(f"(confusion matrix picture: {results['confusion_matrix_png']})")
    for sample in details.get("samples", [])[:3]:
        parts.append(f"\nprompt:    {sample['prompt']}\nreference: {sample['reference']}\n"
                     f"generated: {sample['generated']}")
    return "\n".join(parts)


def per_class_table(report: dict) -> str:
    """precision / recall / f1 / support per label, from `per_class_report`."""
    rows = [[label, _number(r["precision"]), _number(r["recall"]), _number(r["f1"]), str(r["support"])]
            for label, r in report.items()]
    return table(["label", "precision", "recall", "f1", "support"], rows)


def per_class_report(references: list[int], predictions: list[int], labels: list[str]) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(references, predictions, labels=list(range(len(labels))),
                                                 zero_division=0)
    return {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, label in enumerate(labels)}


def confusion(references: list[int], predictions: list[int], n: int) -> list[list[int]]:
    """matrix[true][predicted] counts."""
    matrix = [[0] * n for _ in range(n)]
    for true, predicted in zip(references, predictions):
        matrix[true][predicted] += 1
    return matrix


def confusion_table(matrix: list[list[int]], labels: list[str]) -> str:
    rows = [[f"true {label}"] + [str(c) for c in row] for label, row in zip(labels, matrix)]
    return table(["(rows: true, columns: predicted)"] + labels, rows)


def confusion_png(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    from ftcli.reporting.plots import pyplot

    plt = pyplot()
    size = max(3.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare_table(results: list[dict]) -> str:
    """One row per run, one column per metric (tuned model), plus each run's base where known."""
    names = list(dict.fromkeys(name for r in results for name in r["tuned"]))
    rows = [[Path(r["run"]).name] + [_number(r["tuned"].get(n)) for n in names] for r in results]
    return table(["run"] + names, rows)
