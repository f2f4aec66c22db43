"""Rebuild BENCHMARKS.md from the per-benchmark markdown files in benchmarks/results/.

    python -m benchmarks.render
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["foundation", "requests_validation", "seed_methods", "peer_methods", "evaluation", "deletion_flow"]

HEADER = """# Benchmarks

Every table below was produced by the command printed above it, on the machine it names; the raw
numbers (every run, the environment, library versions, commit) are in `benchmarks/results/*.json`.
Timings are measurements, never test assertions. Rebuild this page with `python -m benchmarks.render`.
"""


GPU_PLACEHOLDER = """## GPU figures

Empty: no GPU has been available to a benchmark run yet. Every benchmark takes its device from
`FORGETFLOW_DEVICE` (`auto` picks CUDA when present); a GPU run writes `benchmarks/results/gpu.md`,
which replaces this section.
"""


def main() -> None:
    results = ROOT / "benchmarks" / "results"
    parts = [HEADER]
    names = [n for n in ORDER if (results / f"{n}.md").exists()]
    names += sorted(p.stem for p in results.glob("*.md") if p.stem not in ORDER)
    for name in names:
        text = (results / f"{name}.md").read_text().rstrip() + "\n"
        if text.startswith("# "):  # a part with its own title: nest it under this page's title
            text = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines()) + "\n"
        parts.append(text)
    if not (results / "gpu.md").exists():
        parts.append(GPU_PLACEHOLDER)
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts))
    print(f"BENCHMARKS.md: {', '.join(names) or 'no results yet'}")


if __name__ == "__main__":
    main()
