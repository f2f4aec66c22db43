"""Sanity checks of the whole evaluation on real (tiny) trained models on digits.

Setup: 400 training digits, half of them in the forget set, so that memorisation is measurable
(with all 1,437 digits a CNN generalises so well that the original and the reference are hard to
tell apart on any metric). The "candidates" are built here, not by unlearning methods:
- a second reference retrained with another seed (a perfect candidate: must pass),
- the original model itself (under-forgetting: must be rejected),
- the original with its classifier re-initialised (over-forgetting: must be rejected).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from forgetflow.data.sources import load_source
from forgetflow.data.splits import assign_splits
from forgetflow.data.store import LoadedSplit
from forgetflow.evaluation import evaluate_candidate
from forgetflow.evaluation.report import flat_metrics, write_report
from forgetflow.params import ModelParams, TrainParams
from forgetflow.training import model_spec_for, train_model

RECIPE = TrainParams(epochs=20)


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    raw = load_source("digits")
    splits = assign_splits(raw.labels, None, val_fraction=0.1, test_fraction=0.2, seed=0)
    split = lambda idx: LoadedSplit(raw.images[idx], raw.labels[idx], idx.astype(np.int64))  # noqa: E731
    rng = np.random.default_rng(0)
    train_idx = np.sort(rng.choice(np.where(splits == "train")[0], 400, replace=False))
    in_forget = np.zeros(400, bool)
    in_forget[rng.choice(400, 200, replace=False)] = True
    data = {
        "train": split(train_idx),
        "forget": split(train_idx[in_forget]),
        "retain": split(train_idx[~in_forget]),
        "val": split(np.where(splits == "val")[0]),
        "test": split(np.where(splits == "test")[0]),
    }
    spec = model_spec_for(ModelParams(width=16), {"image_shape": [8, 8, 1], "class_names": raw.class_names, "mean": [0.3], "std": [0.4]})
    original = train_model(spec, RECIPE, data["train"], data["val"], seed=0, progress=False)
    reference = train_model(spec, RECIPE, data["retain"], data["val"], seed=1, progress=False)
    second_reference = train_model(spec, RECIPE, data["retain"], data["val"], seed=2, progress=False)
    damaged = copy.deepcopy(original.model)
    torch.manual_seed(123)
    for module in damaged.net.classifier:
        if isinstance(module, torch.nn.Linear):
            module.reset_parameters()
    return {"data": data, "spec": spec, "original": original.model, "reference": reference.model, "reference_seconds": reference.seconds, "second": second_reference.model, "damaged": damaged}


def run(setup, candidate, *, reference="reference", **kwargs):
    d = setup["data"]
    kwargs.setdefault("request_kind", "samples")
    kwargs.setdefault("goal", "forget")
    ref = setup[reference] if reference else None
    return evaluate_candidate(setup["original"], candidate, ref, forget=d["forget"], retain=d["retain"], val=d["val"], test=d["test"], reference_seconds=setup["reference_seconds"] if ref is not None else None, **kwargs)


def test_original_is_clearly_distinguishable_from_the_reference(setup):
    evaluation = run(setup, setup["original"], candidate_seconds=0.01)
    assert not evaluation.decision.passed
    failed = {c.name: c.detail for c in evaluation.decision.failed}
    assert failed["mia_efficacy_gap"] == "under-forgetting"
    m, ref = evaluation.metrics["candidate"], evaluation.metrics["reference"]
    assert m["mia_efficacy"] + 10 < ref["mia_efficacy"]
    assert m["forget_accuracy"] > ref["forget_accuracy"]


def test_second_reference_is_indistinguishable_and_passes(setup):
    evaluation = run(setup, setup["second"], candidate_seconds=1.0)
    assert evaluation.decision.passed, evaluation.decision.reason
    summary = evaluation.summary
    assert summary["candidate_avg_gap"] < summary["original_avg_gap"] / 2
    assert summary["candidate_tow"] > summary["original_tow"]


def test_every_mia_is_stronger_on_the_original_than_on_the_reference(setup):
    metrics = run(setup, setup["original"]).metrics
    original, reference = metrics["original"], metrics["reference"]
    assert original["mia_efficacy"] < reference["mia_efficacy"]  # fewer forget samples read as non-members
    assert original["loss_mia"] > reference["loss_mia"]  # forget losses separate from test losses
    assert original["entropy_mia"] > reference["entropy_mia"]  # more forget samples read as members
    assert abs(reference["loss_mia"] - 50.0) < 10.0  # the reference never saw the forget set: near chance


def test_over_forgetting_candidate_is_rejected(setup):
    evaluation = run(setup, setup["damaged"])
    assert not evaluation.decision.passed
    details = {c.name: c.detail for c in evaluation.decision.failed}
    assert details["forget_accuracy_gap"] == "over-forgetting"
    assert "test_accuracy_drop" in details


def test_model_compared_with_itself_scores_perfect_closeness(setup):
    evaluation = run(setup, setup["reference"], candidate_seconds=2.0)
    close = evaluation.closeness["candidate_vs_reference"]
    assert close["forget_js_divergence"] == pytest.approx(0.0, abs=1e-12)
    assert close["forget_activation_distance"] == pytest.approx(0.0, abs=1e-12)
    assert close["forget_prediction_agreement"] == 100.0 and close["test_prediction_agreement"] == 100.0
    assert close["l2_weight_distance"] == 0.0
    assert evaluation.summary["candidate_avg_gap"] == 0.0 and evaluation.summary["candidate_tow"] == 1.0
    assert evaluation.summary["speed_up"] == pytest.approx(setup["reference_seconds"] / 2.0)
    assert evaluation.decision.passed


def test_without_reference_only_reference_free_checks_run(setup):
    evaluation = run(setup, setup["original"], reference=None, reference_note="reference policy `never`: reference checks skipped")
    decision = evaluation.decision
    assert not decision.reference_used and "reference" not in evaluation.metrics
    assert {c.against for c in decision.checks} == {"original", "held-out"}  # the fast path's reference-free checks
    assert any("NOT checked" in note for note in decision.notes)
    heldout = evaluation.metrics["candidate"]
    assert heldout["heldout_samples"] > 0 and 0 <= heldout["heldout_accuracy"] <= 100


def test_class_request_metrics_and_gate(setup):
    d = setup["data"]
    forget_class = 3
    in_class = d["train"].labels == forget_class
    take = lambda s, m: LoadedSplit(s.images[m], s.labels[m], s.sample_ids[m])  # noqa: E731
    forget, retain = take(d["train"], in_class), take(d["train"], ~in_class)
    class_reference = train_model(setup["spec"], RECIPE, retain, d["val"], seed=1, progress=False).model
    kwargs = dict(forget=forget, retain=retain, val=d["val"], test=d["test"], request_kind="classes", goal="forget")
    rejected = evaluate_candidate(setup["original"], setup["original"], class_reference, **kwargs)
    passed = evaluate_candidate(setup["original"], class_reference, class_reference, **kwargs)
    assert rejected.metrics["candidate"]["forget_class_test_accuracy"] > 80.0
    assert passed.metrics["candidate"]["forget_class_test_accuracy"] == 0.0
    assert passed.metrics["candidate"]["mia_efficacy"] > 90.0  # class forgetting: reference ~100 (peers.md §2.2)
    assert not rejected.decision.passed and passed.decision.passed
    assert rejected.settings["forget_classes"] == [forget_class]


def test_misclassify_goal_is_judged_against_the_original(setup):
    evaluation = run(setup, setup["original"], reference=None, goal="misclassify")
    assert evaluation.metrics["candidate"]["misclassified_rate"] == 0.0
    assert not evaluation.decision.passed
    relabel = run(setup, setup["original"], reference=None, goal="relabel", new_labels=setup["data"]["forget"].labels)
    assert relabel.metrics["candidate"]["relabel_rate"] == 100.0  # "new" label = old label: trivially met


def test_evaluation_is_deterministic(setup):
    a, b = run(setup, setup["second"]), run(setup, setup["second"])
    assert a.metrics == b.metrics and a.closeness == b.closeness


def test_report_files(setup, tmp_path):
    evaluation = run(setup, setup["second"], candidate_seconds=1.0)
    files = write_report(evaluation, tmp_path / "report", context={"request_id": "req-1"})
    report = json.loads(files.json.read_text())  # strict JSON: NaN was turned into null
    assert report["gate"]["passed"] is True and report["context"]["request_id"] == "req-1"
    markdown = files.markdown.read_text()
    assert "**Gate: PASS**" in markdown and "| Forget accuracy (FA) |" in markdown and "accuracy.png" in markdown
    assert "<table>" in files.html.read_text()
    for path in files.plots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    flat = flat_metrics(report)
    assert flat["gate.passed"] == 1.0 and all(math.isfinite(v) for v in flat.values())
    assert flat["candidate.forget_accuracy"] == evaluation.metrics["candidate"]["forget_accuracy"]


def test_bad_requests_are_config_errors(setup):
    from forgetflow.errors import ConfigError

    with pytest.raises(ConfigError, match="new label"):
        run(setup, setup["second"], goal="relabel")
    with pytest.raises(ConfigError, match="request kind"):
        run(setup, setup["second"], request_kind="pixels")


def test_outputs_cache_gives_the_same_numbers(setup):
    cache: dict = {}
    first = run(setup, setup["second"], outputs_cache=cache)
    assert sorted(key[0] for key in cache) == ["original", "original:metrics", "reference", "reference:metrics"]
    second = run(setup, setup["damaged"], outputs_cache=cache)
    assert len(cache) == 4  # reused, not recomputed
    fresh = run(setup, setup["damaged"])
    assert second.metrics == fresh.metrics and second.closeness == fresh.closeness
    assert first.metrics["reference"] == second.metrics["reference"]
    # Another forget set (another request) must not reuse the entries.
    d = setup["data"]
    half = LoadedSplit(d["forget"].images[:100], d["forget"].labels[:100], d["forget"].sample_ids[:100])
    other = evaluate_candidate(setup["original"], setup["second"], setup["reference"], forget=half, retain=d["retain"], val=d["val"], test=d["test"], request_kind="samples", goal="forget", outputs_cache=cache)
    alone = evaluate_candidate(setup["original"], setup["second"], setup["reference"], forget=half, retain=d["retain"], val=d["val"], test=d["test"], request_kind="samples", goal="forget")
    assert len(cache) == 8 and other.metrics == alone.metrics
