"""The last steps of a batch: register with lineage, promote by the gate, erase, close.

Registration logs one MLflow run per batch for the candidate (and one for a freshly trained
reference), each with its trainable checkpoint, the evaluation reports and lineage tags. Both are
found again by (batch_id, role) tags, so a resumed batch never registers twice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from forgetflow.deletion.batch import BatchState, crash_point
from forgetflow.deletion.pipeline import batch_folder, record_events
from forgetflow.deletion.policy import unlearning_policy
from forgetflow.deletion.registry import alias_version, find_version, mark_superseded, set_alias, tag_version
from forgetflow.lineage import code_version, prefect_flow_run_id
from forgetflow.params import load_params, stable_hash
from forgetflow.registration import dvc_source_url, flat_params
from forgetflow.requests.intake import open_ledger
from forgetflow.settings import Settings
from forgetflow.tracking import lineage_tags, log_and_register


def _lineage(settings: Settings, state: BatchState, role: str, method: str, config_hash: str) -> dict:
    params = load_params(settings.params_path)
    versioned, unlearned, evaluated = state.steps["versioned"], state.steps["unlearned"], state.steps["evaluated"]
    ref = state.steps["reference"]
    return {
        "stage": "deletion",
        "role": role,
        "batch_id": state.batch_id,
        "request_ids": ",".join(state.steps["validated"]["valid"]),
        "parent_version": unlearned["parent_version"],
        "dataset": versioned["dataset"],
        "data_md5_before": versioned["md5_before"],
        "data_md5": versioned["md5_after"],
        "forget_set_hash": _forget_hash(settings, state),  # the same digest as the "forget" dataset input
        "method": method,
        "config_hash": config_hash,
        "reference": ref.get("key", f"none ({ref.get('skipped', '')})"),
        "gate_passed": evaluated["passed"],
        "test_split_changed": "test" in evaluated.get("splits_changed", {}),
        "params_hash": params.hash(),
        "recipe_hash": params.recipe_hash(),
        "code_version": code_version(),
        "prefect_flow_run_id": prefect_flow_run_id(),
    }


def register(settings: Settings, state: BatchState) -> dict:
    if state.done("registered"):
        return state.steps["registered"]
    from forgetflow.deletion.registry import end_interrupted_runs
    from forgetflow.models import load_checkpoint

    end_interrupted_runs(settings, state.batch_id)  # a registration killed before: its runs end KILLED

    params = load_params(settings.params_path)
    versioned, unlearned, evaluated, ref = (state.steps[k] for k in ("versioned", "unlearned", "evaluated", "reference"))
    runs = [r for r in unlearned["runs"] if "skipped" not in r]
    method = "+".join(r["method"] for r in runs) or "none"
    config_hash = stable_hash([{"method": r["method"], "config": r["config"]} for r in runs])
    metrics = {"unlearn_seconds": unlearned["seconds"], **evaluated.get("candidate_metrics", {})}  # val/test as they are now
    for index, group in enumerate(evaluated["groups"]):
        prefix = f"g{index}_{group['category']}_{group['goal']}."
        metrics.update({prefix + k: v for k, v in group["metrics"].items() if isinstance(v, (int, float)) and v == v})
    datasets = [
        {"name": versioned["dataset"], "md5": versioned["md5_after"], "source_url": dvc_source_url(versioned["dataset"], versioned["md5_after"]), "context": "training"},
        {"name": f"{versioned['dataset']}-forget-set", "md5": _forget_hash(settings, state), "source_url": f"ledger://{state.batch_id}", "context": "forget", "digest_kind": "sha256(sample_id, content_hash) of the forget set"},
    ]
    reports = Path(settings.workspace / "reports" / "batches" / state.batch_id)
    out = {}
    if "checkpoint" in ref:
        found = find_version(settings, state.batch_id, "reference")
        if found is None:
            model, _ = load_checkpoint(Path(ref["checkpoint"]))
            # Retrained from scratch: no parent model; `replaces_version` says which champion it stands beside.
            lineage = _lineage(settings, state, "reference", "retrain", ref["key"])
            # The reference is the gate's yardstick, not gated itself: its gate_passed must not read as a failed model.
            tags = lineage_tags({**lineage, "parent_version": "none", "replaces_version": lineage["parent_version"], "seed": ref["seed"], "gate_passed": "not gated (reference)", "candidate_gate_passed": lineage["gate_passed"]})
            reg = log_and_register(
                settings, run_name=f"{state.batch_id}-reference", model=model, checkpoint_path=Path(ref["checkpoint"]),
                params=flat_params(params, ref["seed"]), metrics={"train_seconds": ref["seconds"], **_reference_metrics(evaluated)}, datasets=datasets[:1], tags=tags, aliases=("reference",),
            )
            found = {"version": reg.version, "run_id": reg.run_id}
        set_alias(settings, "reference", found["version"])
        out["reference"] = {"version": found["version"], "run_id": found["run_id"]}
    existing = find_version(settings, state.batch_id, "candidate")
    if existing is None:
        model, _ = load_checkpoint(Path(unlearned["checkpoint"]))
        reference_link = {"reference_version": out.get("reference", {}).get("version"), "reference_run_id": out.get("reference", {}).get("run_id")}
        tags = lineage_tags({**_lineage(settings, state, "candidate", method, config_hash), **reference_link})
        reg = log_and_register(
            settings, run_name=f"{state.batch_id}-candidate", model=model, checkpoint_path=Path(unlearned["checkpoint"]),
            params={"unlearning.method": method, "unlearning.config_hash": config_hash, **{f"unlearning.{i}.{k}": v for i, r in enumerate(runs) for k, v in r["config"].items()}},
            metrics=metrics, datasets=datasets, tags=tags, artifacts={"evaluation": reports} if reports.exists() else None, aliases=("candidate",),
        )
        existing = {"version": reg.version, "run_id": reg.run_id}
    set_alias(settings, "candidate", existing["version"])  # again: a crash may have come before it
    from forgetflow.deletion.registry import log_rung_runs

    log_rung_runs(settings, existing["run_id"], state.batch_id, unlearned["runs"])
    out["candidate"] = {"version": existing["version"], "run_id": existing["run_id"]}
    versions = {"candidate_version": out["candidate"]["version"], "reference_version": out.get("reference", {}).get("version")}
    record_events(settings, "registered", state.batch_id, state.steps["validated"]["valid"], lambda _: versions)
    from forgetflow.deletion.batch_record import after_registration

    after_registration(settings, state, out)  # per-request gates, ledger head anchor, descriptions
    return state.record(settings, "registered", out)


def _reference_metrics(evaluated: dict) -> dict:
    """The reference's own accuracies from the batch evaluation (first group; they do not depend on it)."""
    groups = evaluated.get("groups") or [{}]
    return {k.removeprefix("reference."): v for k, v in groups[0].get("metrics", {}).items() if k.startswith("reference.") and isinstance(v, (int, float)) and v == v}


