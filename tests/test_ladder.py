"""The method ladder: `climb` on a tiny model, the `unlearning:` policy, and the deletion pipeline
climbing a ladder end to end without Prefect (real DVC, SQLite MLflow, digits): a failing first rung
and a passing second, keep_champion, retry and a calibrated ladder (consecutive batches of one
workspace), and a SIGKILL between rungs (a workspace of its own).

The failing rung is gradient ascent with lr 0.05 for 5 epochs: it takes the small CNN to chance
accuracy (a drop of 70+ points) with finite outputs. The gate's utility limit is 10 points (not
the shipped 3) so that the passing rung's verdict does not hinge on how the seed-1 reference
happens to compare with the seed-0 champion; forgetting closeness is opened wide.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from forgetflow.data.store import DatasetVersion
from forgetflow.calibration import CANDIDATES
from forgetflow.deletion.policy import SHIPPED_LADDERS, UnlearningPolicy, load_calibration, unlearning_policy
from forgetflow.errors import ConfigError
from forgetflow.ladder import GateVerdict, Rung, RungOutcome, climb, evaluation_gate
from forgetflow.params import load_params
from forgetflow.requests.intake import open_ledger, submit
from forgetflow.settings import load_settings

from conftest import REPO_PARAMS, make_workspace

WRECK = {"method": "gradient_ascent", "config": {"lr": 0.05, "epochs": 5}}  # fails every utility check
REPAIR = {"method": "neggrad_plus", "config": {"epochs": 1}}  # passes the gate below
LADDER = [WRECK, REPAIR]
RETAIN = 300  # unlearning.retain_sample_size: keeps every rung a few seconds


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, more threads make these small models far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# 1. climb on a tiny model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from forgetflow.methods._fixtures import make_splits, take, train_small

    splits = make_splits("digits", seed=0, train_size=500, test_size=200)
    model = train_small(splits, width=8, epochs=3).model
    forget = take(splits.train, np.arange(20))
    retain = take(splits.train, np.arange(20, len(splits.train.labels)))
    return splits, model, forget, retain


def accuracy_gate(model, val, max_drop=5.0):
    """A real gate on the validation split: a rung passes when val accuracy drops <= max_drop."""
    from forgetflow.training import evaluate

    before = evaluate(model, val)["accuracy"]
    calls = []

    def gate(candidate, seconds):
        after = evaluate(candidate, val)["accuracy"]
        calls.append(after)
        drop = before - after
        ok = drop <= max_drop
        return GateVerdict(ok, f"val accuracy drop {drop:.1f} {'<=' if ok else '>'} {max_drop}", {"val_accuracy": round(after, 4)})

    gate.calls = calls
    return gate


def run_climb(tiny, rungs, **kwargs):
    splits, model, forget, retain = tiny
    seen = []
    gate = kwargs.pop("gate", None) or accuracy_gate(model, splits.val)
    result = climb(rungs, model, forget, gate=gate, retain=retain, val=splits.val, progress=False, on_outcome=lambda o, r: seen.append((o, r)), **kwargs)
    return result, seen, gate


@pytest.fixture(scope="module")
def climbed(tiny):
    rungs = [Rung.model_validate(WRECK), Rung(method="finetune", config={"epochs": 1}), Rung(method="scrub")]
    _, model, _, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result, seen, gate = run_climb(tiny, rungs)
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return rungs, result, seen, gate, unchanged


def test_climb_stops_at_the_first_rung_that_passes(climbed, tiny):
    rungs, result, seen, gate, unchanged = climbed
    assert result.accepted == 1 and result.passed and result.rungs_tried == 2
    first, second = result.outcomes
    assert (first.index, first.method, first.passed, first.attempt) == (0, "gradient_ascent", False, 0)
    assert first.reason.startswith("val accuracy drop") and ">" in first.reason and first.error == ""
    assert first.config["lr"] == 0.05 and first.config["batch_size"] == 256  # the full config it ran with
    assert first.metrics["val_accuracy"] < 30 and first.seconds > 0
    assert (second.index, second.method, second.passed) == (1, "finetune", True) and "<=" in second.reason
    assert len(gate.calls) == 2  # the third rung never ran
    assert [o for o, _ in seen] == result.outcomes and all(r is not None for _, r in seen)
    assert result.result is seen[1][1] and result.result.model is not tiny[1]
    assert unchanged  # every rung starts from the caller's model, untouched


def test_done_outcomes_are_not_run_again(climbed, tiny):
    rungs, first_climb, *_ = climbed
    failed, passed = first_climb.outcomes
    result, seen, gate = run_climb(tiny, rungs, done=[RungOutcome.from_dict(failed.as_dict())])
    assert [o.index for o, _ in seen] == [1] and len(gate.calls) == 1  # only the rung after the recorded one
    assert result.accepted == 1 and result.outcomes[0].seconds == failed.seconds and result.outcomes[1].passed
    # Every rung recorded, one passed: nothing runs, the recorded pass is the answer.
    result, seen, gate = run_climb(tiny, rungs, done=[failed, passed])
    assert seen == [] and gate.calls == [] and result.accepted == 1 and result.result is None
    # A retry (attempt 1) does not count the first climb's outcomes: it starts at rung 0 again.
    result, seen, gate = run_climb(tiny, rungs, done=[failed], attempt=1)
    assert [(o.index, o.attempt) for o, _ in seen] == [(0, 1), (1, 1)] and result.accepted == 1


def test_a_rung_that_cannot_run_is_recorded_failed_and_the_ladder_goes_on(tiny):
    rungs = [Rung(method="finetune", config={"epochz": 1}), Rung(method="no_such_method"), Rung(method="finetune", config={"epochs": 1})]
    result, seen, gate = run_climb(tiny, rungs)
    assert result.accepted == 2 and len(gate.calls) == 1
    bad_key, bad_method, good = result.outcomes
    for outcome in (bad_key, bad_method):
        assert not outcome.passed and outcome.seconds == 0.0 and outcome.reason.startswith("could not run")
    assert "epochz" in bad_key.error and "no_such_method" in bad_method.error
    assert good.passed and good.error == ""
    assert [r is None for _, r in seen] == [True, True, False]  # nothing to checkpoint for a rung that did not run


def test_a_ladder_where_every_rung_fails(tiny):
    result, seen, gate = run_climb(tiny, [Rung.model_validate(WRECK)])
    assert result.accepted is None and not result.passed and len(result.outcomes) == 1
    assert result.result is not None  # the last rung's model, for the caller's fallback


def test_a_diverged_rung_fails_the_gate_and_the_ladder_goes_on(tiny):
    from forgetflow.evaluation.config import EvaluationParams

    splits, model, forget, retain = tiny
    # Utility checks only: this test is about a diverged rung, not about the held-out checks.
    utility_only = {"max_gap_heldout_accuracy": None, "max_gap_heldout_loss_mia": None, "max_gap_heldout_mia_efficacy": None}
    params = EvaluationParams.model_validate({"gate": {"no_reference": utility_only}})
    gate = evaluation_gate(model, None, forget=forget, retain=retain, val=splits.val, test=splits.test, kind="samples", goal="forget", params=params)
    rungs = [Rung(method="gradient_ascent", config={"lr": 1000.0, "epochs": 5}), Rung(method="finetune", config={"epochs": 1})]
    result = climb(rungs, model, forget, gate=gate, retain=retain, val=splits.val, progress=False)
    assert not result.outcomes[0].passed and result.accepted == 1


# 2. The policy -----------------------------------------------------------------------------------
def policy_from_yaml(tmp_path, unlearning) -> UnlearningPolicy:
    ws = make_workspace(tmp_path / "ws", unlearning=unlearning)
    return unlearning_policy(load_params(ws / "params.yaml"))


def test_policy_takes_a_method_name_or_a_list_of_rungs(tmp_path):
    policy = policy_from_yaml(tmp_path, {"methods": {"samples": {"forget": "neggrad_plus"}}})
    assert policy.ladder_for("samples", "forget") == ([Rung(method="neggrad_plus")], "params.yaml")
    assert policy.method_for("samples", "forget") == "neggrad_plus"
    policy = policy_from_yaml(tmp_path, {
        "methods": {"samples": {"forget": [{"method": "scrub", "config": {"epochs": 2}, "time_budget_s": 120}, "neggrad_plus"]}},
        "configs": {"scrub": {"msteps": 1, "epochs": 9}},
    })
    rungs, source = policy.ladder_for("samples", "forget")
    assert source == "params.yaml"
    assert rungs == [Rung(method="scrub", config={"msteps": 1, "epochs": 2}, time_budget_s=120), Rung(method="neggrad_plus")]  # the rung's own config wins
    # Pairs not pinned in params.yaml fall through to the shipped ladder.
    assert policy.ladder_for("subjects", "forget")[1] == "shipped default"


@pytest.mark.parametrize("rung, bad", [
    ({"method": "scrub", "epohcs": 2}, "epohcs"),
    ({"method": "scrub", "time_budget_s": 0}, "time_budget_s"),
])
def test_a_bad_rung_is_a_config_error_naming_it(tmp_path, rung, bad):
    with pytest.raises(ConfigError) as raised:
        policy_from_yaml(tmp_path, {"methods": {"samples": {"forget": [rung]}}})
    assert bad in str(raised.value)


def test_an_empty_ladder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="at least one rung"):
        policy_from_yaml(tmp_path, {"methods": {"samples": {"forget": []}}})


def test_ladder_precedence_override_params_calibration_shipped():
    calibration = {"calibration_id": "cal-test", "ladders": {"samples": {"forget": [{"method": "finetune", "config": {"epochs": 2}, "time_budget_s": 30.0}]}}}
    pinned = UnlearningPolicy.model_validate({"methods": {"samples": {"forget": ["scrub"]}}})
    free = UnlearningPolicy()
    assert pinned.ladder_for("samples", "forget", "l1_sparse", calibration) == ([Rung(method="l1_sparse")], "--method")
    assert pinned.ladder_for("samples", "forget", None, calibration) == ([Rung(method="scrub")], "params.yaml")
    shipped = [Rung.model_validate(r) for r in SHIPPED_LADDERS["samples"]["forget"]]
    calibrated, source = free.ladder_for("samples", "forget", None, calibration)
    assert source == "calibration cal-test" and calibrated[0] == Rung(method="finetune", config={"epochs": 2}, time_budget_s=30.0)
    assert calibrated[1:] == shipped  # the shipped rungs follow as fallbacks
    assert free.ladder_for("samples", "forget") == (shipped, "shipped default")
    assert free.ladder_for("subjects", "forget", None, calibration)[1] == "shipped default"  # calibrated for samples only
    assert UnlearningPolicy(use_calibration=False).ladder_for("samples", "forget", None, calibration) == (shipped, "shipped default")
    with pytest.raises(ConfigError):
        UnlearningPolicy().ladder_for("classes", "relabel")


def test_a_damaged_calibration_is_an_error_not_a_silent_fallback(tmp_path):
    settings = load_settings(make_workspace(tmp_path / "ws"))
    assert load_calibration(settings) is None
    path = settings.state_dir / "calibration.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ladders": {"samples": {"forget": [{"method": "scrub", "config": {}}]}}}))
    assert load_calibration(settings)["ladders"]["samples"]["forget"][0]["method"] == "scrub"
    path.write_text(json.dumps({"ladders": {"samples": {"forget": [{"method": "scrub", "bogus": 1}]}}}))
    with pytest.raises(ConfigError, match="not a valid calibration"):
        load_calibration(settings)
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        load_calibration(settings)


# 3-6. The deletion pipeline climbing a ladder (run_pending, no Prefect) --------------------------
def ladder_evaluation() -> dict:
    section = copy.deepcopy(REPO_PARAMS["evaluation"])
    section["gate"]["forget"].update(max_gap_forget_accuracy=100.0, max_gap_mia_efficacy=100.0, max_drop_retain_accuracy=10.0, max_drop_test_accuracy=10.0)
    return section


def ladder_workspace(path, **unlearning):
    return make_workspace(path, evaluation=ladder_evaluation(), unlearning={"methods": {"samples": {"forget": LADDER}}, "retain_sample_size": RETAIN, **unlearning})


def set_unlearning(settings, section: dict) -> None:
    params = yaml.safe_load(settings.params_path.read_text())
    params["unlearning"] = {"retain_sample_size": RETAIN, **section}
    settings.params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def ask_samples(settings, start: int, n: int = 12) -> str:
    manifest = DatasetVersion(settings.data_dir / "digits").manifest
    ids = manifest[manifest.split == "train"].sample_id.iloc[start : start + n].astype(int).tolist()
    return submit(settings, {"kind": "samples", "ids": ids, "reason": "erasure request", "requested_by": "dpo@example.org"}).request_id


def client_for(settings):
    from mlflow import MlflowClient

    from forgetflow.tracking import configure

    configure(settings)
    return MlflowClient()


def champion(settings):
    return client_for(settings).get_model_version_by_alias(settings.registered_model_name, "champion")


def rung_runs(settings, parent_run_id: str) -> dict:
    client = client_for(settings)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")
    return {r.data.tags["forgetflow.rung_id"]: r for r in runs}


def events(settings, request_id: str, event: str) -> list[dict]:
    return [e for e in open_ledger(settings).status(request_id).history if e["event"] == event]


def batch_state(settings, batch_id: str) -> dict:
    return json.loads((settings.state_dir / "batches" / f"{batch_id}.json").read_text())


@pytest.fixture(scope="module")
def ladder_batch(tmp_path_factory):
    """Workspace A, batch 1: rung 1 (gradient ascent) fails the gate, rung 2 (NegGrad+) passes."""
    from forgetflow.deletion.runner import run_pending
    from forgetflow.registration import bootstrap_workspace

    settings = load_settings(ladder_workspace(tmp_path_factory.mktemp("ladder") / "ws"))
    bootstrap_workspace(settings, "digits")
    request = ask_samples(settings, 0)
    summary = run_pending(settings, progress=False)[0]
    return settings, request, summary, champion(settings)


def test_the_ledger_records_every_rung_and_the_promoted_one(ladder_batch):
    settings, request, summary, _ = ladder_batch
    assert [e["event"] for e in open_ledger(settings).status(request).history] == ["received", "validated", "batched", "unlearned", "evaluated", "registered", "promoted", "erased"]
    (unlearned,) = events(settings, request, "unlearned")
    first, second = unlearned["ladder"]
    assert (first["index"], first["attempt"], first["method"], first["passed"]) == (0, 0, "gradient_ascent", False)
    assert first["reason"].startswith("REJECTED") and "test_accuracy_drop" in first["reason"]
    assert (second["index"], second["method"], second["passed"]) == (1, "neggrad_plus", True)
    assert unlearned["promoted_rung"] == 1 and unlearned["ladder_source"] == "params.yaml" and unlearned["method"] == "neggrad_plus"
    (evaluated,) = events(settings, request, "evaluated")
    assert evaluated["gate_passed"] is True
    assert summary["methods"][0]["promoted_rung"] == 1
    assert "rung 2 of 2 (neggrad_plus)" in summary["promotion"]["outcome"]
    assert open_ledger(settings).verify().ok


def test_the_candidate_of_the_passing_rung_is_champion(ladder_batch):
    settings, _, summary, champ = ladder_batch
    assert champ.tags["forgetflow.role"] == "candidate"
    assert str(champ.version) == summary["registered"]["candidate"]["version"] == summary["promotion"]["champion"]
    assert champ.tags["forgetflow.method"] == "neggrad_plus"


def test_each_rung_is_a_child_run_of_the_candidate_run(ladder_batch):
    settings, _, summary, champ = ladder_batch
    from forgetflow.deletion.registry import log_rung_runs

    runs = rung_runs(settings, champ.run_id)
    assert sorted(runs) == ["g0-a0-r0", "g0-a0-r1"]
    failed, passed = runs["g0-a0-r0"], runs["g0-a0-r1"]
    assert (failed.data.tags["forgetflow.gate_passed"], failed.data.tags["forgetflow.promoted"]) == ("False", "False")
    assert (passed.data.tags["forgetflow.gate_passed"], passed.data.tags["forgetflow.promoted"]) == ("True", "True")
    for run in runs.values():
        assert run.data.tags["forgetflow.stage"] == "ladder-rung" and run.data.tags["forgetflow.batch_id"] == summary["batch_id"]
    assert failed.data.params["method"] == "gradient_ascent" and failed.data.params["config.lr"] == "0.05"
    assert failed.data.metrics["gate_passed"] == 0.0 and passed.data.metrics["gate_passed"] == 1.0
    assert "REJECTED" in failed.data.tags["forgetflow.gate_reason"]
    # Logged once: a resumed batch calling it again adds nothing.
    state = batch_state(settings, summary["batch_id"])
    assert log_rung_runs(settings, champ.run_id, summary["batch_id"], state["steps"]["unlearned"]["runs"]) == []
    assert len(rung_runs(settings, champ.run_id)) == 2


# 4. A SIGKILL between two rungs -----------------------------------------------------------------
RUN = "import torch; torch.set_num_threads(1); from forgetflow.settings import load_settings; from forgetflow.deletion.runner import run_pending; run_pending(load_settings({ws!r}), progress=False)"


def run_batch(ws, crash_after=None):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("FORGETFLOW_CRASH_AFTER", None)
    if crash_after:
        env["FORGETFLOW_CRASH_AFTER"] = crash_after
    return subprocess.run([sys.executable, "-c", RUN.format(ws=str(ws))], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def crashed_between_rungs(tmp_path_factory):
    """A fresh workspace, the same ladder: the batch is killed right after rung 1's outcome was saved, then re-run."""
    from forgetflow.registration import bootstrap_workspace

    settings = load_settings(ladder_workspace(tmp_path_factory.mktemp("ladder-crash") / "ws"))
    bootstrap_workspace(settings, "digits")
    requests = [ask_samples(settings, 0, 8), ask_samples(settings, 8, 8)]
    crashed = run_batch(settings.workspace, "ladder-rung")
    (state_file,) = (settings.state_dir / "batches").glob("batch-*.json")
    after_crash = json.loads(state_file.read_text())
    final = run_batch(settings.workspace)
    return settings, requests, crashed, after_crash, final, json.loads(state_file.read_text())


