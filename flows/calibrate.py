"""calibrate: choose the method ladders on this workspace's own champion and data (see
forgetflow/calibration.py), write `.forgetflow/calibration.json` and log the trials to MLflow.

Runs after `forgetflow bootstrap --calibrate`, by hand (`forgetflow calibrate`), or on its own
schedule under `forgetflow serve` (`service.calibration_cron`)."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from forgetflow.service.limits import ensure_limits
from forgetflow.settings import load_settings
from tasks.calibration import calibrate_methods


@flow(name="forgetflow-calibrate", flow_run_name="calibrate", log_prints=True)
def calibrate(workspace: str, kinds: list[str] | None = None, max_configs: int = 3, max_time_ratio: float = 0.25, seed: int = 0, progress: bool = True) -> dict:
    ensure_limits(load_settings(workspace))
    result = calibrate_methods(workspace, kinds, max_configs, max_time_ratio, seed, progress)
    create_markdown_artifact(key="calibration", markdown=summary_markdown(result), description=f"forgetflow {result['calibration_id']}")
    return result


def summary_markdown(result: dict) -> str:
    lines = [f"# Calibration `{result['calibration_id']}`", "", f"On champion v{result['champion_version']}, data `{result['data_md5']}`, {result['seconds']:.0f} s.", "", "| kind | goal | ladder |", "|---|---|---|"]
    for kind, goals in sorted(result["ladders"].items()):
        for goal, rungs in sorted(goals.items()):
            ladder = " -> ".join(f"`{r['method']}`" + (f" {r['config']}" if r["config"] else "") for r in rungs)
            lines.append(f"| {kind} | {goal} | {ladder} |")
    lines += [""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