def _forget_hash(settings: Settings, state: BatchState) -> str:
    statuses = open_ledger(settings).statuses()
    return stable_hash(sorted(statuses[r].last("validated")["forget_set"]["content_hash"] for r in state.steps["validated"]["valid"]))


def promote(settings: Settings, state: BatchState) -> dict:
    """Champion moves only on a passed gate; otherwise the policy decides (default: the reference)."""
    if state.done("promoted"):
        return state.steps["promoted"]
    params = load_params(settings.params_path)
    policy = unlearning_policy(params)
    registered, evaluated = state.steps["registered"], state.steps["evaluated"]
    candidate = registered["candidate"]["version"]
    rungs = _promoted_rungs(state)
    if evaluated["passed"]:
        outcome, champion, honoured = f"candidate promoted: gate passed ({rungs})", candidate, True
    elif policy.on_gate_failure in ("promote_reference", "retry") and "reference" in registered:
        # `retry` has already climbed the ladder again (pipeline.unlearn); the reference is the last resort.
        outcome, champion, honoured = f"reference promoted: gate rejected the candidate ({rungs})", registered["reference"]["version"], True
    else:
        why = "no reference was trained" if "reference" not in registered else "policy keep_champion"
        outcome, champion, honoured = f"champion kept: gate rejected the candidate ({why}); requests not yet honoured by the model", alias_version(settings, "champion"), False
    # Two clocks: a candidate that passed only the reference-free checks (fast path) is a
    # provisional champion; its forget sets wait in quarantine until a reference verifies it.
    from forgetflow.deletion.quarantine import batch_verification

    verification = batch_verification(state) if honoured else "unverified"
    provisional = verification == "pending" and champion == candidate
    if provisional:
        outcome = outcome.replace("candidate promoted", "candidate promoted provisionally", 1)
    if honoured:
        set_alias(settings, "champion", champion)
    tag_version(settings, candidate, {"promotion": outcome, **({"verification": "pending"} if provisional else {})})
    valid = state.steps["validated"]["valid"]
    if honoured:
        event = "promoted-provisional" if provisional else "promoted"
        fields = {"champion_version": champion, "outcome": outcome, "reference_used": "checkpoint" in state.steps["reference"], "verification": verification}
        record_events(settings, event, state.batch_id, valid, lambda _: fields, unless=("failed", "promoted", "promoted-provisional"))
        if provisional:
            return state.record(settings, "promoted", {"champion": champion, "outcome": outcome, "honoured": True, "provisional": True})
    # Not honoured: `failed` is recorded after the erasure (see erase), so that it stays the
    # request's state: the data is gone, but no model excludes it yet.
    return state.record(settings, "promoted", {"champion": champion, "outcome": outcome, "honoured": honoured})