def test_the_crash_came_after_the_first_rung(crashed_between_rungs):
    _, _, crashed, after_crash, final, _ = crashed_between_rungs
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    assert final.returncode == 0, final.stderr[-3000:]
    assert not after_crash["closed"] and "unlearned" not in after_crash["steps"]
    (outcome,) = after_crash["steps"]["ladder"]["0"]["outcomes"]
    assert (outcome["index"], outcome["method"], outcome["passed"]) == (0, "gradient_ascent", False)


def test_the_resumed_batch_did_not_run_the_first_rung_again(crashed_between_rungs):
    settings, requests, _, after_crash, _, final_state = crashed_between_rungs
    before = after_crash["steps"]["ladder"]["0"]["outcomes"][0]
    outcomes = final_state["steps"]["ladder"]["0"]["outcomes"]
    assert [o["index"] for o in outcomes] == [0, 1]
    assert outcomes[0] == before  # same record, same measured seconds: not re-run
    assert final_state["closed"] and final_state["batch_id"] == after_crash["batch_id"]
    ledger = open_ledger(settings)
    assert ledger.verify().ok
    for request in requests:
        (unlearned,) = events(settings, request, "unlearned")
        assert [(s["index"], s["passed"]) for s in unlearned["ladder"]] == [(0, False), (1, True)]
        assert unlearned["ladder"][0]["seconds"] == before["seconds"] and unlearned["promoted_rung"] == 1
        assert [e["event"] for e in ledger.status(request).history] == ["received", "validated", "batched", "unlearned", "evaluated", "registered", "promoted", "erased"]
    candidate = champion(settings)
    assert candidate.tags["forgetflow.role"] == "candidate" and candidate.tags["forgetflow.batch_id"] == final_state["batch_id"]
    assert sorted(rung_runs(settings, candidate.run_id)) == ["g0-a0-r0", "g0-a0-r1"]


