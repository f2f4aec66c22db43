"""The steps of one deletion batch, each resumable: it reads what earlier steps recorded in the
batch state, does its work, records its outputs and appends the requests' ledger entries.

The Prefect tasks in `tasks/` call these functions one to one; everything here runs and is
tested without Prefect.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgetflow.deletion.batch import BatchState, batches_dir, crash_point, new_batch_id, open_batches
from forgetflow.deletion.policy import GROUP_ORDER, unlearning_policy
from forgetflow.errors import ForgetflowError
from forgetflow.params import Params, load_params
from forgetflow.requests.intake import open_ledger
from forgetflow.settings import Settings

PENDING_STATES = ("received", "validated")


def batch_folder(settings: Settings, batch_id: str) -> Path:
    path = batches_dir(settings) / batch_id
    path.mkdir(parents=True, exist_ok=True)
    return path


# 1. Selecting the batch ------------------------------------------------------------------------
def start_batch(settings: Settings, request_ids: list[str] | None = None) -> BatchState | None:
    """Resume an unfinished batch, else open one with the pending requests (or the given ones)."""
    unfinished = open_batches(settings)
    if unfinished:
        return unfinished[0]
    statuses = open_ledger(settings).statuses()
    if request_ids:
        unknown = [rid for rid in request_ids if rid not in statuses]
        if unknown:
            from forgetflow.requests.schema import RequestError

            raise RequestError(f"unknown request IDs: {', '.join(unknown)}", "list requests with `forgetflow request list`")
        chosen = [rid for rid in request_ids if statuses[rid].state in PENDING_STATES]
    else:
        chosen = [rid for rid, status in statuses.items() if status.state in PENDING_STATES]
    if not chosen:
        return None
    state = BatchState(batch_id=new_batch_id(), request_ids=chosen)
    state.save(settings)
    return state


# 2. Validation ---------------------------------------------------------------------------------
def validate(settings: Settings, state: BatchState) -> dict:
    if state.done("validated"):
        return state.steps["validated"]
    from forgetflow.data.importer import dvc_workspace
    from forgetflow.validation.validate import current_dataset, validate_requests

    ledger = open_ledger(settings)
    version = current_dataset(settings)
    outcomes = validate_requests(settings, state.request_ids, dataset=version.name, batch_id=state.batch_id)
    valid, rejected = [], {}
    for outcome in outcomes:
        if outcome.success:
            valid.append(outcome.request_id)
        else:
            rejected[outcome.request_id] = outcome.error or ", ".join(outcome.failed_rules)
            if outcome.error:  # not validated at all (e.g. wrong state): the ledger learns why
                status = ledger.status(outcome.request_id)
                if status is not None and status.state in PENDING_STATES:
                    ledger.append("rejected", outcome.request_id, reason=outcome.error, batch_id=state.batch_id)
    record_events(settings, "batched", state.batch_id, valid, lambda _: {})
    md5 = dvc_workspace(settings).md5(version.root)
    return state.record(settings, "validated", {"valid": valid, "rejected": rejected, "dataset": version.name, "md5_before": md5})


@dataclass
class Group:
    """Requests unlearned together: one method call."""

    category: str  # classes | instances
    kind: str  # the kind passed to the method
    goal: str
    method: str
    request_ids: list[str]
    sample_ids: list[int]
    new_labels: dict[int, int] | None = None  # relabel: sample ID -> new class index

    def as_dict(self) -> dict:
        return self.__dict__


def plan_groups(settings: Settings, state: BatchState, params: Params, class_names: list[str], method_override: str | None = None) -> list[Group]:
    """Group the batch's valid requests by (category, goal) in GROUP_ORDER; see policy.py for why."""
    policy = unlearning_policy(params)
    statuses = open_ledger(settings).statuses()
    buckets: dict[tuple[str, str], list[str]] = {}
    for request_id in state.steps["validated"]["valid"]:
        received = statuses[request_id].received
        category = "classes" if received["kind"] == "classes" else "instances"
        buckets.setdefault((category, received["goal"]), []).append(request_id)
    groups, class_samples = [], set()
    for category, goal in GROUP_ORDER:
        ids = buckets.get((category, goal))
        if not ids:
            continue
        kinds = sorted({statuses[r].received["kind"] for r in ids})
        kind = "classes" if category == "classes" else kinds[0]
        method = policy.method_for(kind, goal, method_override if _serves(method_override, kind, goal) else None)
        samples, new_labels = set(), {}
        for request_id in ids:
            samples.update(int(s) for s in statuses[request_id].last("validated")["sample_ids"])
            received = statuses[request_id].received
            if goal == "relabel":  # relabel is for sample requests: one new label per target, in order
                from forgetflow.requests.resolution import class_index

                new_labels.update({int(t): class_index(n, class_names) for t, n in zip(received["targets"], received["new_labels"])})
        if category == "classes":
            class_samples |= samples
        elif goal == "forget":
            samples -= class_samples  # already removed with their class
        if samples:
            groups.append(Group(category, kind, goal, method, ids, sorted(samples), new_labels or None))
    return groups