def _promoted_rungs(state: BatchState) -> str:
    """'rung 2 of 3 (neggrad_plus)' per group, or 'every rung failed'."""
    parts = []
    for run in state.steps["unlearned"]["runs"]:
        if "skipped" in run or "ladder" not in run:
            continue
        tried = len(run["ladder"])
        if run.get("promoted_rung") is None:
            parts.append(f"{run['category']}/{run['goal']}: every rung failed ({tried} tried)")
        else:
            parts.append(f"{run['category']}/{run['goal']}: rung {run['promoted_rung'] + 1} of {len(run.get('rungs') or []) or tried} ({run['method']})")
    return "; ".join(parts) or "no ladder"


def erase(settings: Settings, state: BatchState) -> dict:
    """Remove the forgotten samples from every copy and record the proof in the ledger."""
    if state.done("erased"):
        return state.steps["erased"]
    if state.steps["promoted"].get("provisional") and not state.done("verified"):
        from forgetflow.deletion.quarantine import quarantine  # no forget set is erased before a reference verified it

        return quarantine(settings, state)
    from forgetflow.deletion.erasure import erase as erase_copies, verify_erasure

    versioned = state.steps["versioned"]
    statuses = open_ledger(settings).statuses()
    ids = sorted({int(s) for r in state.steps["validated"]["valid"] for s in statuses[r].last("validated")["sample_ids"]})
    # The tombstone is written before anything is deleted, so a re-run after a crash mid-erasure
    # still knows what to look for even though the old version's objects are already gone.
    tombstone = write_tombstone(settings, state)
    hashes = {h for per_request in json.loads((settings.workspace / tombstone["path"]).read_text())["content_hashes"].values() for h in per_request}
    record = erase_copies(settings, versioned["dataset"], hashes, recorded_objects=versioned["objects_to_erase"], old_versions=[versioned["md5_before"]])
    crash_point("erase-copies")
    record.folders_removed += purge_inbox_copies(settings, state.steps["validated"]["valid"])
    # Cached references of older data versions were trained on the erased samples too.
    from forgetflow.evaluation.reference import prune_references

    keep_md5 = {versioned["md5_after"], *(state.steps.get("verified", {}).get("keep_references") or [])}  # a later batch's verifying reference stays
    record.folders_removed += [f".forgetflow/references/{key}" for key in prune_references(settings.state_dir, keep_md5)]
    check = verify_erasure(settings, versioned["dataset"], hashes, set(ids))
    registered = state.steps["registered"]
    keep = {registered["candidate"]["version"], *([registered["reference"]["version"]] if "reference" in registered else [])}
    superseded = mark_superseded(settings, before_version=min(int(v) for v in keep), batch_id=state.batch_id, keep=keep)
    # Scratch copies of the batch (the old champion's checkpoint, the candidate's) are not needed any more.
    shutil.rmtree(batch_folder(settings, state.batch_id), ignore_errors=True)
    summary = {"erasure": record.as_dict(), "verification": check.as_dict(), "superseded_versions": superseded}
    removed = {label: len(oids) for label, oids in record.objects_removed.items()}
    proof = {"objects_removed": removed, "run_cache_removed": record.run_cache_removed, "verified": check.ok, "problems": check.problems[:5], "tombstone": tombstone["path"], "tombstone_sha256": tombstone["sha256"], "objects_scanned": check.objects_scanned}
    record_events(settings, "erased", state.batch_id, state.steps["validated"]["valid"], lambda _: proof)
    promoted = state.steps["promoted"]
    if not promoted["honoured"]:
        record_events(settings, "failed", state.batch_id, state.steps["validated"]["valid"], lambda _: {"champion_version": promoted["champion"], "reason": promoted["outcome"]}, unless=("promoted",))
    from forgetflow.deletion.batch_record import after_erasure

    after_erasure(settings, state)  # the ledger head anchored again, descriptions say "erased"
    _drop_sample_ids(state)
    return state.record(settings, "erased", summary)


