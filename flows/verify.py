"""verify_pending: the second clock on its own. A reference retrained on the data after every
pending batch verifies the provisional champion on each pending forget set and their union; pass
-> verified and erased, fail -> the reference is promoted (README "Two clocks"). Served on the
reference policy's schedule (`forgetflow serve`), or run by hand (`forgetflow verify`)."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from forgetflow.service.limits import device_slot, ensure_limits, workspace_slot
from forgetflow.settings import load_settings
from tasks.verification import verify_workspace


def _run_name() -> str:
    from datetime import datetime, timezone

    return f"verify-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


@flow(name="forgetflow-verify", flow_run_name=_run_name, log_prints=True)
def verify_pending(workspace: str, if_due: bool = False, progress: bool = False, wait_s: float | None = None) -> dict:
    """`if_due` (the served deployment): only when a quarantine deadline is near or the policy's
    schedule says so; by hand it always runs. `wait_s` as for process_deletions."""
    settings = load_settings(workspace)
    ensure_limits(settings)
    with workspace_slot(settings, wait_s=wait_s, purpose=f"verify (flow run {flow_run.id})"), device_slot(settings):
        summary = verify_workspace(workspace, if_due, progress, wait_s or 0.0)
    create_markdown_artifact(key="verification", markdown=summary_markdown(summary), description="forgetflow verification")
    return summary


def summary_markdown(summary: dict) -> str:
    lines = [f"# Verification: {summary['status']}", ""]
    if summary["status"] in ("nothing-pending", "not-due"):
        return "\n".join(lines + [f"pending batches: {len(summary.get('pending', []))}"]) + "\n"
    lines += ["| | |", "|---|---|", f"| why | {summary['why']} |", f"| checked | v{summary['checked_version']} |", f"| champion now | v{summary['champion_version']} |"]
    for batch_id, result in summary["batches"].items():
        lines.append(f"| {batch_id} | {'verified' if result['passed'] else 'FAILED: ' + '; '.join(result['reasons'])[:300].replace('|', '/')} |")
    for category, result in summary["union"].items():
        lines.append(f"| union ({category}) | {'pass' if result['passed'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"