@pytest.fixture(scope="module")
def keep_champion_batch(ladder_batch):
    """Workspace A, batch 2: a one-rung ladder that fails, policy keep_champion."""
    from forgetflow.deletion.runner import run_pending

    settings = ladder_batch[0]
    set_unlearning(settings, {"methods": {"samples": {"forget": [WRECK]}}, "on_gate_failure": "keep_champion"})
    before = champion(settings)
    request = ask_samples(settings, 20)
    summary = run_pending(settings, progress=False)[0]
    return settings, request, summary, before, champion(settings)


def test_keep_champion_fails_the_requests_and_keeps_the_model(keep_champion_batch):
    settings, request, summary, before, after = keep_champion_batch
    assert after.version == before.version
    (unlearned,) = events(settings, request, "unlearned")
    assert [(s["index"], s["passed"]) for s in unlearned["ladder"]] == [(0, False)] and unlearned["promoted_rung"] is None
    assert not events(settings, request, "promoted")
    (failed,) = events(settings, request, "failed")
    assert failed["reason"].startswith("champion kept") and failed["champion_version"] == str(before.version)
    assert summary["promotion"]["honoured"] is False


def test_keep_champion_requests_end_failed_after_their_erasure(keep_champion_batch):
    settings, request, *_ = keep_champion_batch
    history = [e["event"] for e in open_ledger(settings).status(request).history]
    assert history[-2:] == ["erased", "failed"] and open_ledger(settings).status(request).state == "failed"