def _drop_sample_ids(state: BatchState) -> None:
    """Once the data is erased, the batch state keeps counts, not the forgotten sample IDs: the
    ledger's `validated` entries hold them (the audit record; a re-run of erasure reads them there)
    and no later step needs them. Saved with the `erased` step."""

    def counted(run: dict) -> dict:
        if "sample_ids" not in run and "new_labels" not in run:
            return run
        kept = {k: v for k, v in run.items() if k not in ("sample_ids", "new_labels")}
        return {**kept, "n_samples": run.get("n_samples", len(run.get("sample_ids") or []))}

    unlearned = state.steps.get("unlearned")
    if unlearned:
        unlearned["runs"] = [counted(run) for run in unlearned["runs"]]
    for group in (state.steps.get("ladder") or {}).values():
        if isinstance(group, dict) and "run" in group:
            group["run"] = counted(group["run"])


def purge_inbox_copies(settings: Settings, request_ids: list[str]) -> list[str]:
    """Processed inbox files are named `<request_id>--<name>`; subject IDs in them are clear text."""
    from forgetflow.requests.intake import purge_processed

    return purge_processed(settings, request_ids)


def tombstone_path(settings: Settings, batch_id: str) -> Path:
    return settings.state_dir / "erasure" / f"{batch_id}.json"


