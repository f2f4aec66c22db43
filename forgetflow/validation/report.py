"""The human-readable validation report: `<workspace>/reports/validation/<request_id>.md`.

Like the ledger summary it holds counts and rule names only, never sample or subject IDs.
"""

from __future__ import annotations

from pathlib import Path

from forgetflow.validation.suites import LEVELS, RuleResult

_LEVEL_TITLES = {"request": "Request", "forget_set": "Forget set", "safety": "Safety limits", "dataset": "Dataset version"}


def report_dir(workspace: Path) -> Path:
    return Path(workspace) / "reports" / "validation"


def render_report(*, request_id: str, kind: str, goal: str, n_targets: int, dataset: str, data_version: str | None, validated_at: str, forget_summary: dict, limits: dict, results: list[RuleResult]) -> str:
    failed = [r for r in results if not r.success]
    verdict = "PASSED" if not failed else f"FAILED ({len(failed)} of {len(results)} expectations)"
    lines = [
        f"# Forget-set validation: request `{request_id}`",
        "",
        f"**{verdict}**",
        "",
        "| | |",
        "|---|---|",
        f"| request | `{request_id}` ({kind}, goal `{goal}`, {n_targets} targets) |",
        f"| dataset | `{dataset}`, data version `{data_version or 'not tracked by DVC'}` |",
        f"| validated at | {validated_at} |",
        f"| forget set | {forget_summary['n_samples']} samples ({', '.join(f'{k}: {v}' for k, v in forget_summary['splits'].items()) or 'none'}) |",
        f"| forget-set hash | `{forget_summary['content_hash']}` |",
        f"| limits | {', '.join(f'{k} = {v}' for k, v in limits.items())} |",
        "",
    ]
    for level in LEVELS:
        mine = [r for r in results if r.level == level]
        if not mine:
            continue
        lines += [f"## {_LEVEL_TITLES[level]}", "", "| result | rule | checks | Great Expectations | rows | unexpected | observed |", "|---|---|---|---|---|---|---|"]
        for r in mine:
            mark = "pass" if r.success else ("**ERROR**" if r.error else "**FAIL**")
            lines.append(
                f"| {mark} | `{r.rule}` | {r.description} | {r.expectation} | {r.counts.get('element_count', '')} | {r.counts.get('unexpected_count', '')} | {r.counts.get('observed_value', '')} |"
            )
        lines.append("")
    lines += ["Counts only: the offending values (sample or subject IDs) are never written here or to the ledger.", ""]
    return "\n".join(lines)