@pytest.fixture(scope="module")
def retry_batch(keep_champion_batch):
    """Workspace A, batch 3: the same failing rung, policy retry once, then the reference."""
    from forgetflow.deletion.runner import run_pending

    settings = keep_champion_batch[0]
    set_unlearning(settings, {"methods": {"samples": {"forget": [WRECK]}}, "on_gate_failure": "retry", "retry_attempts": 1})
    request = ask_samples(settings, 40)
    summary = run_pending(settings, progress=False)[0]
    return settings, request, summary, champion(settings)


def test_retry_climbs_again_then_promotes_the_reference(retry_batch):
    settings, request, summary, champ = retry_batch
    (unlearned,) = events(settings, request, "unlearned")
    assert [(s["index"], s["attempt"], s["passed"]) for s in unlearned["ladder"]] == [(0, 0, False), (0, 1, False)]
    assert unlearned["promoted_rung"] is None
    (promoted,) = events(settings, request, "promoted")
    assert promoted["outcome"].startswith("reference promoted")
    assert str(champ.version) == summary["registered"]["reference"]["version"] == promoted["champion_version"]
    assert champ.tags["forgetflow.role"] == "reference"
    candidate_run = summary["registered"]["candidate"]["run_id"]
    assert sorted(rung_runs(settings, candidate_run)) == ["g0-a0-r0", "g0-a1-r0"]
    assert open_ledger(settings).verify().ok