def _serves(method: str | None, kind: str, goal: str) -> bool:
    """A per-run override applies to the groups the method can serve; the policy picks the rest."""
    if not method:
        return False
    from forgetflow.methods import get_method

    return get_method(method).serves(kind, goal)


# 3. Data versioning ---------------------------------------------------------------------------
def version_data(settings: Settings, state: BatchState) -> dict:
    if state.done("versioned"):
        return state.steps["versioned"]
    from forgetflow.deletion.data_version import apply_deletion

    statuses = open_ledger(settings).statuses()
    ids = sorted({int(s) for rid in state.steps["validated"]["valid"] for s in statuses[rid].last("validated")["sample_ids"]})
    validated = state.steps["validated"]
    result = apply_deletion(settings, validated["dataset"], ids, batch_id=state.batch_id, md5_before=validated["md5_before"])
    return state.record(settings, "versioned", result.as_dict())


# 4. Unlearning: a ladder of methods per group, each candidate gated against the batch's reference --
def unlearn(settings: Settings, state: BatchState, *, method_override: str | None = None, progress: bool = True) -> dict:
    """Climb each group's method ladder (policy.py says where it comes from). Every rung's outcome
    is recorded in the batch state before the next rung starts, so a killed batch resumes at the
    rung it was on; the first rung that passes the group's gate is that group's candidate."""
    if state.done("unlearned"):
        return state.steps["unlearned"]
    if not state.done("reference"):
        raise ForgetflowError(f"{state.batch_id}: the reference step must run before unlearning", "re-run the deletion flow: it resumes the batch in order")
    from forgetflow.data.store import DatasetVersion
    from forgetflow.deletion.objects import materialise_version
    from forgetflow.deletion.policy import load_calibration
    from forgetflow.evaluation.config import evaluation_params
    from forgetflow.ladder import RungOutcome, climb, evaluation_gate
    from forgetflow.models import load_checkpoint, save_checkpoint
    from forgetflow.tracking import current_version, download_checkpoint

    params = load_params(settings.params_path)
    policy = unlearning_policy(params)
    eval_params = evaluation_params(params)
    calibration = load_calibration(settings) if policy.use_calibration and not method_override else None
    versioned, ref = state.steps["versioned"], state.steps["reference"]
    folder = batch_folder(settings, state.batch_id)
    champion = current_version(settings)
    if champion is None:
        raise ForgetflowError("there is no champion model to unlearn from", "bootstrap first: forgetflow bootstrap")
    champion_ckpt = download_checkpoint(settings, alias="champion", dst=folder / "champion")
    original, payload = load_checkpoint(champion_ckpt)
    model, stats = original, payload.get("layer_stats")
    reference_model = load_checkpoint(Path(ref["checkpoint"]))[0] if "checkpoint" in ref else None
    old = materialise_version(settings, versioned["dataset"], versioned["md5_before"])
    new = DatasetVersion(settings.data_dir / versioned["dataset"])
    splits = {name: new.load(name) for name in ("train", "val", "test")}
    device = settings.resolved_device()
    ladder_state = dict(state.steps.get("ladder", {}))
    runs, total_seconds, failed_group = [], 0.0, None
    for index, group in enumerate(plan_groups(settings, state, params, old.class_names, method_override)):
        key = str(index)
        forget = _train_part(old, group.sample_ids)
        if len(forget.labels) == 0:
            runs.append({**group.as_dict(), "skipped": "no training samples (all in val/test)"})
            continue
        if failed_group is not None:
            runs.append({**group.as_dict(), "skipped": f"not tried: group {failed_group} failed every rung"})
            continue
        # relabel: the forget set keeps its true labels; the targets travel beside it
        new_labels = np.array([group.new_labels[int(s)] for s in forget.sample_ids], dtype=np.int64) if group.new_labels else None
        record = ladder_state.get(key, {})
        if record.get("finished"):  # done before a crash: pick up its model (and its ledger entry, if the crash came first)
            model, saved = load_checkpoint(Path(record["checkpoint"]))
            stats = saved.get("layer_stats")
            runs.append(record["run"])
            total_seconds += record["run"]["seconds"]
            if record["run"]["promoted_rung"] is None:
                failed_group = index
            record_events(settings, "unlearned", state.batch_id, group.request_ids, lambda _, run=record["run"]: _unlearned_entry(run, champion))
            continue
        rungs, source = policy.ladder_for(group.kind, group.goal, method_override if _serves(method_override, group.kind, group.goal) else None, calibration)
        if record.get("checkpoints"):  # a resumed ladder keeps the rungs it started with (its outcomes refer to them)
            from forgetflow.ladder import Rung

            rungs, source = [Rung.model_validate(r) for r in record["rungs"]], record["source"]
        else:  # nothing ran to a model (e.g. every rung was misconfigured): start over with today's ladder
            record = {}
        gate = evaluation_gate(
            original, reference_model, forget=forget, retain=splits["train"], val=splits["val"], test=splits["test"],
            kind=group.kind, goal=group.goal, params=eval_params,
            forget_classes=sorted(set(forget.labels.tolist())) if group.category == "classes" else None,
            new_labels=new_labels, reference_required="skipped" not in ref, reference_note=ref.get("skipped", ""),
            reference_seconds=ref.get("seconds"), device=device,
        )
        retain = _retain_sample(splits["train"], policy.retain_sample_size, seed=policy.seed + index)
        outcomes = [RungOutcome.from_dict(o) for o in record.get("outcomes", [])]
        checkpoints = dict(record.get("checkpoints", {}))

        def keep(outcome, result, index=index, outcomes=outcomes, checkpoints=checkpoints, rungs=rungs, source=source):
            outcomes.append(outcome)
            if result is not None:
                name = f"a{outcome.attempt}-r{outcome.index}"
                extra_stats = result.extra.get("layer_stats", stats) if isinstance(result.extra, dict) else stats
                checkpoints[name] = str(save_checkpoint(result.model, folder / "ladder" / f"group-{index}" / f"{name}.pt", extra={"role": "rung", "batch_id": state.batch_id}, layer_stats=extra_stats))
            ladder_state[str(index)] = {"outcomes": [o.as_dict() for o in outcomes], "checkpoints": checkpoints, "rungs": [r.model_dump() for r in rungs], "source": source}
            state.record(settings, "ladder", ladder_state)
            crash_point("ladder-rung")

        attempts = 1 + (policy.retry_attempts if policy.on_gate_failure == "retry" else 0)
        for attempt in range(attempts):
            climbed = climb(
                rungs, model, forget, gate=gate, retain=retain, val=splits["val"], stats=stats, kind=group.kind, goal=group.goal,
                seed=policy.seed + index, device=device, default_budget_s=policy.time_budget_s, attempt=attempt, progress=progress,
                done=list(outcomes), on_outcome=keep, new_labels=new_labels,
            )
            if climbed.passed:
                break
        promoted = next((o for o in outcomes if o.passed), None)
        last = promoted or next((o for o in reversed(outcomes) if f"a{o.attempt}-r{o.index}" in checkpoints), None)
        if last is not None:
            chosen = checkpoints[f"a{last.attempt}-r{last.index}"]
            method, config, stopped = last.method, last.config, last.stopped_because
        else:  # no rung could run (each error is recorded): the unchanged model stands as the candidate, and fails
            chosen = str(save_checkpoint(model, folder / "ladder" / f"group-{index}" / "unchanged.pt", extra={"role": "rung", "batch_id": state.batch_id}, layer_stats=stats))
            method, config, stopped = "none", {}, "no rung could run: " + "; ".join(f"{o.method}: {o.error}" for o in outcomes)
        model, saved = load_checkpoint(Path(chosen))
        stats = saved.get("layer_stats")
        seconds = sum(o.seconds for o in outcomes)
        total_seconds += seconds
        ladder = [{k: o.as_dict()[k] for k in ("index", "attempt", "method", "passed", "reason", "seconds", "error")} for o in outcomes]
        run = {
            **group.as_dict(), "method": method, "n_samples": len(group.sample_ids), "n_forget_train": int(len(forget.labels)),
            "seconds": seconds, "config": config, "stopped_because": stopped,
            "promoted_rung": promoted.index if promoted else None, "ladder_source": source, "ladder": ladder,
            "rungs": [r.model_dump() for r in rungs], "outcomes": [o.as_dict() for o in outcomes],
        }
        runs.append(run)
        if promoted is None:
            failed_group = index
        ladder_state[key] = {**ladder_state.get(key, {}), "finished": True, "checkpoint": chosen, "run": run}
        state.record(settings, "ladder", ladder_state)
        crash_point("unlearn-group")
        record_events(settings, "unlearned", state.batch_id, group.request_ids, lambda _: _unlearned_entry(run, champion))
    checkpoint = save_checkpoint(model, folder / "candidate" / "checkpoint.pt", extra={"role": "candidate", "batch_id": state.batch_id, "parent_version": champion["version"], "data_md5": versioned["md5_after"]}, layer_stats=stats)
    return state.record(settings, "unlearned", {"checkpoint": str(checkpoint), "champion_checkpoint": str(champion_ckpt), "parent_version": champion["version"], "runs": runs, "seconds": total_seconds, "ladder_failed_group": failed_group})


