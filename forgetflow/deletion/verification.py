"""The second clock: a reference trained on the data after every pending batch verifies the
champion on each pending batch's forget set, and on their union.

    verify_pending(settings, state)            # inside a deletion batch that trained a reference
    run_verification(settings, if_due=False)   # on its own (`forgetflow verify`, its own deployment)

Pass: the pending batches are marked `verified` (ledger, model-version tags), then erased.
Fail: the reference is promoted (it honours every request), the failing batches are recorded as
`verification-failed`, and all pending forget sets are erased.

Crash safety: each step is recorded before the next starts (the batch state, or the run's own
state file under `.forgetflow/verifications/`); a batch is marked `verified` in its own state
before its erasure starts, and erasure is idempotent, so a killed run resumes and loses nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forgetflow.deletion.batch import BatchState, crash_point, open_batches
from forgetflow.deletion.quarantine import forced_verification, pending_batches
from forgetflow.errors import ForgetflowError
from forgetflow.params import load_params
from forgetflow.settings import Settings
from forgetflow.workspace import write_atomic


# Checking the champion on every pending forget set -------------------------------------------------
def _concat(parts: list):
    from forgetflow.data.store import LoadedSplit

    return LoadedSplit(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]), np.concatenate([p.sample_ids for p in parts]))


def check_pending(settings: Settings, subject, reference, pending: list[BatchState], *, dataset: str, note: str = "") -> dict:
    """Gate `subject` against `reference` on each pending batch's forget-goal groups (each batch
    separately) and on the union of all of them (per category). Only aggregate numbers are kept."""
    from forgetflow.data.store import DatasetVersion
    from forgetflow.deletion.objects import materialise_version
    from forgetflow.deletion.pipeline import _train_part
    from forgetflow.evaluation.config import evaluation_params
    from forgetflow.evaluation.evaluate import evaluate_candidate

    eval_params = evaluation_params(load_params(settings.params_path))
    new = DatasetVersion(settings.data_dir / dataset)
    splits = {name: new.load(name) for name in ("train", "val", "test")}
    device = settings.resolved_device()

    def judge(forget, kind: str, classes) -> dict:
        evaluation = evaluate_candidate(
            None, subject, reference, forget=forget, retain=splits["train"], val=splits["val"], test=splits["test"],
            request_kind=kind, goal="forget", forget_classes=classes, params=eval_params, reference_required=True, reference_note=note, device=device,
        )
        numbers = {k: round(float(v), 4) for k, v in evaluation.metrics["candidate"].items() if k in ("forget_accuracy", "mia_efficacy", "test_accuracy") and v == v}
        gap = evaluation.summary.get("candidate_avg_gap")
        if gap is not None and gap == gap:
            numbers["avg_gap"] = round(float(gap), 4)
        return {"passed": evaluation.decision.passed, "reason": evaluation.decision.reason, "n_forget": int(len(forget.labels)), "metrics": numbers}

    batches, union = {}, {"instances": [], "classes": []}
    for state in pending:
        versioned = state.steps["versioned"]
        old = materialise_version(settings, versioned["dataset"], versioned["md5_before"])
        groups = []
        for run in state.steps["unlearned"]["runs"]:
            if "skipped" in run or run["goal"] != "forget":
                continue
            forget = _train_part(old, run["sample_ids"])
            if len(forget.labels) == 0:
                continue
            classes = sorted(set(forget.labels.tolist())) if run["category"] == "classes" else None
            groups.append({"category": run["category"], **judge(forget, run["kind"], classes)})
            union[run["category"]].append(forget)
        batches[state.batch_id] = {"passed": all(g["passed"] for g in groups), "groups": groups}
    unions = {}
    if len(pending) > 1:  # the union of one batch is that batch
        for category, parts in union.items():
            if parts:
                forget = _concat(parts)
                classes = sorted(set(forget.labels.tolist())) if category == "classes" else None
                unions[category] = judge(forget, "classes" if category == "classes" else "samples", classes)
    union_passed = all(u["passed"] for u in unions.values())
    for result in batches.values():  # a failed union cannot be pinned on one batch: it fails them all
        result["passed"] = result["passed"] and union_passed
    return {"batches": batches, "union": unions, "passed": all(r["passed"] for r in batches.values())}


def settle(settings: Settings, pending: list[BatchState], checked: dict, *, verification_id: str, reference_version: str | None, honoured_by: str | None, keep_references: list[str]) -> list[str]:
    """Record each pending batch's verdict (ledger, version tags, its own state), then erase it.
    Returns the batch IDs erased."""
    from forgetflow.deletion.pipeline import record_events
    from forgetflow.deletion.promotion import erase
    from forgetflow.deletion.registry import tag_version

    erased = []
    for state in pending:
        result = checked["batches"].get(state.batch_id, {"passed": False, "groups": []})
        verdict = "verified" if result["passed"] else "verification-failed"
        if not state.done("verified"):
            reasons = "; ".join(g["reason"] for g in result["groups"] if not g["passed"]) or ("union of the pending forget sets failed" if not result["passed"] else "all checks passed")
            fields = {"verification_id": verification_id, "reference_version": reference_version, "checked_version": checked.get("subject_version"), "reason": reasons[:500]}
            if honoured_by is not None:
                fields["honoured_by_version"] = honoured_by
            record_events(settings, verdict, state.batch_id, state.steps["validated"]["valid"], lambda _: fields, unless=("verified", "verification-failed"))
            tag_version(settings, state.steps["promoted"]["champion"], {"verification": "verified" if result["passed"] else "failed", "verified_by": verification_id})
            crash_point("verification-recorded")
            state.record(settings, "verified", {"passed": result["passed"], "verification_id": verification_id, "at": time.time(), "honoured_by": honoured_by, "keep_references": keep_references})
        erase(settings, state)
        crash_point("verification-erased-one")
        erased.append(state.batch_id)
    return erased


# Inside a deletion batch ---------------------------------------------------------------------------
def verify_pending(settings: Settings, state: BatchState) -> dict:
    """After a batch with a reference promoted: verify the batches waiting in quarantine with it.

    The model checked is the one that carried their requests: the new champion when it descends
    from them (the candidate), else the provisional champion it replaced (the batch's parent)."""
    if state.done("verified_pending"):
        return state.steps["verified_pending"]
    ref = state.steps["reference"]
    if "checkpoint" not in ref:
        return {"pending": [], "note": "no reference in this batch"}
    plan = state.steps.get("verify_plan") or state.record(settings, "verify_plan", {"pending": [b.batch_id for b in pending_batches(settings) if b.batch_id != state.batch_id]})
    if not plan["pending"]:
        return state.record(settings, "verified_pending", {"pending": [], "passed": True})
    from forgetflow.deletion.registry import set_alias, tag_version
    from forgetflow.models import load_checkpoint

    pending = [BatchState.load(settings, b) for b in plan["pending"]]
    registered, promoted, unlearned = state.steps["registered"], state.steps["promoted"], state.steps["unlearned"]
    candidate_is_champion = str(promoted["champion"]) == str(registered["candidate"]["version"])
    checked = state.steps.get("pending_checked")
    if checked is None:
        subject_path = unlearned["checkpoint"] if candidate_is_champion else unlearned["champion_checkpoint"]
        subject_version = promoted["champion"] if candidate_is_champion else unlearned["parent_version"]
        subject, _ = load_checkpoint(Path(subject_path))
        reference, _ = load_checkpoint(Path(ref["checkpoint"]))
        checked = check_pending(settings, subject, reference, [b for b in pending if not b.done("verified")], dataset=state.steps["versioned"]["dataset"], note=f"verification in {state.batch_id}")
        checked["subject_version"] = str(subject_version)
        state.record(settings, "pending_checked", checked)
    reference_version = registered["reference"]["version"]
    honoured_by = None
    if not checked["passed"]:
        honoured_by = reference_version
        if candidate_is_champion:  # the candidate carries what failed: the reference replaces it
            set_alias(settings, "champion", reference_version)
            tag_version(settings, registered["candidate"]["version"], {"promotion": f"replaced by reference v{reference_version}: verification of pending batches failed"})
    settle(settings, pending, checked, verification_id=state.batch_id, reference_version=reference_version, honoured_by=honoured_by, keep_references=[state.steps["versioned"]["md5_after"]])
    return state.record(settings, "verified_pending", {"pending": plan["pending"], "passed": checked["passed"], "champion": honoured_by or promoted["champion"]})


# On its own: `forgetflow verify` ----------------------------------------------------------------
def verifications_dir(settings: Settings) -> Path:
    return settings.state_dir / "verifications"


@dataclass
class VerificationState:
    verification_id: str
    steps: dict = field(default_factory=dict)
    closed: bool = False
    times: dict = field(default_factory=lambda: {"started": time.time()})

    def path(self, settings: Settings) -> Path:
        return verifications_dir(settings) / f"{self.verification_id}.json"

    def record(self, settings: Settings, step: str, outputs: dict) -> dict:
        self.steps[step] = outputs
        self.times[step] = time.time()
        write_atomic(self.path(settings), json.dumps(self.__dict__, indent=2, sort_keys=True, default=str))
        crash_point(f"verification-{step}")
        return outputs

    def close(self, settings: Settings) -> None:
        self.closed = True
        self.record(settings, "closed", {})


def open_verification(settings: Settings) -> VerificationState | None:
    folder = verifications_dir(settings)
    for path in sorted(folder.glob("verify-*.json")) if folder.is_dir() else []:
        state = VerificationState(**json.loads(path.read_text()))
        if not state.closed:
            return state
    return None


def verification_due(settings: Settings) -> str:
    """Why a served (if-due) verification should run now, or "": a near quarantine deadline, or
    policy `schedule` with anything pending (the deployment's cron is the schedule)."""
    from forgetflow.evaluation.config import evaluation_params

    if forced := forced_verification(settings):
        return forced
    policy = evaluation_params(load_params(settings.params_path)).reference
    if policy.policy == "schedule" and pending_batches(settings):
        return f"reference policy `schedule: {policy.schedule}`"
    return ""


def run_verification(settings: Settings, *, if_due: bool = False, progress: bool = True, wait_s: float = 0.0) -> dict:
    """Verify every pending batch now (resuming an interrupted verification first). `if_due`: only
    when `verification_due` says so. Returns a summary (`status`: nothing-pending, not-due,
    verified or failed)."""
    from forgetflow.deletion.lock import workspace_lock

    with workspace_lock(settings, purpose="verify (reference verification)", wait_s=wait_s):
        state = open_verification(settings)
        if state is None:
            if open_batches(settings):
                raise ForgetflowError("a deletion batch is unfinished; verification waits for it", "resume it first: forgetflow process")
            pending = pending_batches(settings)
            if not pending:
                return {"status": "nothing-pending", "pending": []}
            why = verification_due(settings) if if_due else "requested"
            if not why:
                return {"status": "not-due", "pending": [b.batch_id for b in pending]}
            state = VerificationState(time.strftime("verify-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6])
            state.record(settings, "planned", _plan(settings, pending, why))
        return _run(settings, state, progress=progress)


def _plan(settings: Settings, pending: list[BatchState], why: str) -> dict:
    from forgetflow.data.importer import dvc_workspace
    from forgetflow.tracking import current_version

    dataset = pending[-1].steps["versioned"]["dataset"]
    champion = current_version(settings)
    if champion is None:
        raise ForgetflowError("there is no champion to verify", "bootstrap first: forgetflow bootstrap")
    return {"pending": [b.batch_id for b in pending], "champion_version": str(champion["version"]), "dataset": dataset, "md5": dvc_workspace(settings).md5(settings.data_dir / dataset), "why": why}


def _run(settings: Settings, state: VerificationState, *, progress: bool) -> dict:
    from forgetflow.evaluation.reference import reference_for_version
    from forgetflow.models import load_checkpoint
    from forgetflow.tracking import download_checkpoint

    plan = state.steps["planned"]
    params = load_params(settings.params_path)
    pending = [BatchState.load(settings, b) for b in plan["pending"]]
    ref = state.steps.get("reference")
    if ref is None:
        trained = reference_for_version(settings, params, plan["dataset"], plan["md5"], progress=progress)
        ref = state.record(settings, "reference", {"checkpoint": str(trained.checkpoint), "seconds": trained.seconds, "key": trained.key, "seed": trained.seed, "cache_hit": trained.cache_hit})
    checked = state.steps.get("checked")
    if checked is None:
        scratch = settings.state_dir / "scratch" / state.verification_id
        subject, _ = load_checkpoint(download_checkpoint(settings, version=plan["champion_version"], dst=scratch))
        reference, _ = load_checkpoint(Path(ref["checkpoint"]))
        checked = check_pending(settings, subject, reference, [b for b in pending if not b.done("verified")], dataset=plan["dataset"], note=f"verification {state.verification_id}")
        checked["subject_version"] = plan["champion_version"]
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
        checked = state.record(settings, "checked", checked)
    honoured_by = reference_version = None
    if not checked["passed"]:
        promoted = state.steps.get("promoted") or state.record(settings, "promoted", _promote_reference(settings, state, pending, ref))
        honoured_by = reference_version = promoted["reference_version"]
    erased = settle(settings, pending, checked, verification_id=state.verification_id, reference_version=reference_version, honoured_by=honoured_by, keep_references=[plan["md5"]])
    summary = {"status": "verified" if checked["passed"] else "failed", "verification_id": state.verification_id, "pending": plan["pending"], "erased": erased,
               "checked_version": plan["champion_version"], "champion_version": honoured_by or plan["champion_version"], "reference_seconds": ref["seconds"], "why": plan["why"],
               "batches": {b: {"passed": r["passed"], "reasons": [g["reason"] for g in r["groups"] if not g["passed"]]} for b, r in checked["batches"].items()},
               "union": {k: {"passed": v["passed"], "reason": v["reason"]} for k, v in checked["union"].items()}}
    state.record(settings, "summary", summary)
    state.close(settings)
    return summary


def _promote_reference(settings: Settings, state: VerificationState, pending: list[BatchState], ref: dict) -> dict:
    """Register the verifying reference (once: found again by its verification ID) and make it champion."""
    from forgetflow.deletion.pipeline import record_events
    from forgetflow.deletion.registry import find_version, set_alias
    from forgetflow.lineage import code_version
    from forgetflow.models import load_checkpoint
    from forgetflow.registration import dvc_source_url, flat_params
    from forgetflow.tracking import lineage_tags, log_and_register

    plan = state.steps["planned"]
    request_ids = [rid for b in pending for rid in b.steps["validated"]["valid"]]
    found = find_version(settings, state.verification_id, "reference")
    if found is None:
        from forgetflow.deletion.registry import end_interrupted_runs

        end_interrupted_runs(settings, state.verification_id)  # a registration killed before: its run ends KILLED
        params = load_params(settings.params_path)
        model, _ = load_checkpoint(Path(ref["checkpoint"]))
        tags = lineage_tags({
            "stage": "verification", "role": "reference", "batch_id": state.verification_id, "request_ids": ",".join(request_ids),
            "parent_version": "none", "replaces_version": plan["champion_version"], "dataset": plan["dataset"], "data_md5": plan["md5"],
            "method": "retrain", "reference": ref["key"], "seed": ref["seed"], "params_hash": params.hash(), "recipe_hash": params.recipe_hash(), "code_version": code_version(),
        })
        datasets = [{"name": plan["dataset"], "md5": plan["md5"], "source_url": dvc_source_url(plan["dataset"], plan["md5"]), "context": "training"}]
        reg = log_and_register(settings, run_name=f"{state.verification_id}-reference", model=model, checkpoint_path=Path(ref["checkpoint"]), params=flat_params(params, ref["seed"]),
                               metrics={"train_seconds": ref["seconds"]}, datasets=datasets, tags=tags, aliases=("reference",))
        found = {"version": reg.version}
    set_alias(settings, "champion", found["version"])
    # The audit's model chain finds each version's registration in the ledger by batch ID.
    record_events(settings, "registered", state.verification_id, request_ids, lambda _: {"reference_version": found["version"], "candidate_version": None})
    return {"reference_version": str(found["version"])}