def test_a_promoted_reference_is_audited_with_its_lineage(retry_batch):
    """Issue 24, item 4: a champion that is a promoted reference shows where it came from (the
    champion it replaced, the data before and after) and reads as the gate's yardstick, not as a
    model that failed the gate."""
    from forgetflow.audit import model_chain

    settings, request, summary, champ = retry_batch
    chain, findings = model_chain(settings, str(champ.version))
    assert findings == []
    head, replaced = chain[0], chain[1]
    assert head["role"] == "reference" and head["relation"].startswith("retrained from scratch")
    assert head["gate"].startswith("reference") and "rejected" not in head["gate"]
    assert replaced["version"] == champ.tags["forgetflow.replaces_version"]
    # The data lineage: this batch's versions before and after (the replaced champion was kept
    # through the previous batch's erasure, so it is on older data still).
    assert head["data_md5_before"] and head["data_md5"] and head["data_md5_before"] != head["data_md5"] and replaced["data_md5"]
    assert champ.tags["forgetflow.gate_passed"] == "not gated (reference)" and champ.tags["forgetflow.candidate_gate_passed"] == "False"


@pytest.fixture(scope="module")
def calibrated(retry_batch):
    """Workspace A: calibration on its champion, then a batch with no ladder pinned in params.yaml."""
    from forgetflow.calibration_run import calibrate_workspace
    from forgetflow.deletion.runner import run_pending

    settings = retry_batch[0]
    set_unlearning(settings, {})
    calibrated_on = str(champion(settings).version)
    document = calibrate_workspace(settings, kinds=["samples"], max_configs=1, max_time_ratio=4.0, progress=False, log=lambda _: None)
    request = ask_samples(settings, 60)
    summary = run_pending(settings, progress=False)[0]
    return settings, document, request, summary, calibrated_on