def _unlearned_entry(run: dict, champion: dict) -> dict:
    """The ledger's `unlearned` fields of a group: the promoted method and every rung's verdict."""
    return {
        "method": run["method"], "seconds": round(run["seconds"], 3), "champion_version": champion["version"],
        "promoted_rung": run["promoted_rung"], "ladder_source": run["ladder_source"],
        "ladder": [{k: v for k, v in step.items() if k != "error" or v} for step in run["ladder"]],
    }


def _train_part(version, sample_ids):
    """The forget samples the model was trained on (subject requests also reach val/test)."""
    rows = version.manifest[version.manifest["sample_id"].isin(sample_ids) & (version.manifest["split"] == "train")]
    return version.load(sample_ids=rows["sample_id"].to_numpy())


def _retain_sample(train, size: int, *, seed: int):
    from forgetflow.data.store import LoadedSplit

    if len(train.labels) <= size:
        return train
    pick = np.sort(np.random.default_rng(seed).choice(len(train.labels), size=size, replace=False))
    return LoadedSplit(train.images[pick], train.labels[pick], train.sample_ids[pick])


def record_events(settings: Settings, event: str, batch_id: str, request_ids: list[str], fields, *, unless: tuple[str, ...] = ()) -> int:
    """Append `event` for every request that has no such event (or one in `unless`) in this batch
    yet, as one group commit: a re-run after a crash never records a step twice."""
    ledger = open_ledger(settings)
    statuses = ledger.statuses()
    skip = {event, *unless}
    records = [
        (event, rid, {"batch_id": batch_id, **fields(rid)})
        for rid in request_ids
        if not any(e["event"] in skip and e.get("batch_id") == batch_id for e in statuses[rid].history)
    ]
    ledger.append_many(records)
    return len(records)