def write_tombstone(settings: Settings, state: BatchState) -> dict:
    """Per request: the SHA-256 of each erased image, kept so erasure can be re-verified later.

    A hash only confirms that a given image was erased by someone who holds that image; the
    images themselves are gone. The file's own SHA-256 goes into the ledger (tamper-evident).
    """
    import hashlib

    from forgetflow.workspace import write_atomic

    path = tombstone_path(settings, state.batch_id)
    if not path.exists():
        from forgetflow.deletion.objects import materialise_version

        versioned = state.steps["versioned"]
        statuses = open_ledger(settings).statuses()
        old = materialise_version(settings, versioned["dataset"], versioned["md5_before"])
        by_id = old.manifest.set_index("sample_id")["content_hash"]
        content = {rid: sorted(by_id.loc[[int(s) for s in statuses[rid].last("validated")["sample_ids"]]].tolist()) for rid in state.steps["validated"]["valid"]}
        write_atomic(path, json.dumps({"batch_id": state.batch_id, "dataset": versioned["dataset"], "content_hashes": content}, sort_keys=True))
    return {"path": str(path.relative_to(settings.workspace)), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def finish(settings: Settings, state: BatchState) -> dict:
    """Close the batch. Processed inbox copies of rejected requests go now (they may name subjects
    in clear text, and nothing will erase them later)."""
    from forgetflow.requests.intake import purge_closed

    purge_closed(settings)
    state.close(settings)
    return summary(state)


def summary(state: BatchState) -> dict:
    steps = state.steps
    return {
        "batch_id": state.batch_id,
        "requests": state.request_ids,
        "valid": steps.get("validated", {}).get("valid", []),
        "rejected": steps.get("validated", {}).get("rejected", {}),
        "data": {k: steps.get("versioned", {}).get(k) for k in ("dataset", "md5_before", "md5_after", "removed", "touched_shards")},
        "methods": [{k: r.get(k) for k in ("category", "goal", "method", "n_forget_train", "seconds", "stopped_because", "skipped", "promoted_rung", "ladder_source", "ladder")} for r in steps.get("unlearned", {}).get("runs", [])],
        "reference": {k: v for k, v in steps.get("reference", {}).items() if k != "checkpoint"},
        "gate": steps.get("evaluated", {}),
        "registered": steps.get("registered", {}),
        "promotion": steps.get("promoted", {}),
        "erasure_verified": steps.get("erased", {}).get("verification", {}).get("ok"),
        "step_seconds": step_seconds(state.times),
    }


def step_seconds(times: dict) -> dict:
    """Wall time of each step: from the previous recorded point to this one."""
    ordered = sorted(times.items(), key=lambda kv: kv[1])
    return {name: round(t - prev, 3) for (_, prev), (name, t) in zip(ordered, ordered[1:])}


def summary_markdown(result: dict) -> str:
    lines = [f"# Deletion batch `{result['batch_id']}`", "", "| | |", "|---|---|"]
    lines.append(f"| requests | {len(result['valid'])} processed, {len(result['rejected'])} rejected |")
    data = result["data"]
    if data.get("md5_after"):
        lines.append(f"| data version | `{data['md5_before']}` -> `{data['md5_after']}` ({data['removed']} samples removed, shards {', '.join(data['touched_shards'] or [])}) |")
    changed = (result["gate"] or {}).get("splits_changed") or {}
    if "test" in changed:
        from forgetflow.deletion.pipeline import shrunken_test_note

        lines.append(f"| test split | {shrunken_test_note(changed['test'])} |")
    for run in result["methods"]:
        if run.get("skipped"):  # e.g. only val/test samples: deleted, nothing to unlearn
            lines.append(f"| unlearning | {run['category']}/{run['goal']}: skipped: {_md_cell(run['skipped'])} |")
            continue
        lines.append(f"| unlearning | {run['category']}/{run['goal']}: `{run['method']}` on {run.get('n_forget_train')} train samples, {run.get('seconds') or 0:.1f} s |")
        for step in run.get("ladder") or []:
            verdict = "PASS" if step["passed"] else "fail"
            retry = f", retry {step['attempt']}" if step.get("attempt") else ""
            lines.append(f"| rung {step['index'] + 1}{retry} | `{step['method']}` {step['seconds']:.1f} s: {verdict}: {_md_cell(step['reason'])} |")
    gate = result["gate"]
    for group in gate.get("groups", []):
        lines.append(f"| gate {group['category']}/{group['goal']} | {'PASS' if group['passed'] else 'FAIL'}: {_md_cell(group['reason'])} |")
    promotion = result["promotion"]
    if promotion:
        lines.append(f"| promotion | {promotion['outcome']} (champion = v{promotion['champion']}) |")
    if result["erasure_verified"] is not None:
        lines.append(f"| erasure | {'verified: no copy of a forgotten sample remains' if result['erasure_verified'] else 'NOT verified'} |")
    if result["rejected"]:
        lines += ["", "Rejected requests:", ""] + [f"- `{rid}`: {why}" for rid, why in result["rejected"].items()]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def dump(result: dict) -> str:
    return json.dumps(result, indent=2, default=str)
