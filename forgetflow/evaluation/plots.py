"""PNG plots of one evaluation (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgetflow.plotting import pyplot as _pyplot

COLORS = {"original": "tab:gray", "candidate": "tab:blue", "reference": "tab:green"}


def _grouped_bars(ax, metrics: dict[str, dict[str, float]], keys: list[str], labels: list[str]) -> None:
    roles = [r for r in ("original", "candidate", "reference") if r in metrics]
    x = np.arange(len(keys))
    width = 0.8 / max(len(roles), 1)
    for i, role in enumerate(roles):
        values = [metrics[role].get(k, np.nan) for k in keys]
        bars = ax.bar(x + (i - (len(roles) - 1) / 2) * width, values, width, label=role, color=COLORS[role])
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 125)  # the band above 100 holds the legend, clear of the bars
    ax.set_yticks(range(0, 101, 20))
    ax.legend(fontsize=8, loc="upper right", ncol=len(roles))


def plot_accuracy_bars(metrics: dict[str, dict[str, float]], path: Path, *, class_request: bool = False) -> Path:
    """Forget/retain/val/test accuracy (and class-wise test accuracy) per model, in percent."""
    plt = _pyplot()
    keys = ["forget_accuracy", "retain_accuracy", "val_accuracy", "test_accuracy"]
    labels = ["forget", "retain", "val", "test"]
    if class_request:
        keys += ["forget_class_test_accuracy", "retain_class_test_accuracy"]
        labels += ["forget-class\ntest", "retain-class\ntest"]
    fig, ax = plt.subplots(figsize=(1.3 * len(keys) + 2, 3.8))
    _grouped_bars(ax, metrics, keys, labels)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy: candidate vs original vs retrained reference")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_mia(metrics: dict[str, dict[str, float]], path: Path) -> Path:
    """The three MIA scores per model; the target for each is the reference's bar."""
    plt = _pyplot()
    keys = ["mia_efficacy", "loss_mia", "entropy_mia"]
    labels = ["MIA-efficacy\n(% forget flagged non-member)", "loss-threshold MIA\n(attack accuracy %)", "entropy MIA\n(% forget flagged member)"]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    _grouped_bars(ax, metrics, keys, labels)
    ax.axhline(50, color="black", lw=0.6, ls=":")
    ax.set_ylabel("%")
    ax.set_title("Membership inference (target = reference value)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_forget_histograms(distributions: dict[str, dict[str, dict[str, np.ndarray]]], path: Path) -> Path:
    """Per-sample loss (log10) and prediction entropy (log10) on the forget set vs the test set, one
    column per model: an unlearned model should look like the reference, whose forget and test
    histograms overlap (it never saw the forget set)."""
    plt = _pyplot()
    roles = [r for r in ("original", "candidate", "reference") if r in distributions]
    fig, axes = plt.subplots(2, len(roles), figsize=(3.6 * len(roles), 5.6), squeeze=False, sharey="row")
    for row, (feature, label) in enumerate((("loss", "log10 cross-entropy"), ("entropy", "log10 prediction entropy"))):
        values = {r: {s: np.log10(np.maximum(distributions[r][s][feature], 1e-12)) for s in ("forget", "test")} for r in roles}
        everything = np.concatenate([v for r in roles for v in values[r].values()])
        bins = np.linspace(everything.min(), everything.max() + 1e-9, 40)
        for col, role in enumerate(roles):
            ax = axes[row][col]
            ax.hist(values[role]["test"], bins=bins, alpha=0.55, density=True, label="test", color="tab:orange")
            ax.hist(values[role]["forget"], bins=bins, alpha=0.55, density=True, label="forget", color=COLORS[role])
            ax.set_xlabel(label, fontsize=8)
            if row == 0:
                ax.set_title(role)
            ax.legend(fontsize=7)
    fig.suptitle("Forget vs test: per-sample loss and entropy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_plots(evaluation, folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "accuracy": plot_accuracy_bars(evaluation.metrics, folder / "accuracy.png", class_request=evaluation.kind == "classes"),
        "mia": plot_mia(evaluation.metrics, folder / "mia.png"),
        "histograms": plot_forget_histograms(evaluation.distributions, folder / "forget_histograms.png"),
    }