# 5. Reference -----------------------------------------------------------------------------------
def batch_number(settings: Settings) -> int:
    folder = batches_dir(settings)
    return len(list(folder.glob("batch-*.json"))) if folder.is_dir() else 1


def reference(settings: Settings, state: BatchState, *, progress: bool = True) -> dict:
    """Train (or load) this batch's reference, or defer it: the fast path gates the ladder by the
    reference-free checks and promotes a provisional champion that a later reference verifies."""
    if state.done("reference"):
        return state.steps["reference"]
    from forgetflow.deletion.quarantine import forced_verification
    from forgetflow.evaluation.config import evaluation_params
    from forgetflow.evaluation.reference import reference_due

    params = load_params(settings.params_path)
    policy = evaluation_params(params).reference
    statuses = open_ledger(settings).statuses()
    urgent = any(statuses[rid].received.get("urgent") for rid in state.steps["validated"]["valid"])
    due, why = reference_due(policy, batch_number(settings), urgent=urgent, forced=forced_verification(settings))
    if not due:
        return state.record(settings, "reference", {"skipped": why, "fast_path": policy.policy != "never"})
    return state.record(settings, "reference", _train_reference(settings, state, params, why, progress))


def _train_reference(settings: Settings, state: BatchState, params: Params, why: str, progress: bool) -> dict:
    from forgetflow.evaluation.reference import reference_for_version

    versioned = state.steps["versioned"]
    ref = reference_for_version(settings, params, versioned["dataset"], versioned["md5_after"], progress=progress)
    return {"checkpoint": str(ref.checkpoint), "seconds": ref.seconds, "cache_hit": ref.cache_hit, "key": ref.key, "seed": ref.seed, "note": why}