def test_calibration_is_written_and_logged(calibrated):
    settings, document, _, _, calibrated_on = calibrated
    stored = json.loads((settings.state_dir / "calibration.json").read_text())
    assert stored == document
    rungs = stored["ladders"]["samples"]["forget"]
    assert rungs, stored["notes"]
    methods = [r["method"] for r in rungs]
    assert len(set(methods)) == len(methods) and set(methods) <= {t["method"] for t in stored["trials"] if t["passed"] and t["within_time"]}
    # The shipped rungs first, then each candidate's paper default (max_configs=1) and the same
    # followed by the repair step, each pair once.
    from forgetflow.calibration import REPAIR_EPOCHS
    from forgetflow.deletion.policy import SHIPPED_LADDERS

    expected = [(r["method"], r.get("config", {})) for r in SHIPPED_LADDERS["samples"]["forget"]]
    for m in CANDIDATES[("samples", "forget")]:
        expected += [(m, c) for c in ({}, {"repair_epochs": REPAIR_EPOCHS}) if (m, c) not in expected]
    assert [(t["proxy"], t["method"], t["config"]) for t in stored["trials"]] == [("samples", m, c) for m, c in expected]
    assert stored["champion_version"] == calibrated_on
    client = client_for(settings)
    run = client.get_run(stored["mlflow_run_id"])
    assert run.data.tags["forgetflow.calibration_id"] == stored["calibration_id"]
    assert "calibration/calibration.png" in {a.path for a in client.list_artifacts(run.info.run_id, "calibration")}


