"""The audit report's two figures: the lineage graph and the metric trend over the champion chain."""

from __future__ import annotations

import textwrap
from pathlib import Path

from forgetflow.deletion.batch_record import RETAIN_AWARE_METRIC
from forgetflow.report_format import test_accuracy

ROLE_COLOURS = {"bootstrap": "#4c72b0", "adopted": "#8172b2", "candidate": "#55a868", "reference": "#dd8452"}


def _role(tags: dict) -> str:
    return tags.get("role", tags.get("stage", "bootstrap"))


def plot_lineage(versions: dict[str, dict], path: Path) -> Path:
    """Versions left to right (references in the lower lane), parent -> child arrows, dashed
    arrows from each reference to the candidate it judged, a legend for colours and lines."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from forgetflow.plotting import pyplot

    plt = pyplot()
    ordered = sorted(versions, key=int)
    fig, ax = plt.subplots(figsize=(max(7, 1.9 * len(ordered)), 4.2))
    position = {}
    for x, version in enumerate(ordered):
        tags = versions[version]["tags"]
        role = _role(tags)
        y = 0 if role == "reference" else 1
        position[version] = (x, y)
        method = "\n".join(textwrap.wrap(tags.get("method", "train").replace("+", " + "), 16)) or "train"
        label = f"v{version}\n{method}\n{tags.get('data_md5', '')[:8]}"
        if versions[version]["aliases"]:
            label += "\n@" + ",".join(versions[version]["aliases"])
        withdrawn = tags.get("weights") in ("quarantined", "deleted")
        ax.text(x, y, label, ha="center", va="center", fontsize=7.5,
                bbox={"boxstyle": "round", "facecolor": ROLE_COLOURS.get(role, "#999"), "alpha": 0.3 if tags.get("superseded_by_erasure") else 0.9,
                      "hatch": "//" if withdrawn else None, "edgecolor": "#333"})
    for version in ordered:
        tags = versions[version]["tags"]
        parent = tags.get("parent_version")
        if parent in position:
            (x0, y0), (x1, y1) = position[parent], position[version]
            ax.annotate("", xy=(x1 - 0.32, y1), xytext=(x0 + 0.32, y0), arrowprops={"arrowstyle": "->", "color": "#444"})
        judged_by = tags.get("reference_version")
        if judged_by in position:
            (x0, y0), (x1, y1) = position[judged_by], position[version]
            ax.annotate("", xy=(x1, y1 - 0.3), xytext=(x0, y0 + 0.3), arrowprops={"arrowstyle": "->", "color": "#dd8452", "linestyle": "--"})
    handles = [Patch(facecolor=c, label=r) for r, c in ROLE_COLOURS.items()]
    handles += [Patch(facecolor="#bbb", alpha=0.3, label="superseded (data erased)"), Patch(facecolor="white", hatch="//", edgecolor="#333", label="weights withdrawn"),
                Line2D([], [], color="#444", label="parent -> child"), Line2D([], [], color="#dd8452", linestyle="--", label="reference judged candidate")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=4, fontsize=7.5, frameon=False)
    ax.set_xlim(-0.8, len(ordered) - 0.2)
    ax.set_ylim(-0.8, 1.8)
    ax.axis("off")
    ax.set_title("Model lineage")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def retain_aware(metrics: dict) -> float | None:
    """Accuracy on the classes still trained on (falls back to test accuracy: all classes kept)."""
    return metrics.get(RETAIN_AWARE_METRIC, test_accuracy(metrics))


def plot_trends(versions: dict[str, dict], chain: list[str], path: Path) -> Path:
    """Test and retain-aware accuracy along the champion chain (oldest first, one tick per version),
    with each batch's reference as a marker at the candidate it judged."""
    from forgetflow.plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    xs = list(range(len(chain)))
    for getter, label, style in ((test_accuracy, "test accuracy (all classes)", "o-"), (retain_aware, "retain-aware accuracy (classes still trained on)", "s--")):
        points = [(x, getter(versions[v]["metrics"])) for x, v in zip(xs, chain)]
        points = [(x, y) for x, y in points if y is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label, markersize=5)
    refs = []
    for x, version in zip(xs, chain):
        ref = versions[version]["tags"].get("reference_version")
        if ref in versions and ref not in chain and retain_aware(versions[ref]["metrics"]) is not None:
            refs.append((x, retain_aware(versions[ref]["metrics"])))
    if refs:
        ax.scatter([r[0] for r in refs], [r[1] for r in refs], marker="*", s=110, color="#dd8452", zorder=3, label="reference (retrained), retain-aware")
    changed = [x for x, v in zip(xs, chain) if versions[v]["tags"].get("test_split_changed") == "True"]
    for index, x in enumerate(changed):
        ax.axvline(x - 0.5, color="#999", linestyle=":", linewidth=1, label="test split changed" if index == 0 else None)
    ax.set_xticks(xs, [f"v{v}" for v in chain])
    ax.set_xlabel("champion chain (oldest first)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy along the champion chain")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=7.5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