def escalate_reference(settings: Settings, state: BatchState, *, progress: bool = True) -> dict:
    """Fast path failed (every rung of a group failed the reference-free gate): train the reference
    now, so the candidate is judged against it and, failing that, the reference is promoted: the
    requests are honoured either way. Runs after `unlearn`; does nothing otherwise."""
    ref = state.steps["reference"]
    if not ref.get("fast_path") or "checkpoint" in ref or state.steps["unlearned"].get("ladder_failed_group") is None:
        return ref
    params = load_params(settings.params_path)
    trained = _train_reference(settings, state, params, f"fast path failed the reference-free gate ({ref['skipped']}): reference trained now", progress)
    return state.record(settings, "reference", {**trained, "escalated_from": ref["skipped"]})


# 6. Evaluation and gate -------------------------------------------------------------------------
def evaluate(settings: Settings, state: BatchState) -> dict:
    if state.done("evaluated"):
        return state.steps["evaluated"]
    from forgetflow.data.store import DatasetVersion
    from forgetflow.deletion.objects import materialise_version
    from forgetflow.evaluation.config import evaluation_params
    from forgetflow.evaluation.evaluate import evaluate_candidate
    from forgetflow.evaluation.report import flat_metrics, write_report
    from forgetflow.models import load_checkpoint

    params = load_params(settings.params_path)
    eval_params = evaluation_params(params)
    versioned, unlearned, ref = state.steps["versioned"], state.steps["unlearned"], state.steps["reference"]
    original, _ = load_checkpoint(Path(unlearned["champion_checkpoint"]))
    candidate, _ = load_checkpoint(Path(unlearned["checkpoint"]))
    reference_model = load_checkpoint(Path(ref["checkpoint"]))[0] if "checkpoint" in ref else None
    old = materialise_version(settings, versioned["dataset"], versioned["md5_before"])
    new = DatasetVersion(settings.data_dir / versioned["dataset"])
    splits = {name: new.load(name) for name in ("train", "val", "test")}
    folder = batch_folder(settings, state.batch_id) / "evaluation"
    groups, passed, cache = [], True, {}
    reports_root = settings.workspace / "reports" / "batches" / state.batch_id
    changed = changed_splits(settings, state, old)
    context = {"test split": shrunken_test_note(changed["test"])} if "test" in changed else {}
    for index, run in enumerate(r for r in unlearned["runs"] if "skipped" not in r):
        forget = _train_part(old, run["sample_ids"])
        classes = sorted(set(forget.labels.tolist())) if run["category"] == "classes" else None
        new_labels = None
        if run.get("new_labels"):
            mapping = {int(k): v for k, v in run["new_labels"].items()}
            new_labels = np.array([mapping[int(s)] for s in forget.sample_ids])
        evaluation = evaluate_candidate(
            original, candidate, reference_model,
            forget=forget, retain=splits["train"], val=splits["val"], test=splits["test"],
            request_kind=run["kind"], goal=run["goal"], forget_classes=classes, new_labels=new_labels,
            params=eval_params, candidate_seconds=unlearned["seconds"], reference_seconds=ref.get("seconds"),
            reference_required="skipped" not in ref, reference_note=ref.get("skipped", ""),
            device=settings.resolved_device(), outputs_cache=cache if run["goal"] == "forget" and run["category"] == "instances" else None,
        )
        files = write_report(evaluation, reports_root / f"group-{index}-{run['category']}-{run['goal']}", title=f"{state.batch_id}: {run['category']} / {run['goal']} ({run['method']})", context={"batch_id": state.batch_id, "method": run["method"], **context})
        decision = evaluation.decision
        passed = passed and decision.passed
        groups.append({"category": run["category"], "goal": run["goal"], "method": run["method"], "passed": decision.passed, "reason": decision.reason, "metrics": flat_metrics(files.report), "report": str(files.markdown), "folder": str(files.markdown.parent)})
        record_events(settings, "evaluated", state.batch_id, run["request_ids"], lambda _: {"gate_passed": decision.passed, "reason": decision.reason})
    shutil.rmtree(folder, ignore_errors=True)
    # The candidate's own accuracies on the version it is registered with: val and test as they
    # are after this batch (shrunken where the batch deleted samples from them).
    from forgetflow.training import evaluate as split_scores

    device = settings.resolved_device()
    scores = {f"{name}_accuracy": split_scores(candidate.to(device), splits[name], device)["accuracy"] for name in ("val", "test")}
    return state.record(settings, "evaluated", {"passed": passed, "groups": groups, "candidate_metrics": {k: v for k, v in scores.items() if v == v}, "splits_changed": changed})


def changed_splits(settings: Settings, state: BatchState, old) -> dict:
    """{split: {"before": n, "removed": k}} for the val/test splits this batch deletes samples from
    (samples and subject requests reach every split); later versions' val and test metrics are on
    what is left, so a trend across versions must say where the split changed."""
    statuses = open_ledger(settings).statuses()
    ids = {int(s) for rid in state.steps["validated"]["valid"] for s in statuses[rid].last("validated")["sample_ids"]}
    splits = old.manifest["split"]
    removed = splits[old.manifest["sample_id"].isin(ids)].value_counts()
    return {name: {"before": int((splits == name).sum()), "removed": int(removed[name])} for name in ("val", "test") if removed.get(name, 0)}


def shrunken_test_note(change: dict) -> str:
    left = change["before"] - change["removed"]
    return f"changed by this batch: {change['removed']} of {change['before']} test samples deleted; test metrics from this version on are on the remaining {left} and not directly comparable with earlier versions'"