def test_the_next_batch_climbs_the_calibrated_ladder(calibrated):
    settings, document, request, summary, _ = calibrated
    from forgetflow.deletion.policy import UnlearningPolicy

    rungs, _ = UnlearningPolicy().ladder_for("samples", "forget", calibration=document)  # calibrated rungs, then shipped fallbacks
    assert rungs[: len(document["ladders"]["samples"]["forget"])] == [Rung.model_validate(r) for r in document["ladders"]["samples"]["forget"]]
    (unlearned,) = events(settings, request, "unlearned")
    assert unlearned["ladder_source"] == f"calibration {document['calibration_id']}"
    tried = [s["method"] for s in unlearned["ladder"]]
    assert tried and tried == [r.method for r in rungs][: len(tried)]
    ladder = batch_state(settings, summary["batch_id"])["steps"]["ladder"]["0"]
    assert ladder["rungs"] == [r.model_dump() for r in rungs] and ladder["source"] == unlearned["ladder_source"]
    assert [o["config"] for o in ladder["outcomes"]] and all(o["config"].items() >= rungs[o["index"]].config.items() for o in ladder["outcomes"])


def test_a_calibration_trial_that_diverges_is_a_failed_trial(tiny):
    """`forgetflow calibrate` on a fresh digits workspace once ended in `ValueError: Input X contains
    NaN` from the MIA's SVC: a search-space config diverged. Such a trial fails; calibration goes on."""
    from forgetflow.calibration import Proxy, _trial
    from forgetflow.evaluation.config import EvaluationParams

    splits, model, forget, retain = tiny
    proxy = Proxy(name="samples", kind="samples", goal="forget", forget_index=np.arange(20))
    trial = _trial(proxy, "gradient_ascent", {"lr": 1000.0, "epochs": 5}, model, forget, retain, retain, splits.val, None, model, 10.0,
                   EvaluationParams(), {}, 0, "cpu", 0.25)
    assert not trial.passed and "diverged" in trial.reason and trial.score != trial.score  # NaN: never selected
