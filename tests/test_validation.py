"""Forget-set validation with Great Expectations: every rule fails when it should, results are
recorded as counts only, reports are written, and one failing request does not stop a batch."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from forgetflow.cli.requests import register
from forgetflow.data.importer import import_dataset
from forgetflow.data.store import DatasetVersion
from forgetflow.errors import ConfigError
from forgetflow.requests.intake import open_ledger, submit
from forgetflow.requests.schema import RequestError
from forgetflow.settings import load_settings
from forgetflow.validation.suites import ephemeral_context
from forgetflow.validation.validate import current_dataset, validate_request, validate_requests
from forgetflow.workspace import init_workspace


@pytest.fixture(scope="module")
def base_workspace(tmp_path_factory):
    settings = load_settings(tmp_path_factory.mktemp("validation-base"))
    import_dataset(settings, init_workspace(settings), "digits")
    return settings.workspace


@pytest.fixture(scope="module")
def gx_context():
    return ephemeral_context()


@pytest.fixture
def ws(base_workspace, tmp_path):
    """A private copy of the digits workspace (tests tamper with data and the ledger)."""
    target = tmp_path / "ws"
    shutil.copytree(base_workspace, target, symlinks=True)
    return load_settings(target)


@pytest.fixture
def version(ws):
    return DatasetVersion(ws.data_dir / "digits")


def _train(version, label=None):
    m = version.manifest
    rows = m[m["split"] == "train"] if label is None else m[(m["split"] == "train") & (m["label"] == label)]
    return rows["sample_id"].tolist()


def _check(ws, gx_context, request_id, **request):
    submit(ws, {"request_id": request_id, "reason": "test", "requested_by": "pytest", **request})
    return validate_request(ws, request_id, context=gx_context)


def _failed(outcome):
    return set(outcome.failed_rules)


def _set_limits(ws, **limits):
    with open(ws.params_path, "a") as handle:
        handle.write("validation:\n" + "".join(f"  {k}: {v}\n" for k, v in limits.items()))


def test_valid_request_is_validated_and_recorded(ws, version, gx_context):
    ids = _train(version)[:25]
    outcome = _check(ws, gx_context, "ok-1", kind="samples", ids=ids[::-1])
    assert outcome.success and not outcome.failed_rules, outcome.summary
    entry = open_ledger(ws).status("ok-1").last("validated")
    assert entry["sample_ids"] == sorted(ids) and entry["dataset"] == "digits"
    assert entry["forget_set"] == outcome.forget_set.summary() and entry["forget_set"]["n_samples"] == 25
    assert entry["data_version"] and len(entry["data_version"]) == 32
    assert entry["validation"]["success"] and entry["validation"]["evaluated"] == len(outcome.results)
    assert set(entry["validation"]["levels"]) == {"request", "forget_set", "safety", "dataset"}
    report = ws.workspace / entry["report"]
    assert report.is_file() and "PASSED" in report.read_text()
    import hashlib

    assert hashlib.sha256(report.read_bytes()).hexdigest() == entry["report_sha256"]


def test_request_level_failures_are_named_without_values(ws, version, gx_context):
    train = _train(version)
    val = [i for i in version.manifest.loc[version.manifest["split"] == "val", "sample_id"] if i >= 1000]
    missing = 987654
    outcome = _check(ws, gx_context, "bad-1", kind="samples", ids=[train[0], train[0], val[0], missing], goal="misclassify")
    assert _failed(outcome) == {"ids_unique", "ids_exist", "ids_in_train"}
    status = open_ledger(ws).status("bad-1")
    assert status.state == "rejected" and "ids_unique" in status.last("rejected")["reason"]
    summary = json.dumps(status.last("rejected")["validation"])
    numbers = set(re.findall(r"\d+", summary))
    assert "partial_unexpected_list" not in summary and str(missing) not in numbers and str(val[0]) not in numbers
    counts = {r["rule"]: r for r in status.last("rejected")["validation"]["failed_rules"]}
    assert counts["ids_exist"]["unexpected_count"] == 1 and counts["ids_in_train"]["unexpected_count"] == 1
    report = (ws.workspace / status.last("rejected")["report"]).read_text()
    assert "FAILED" in report and str(missing) not in report and str(val[0]) not in set(re.findall(r"\d+", report))


def test_goal_forget_takes_sample_ids_from_any_split(ws, version, gx_context):
    """A person's validation or test image is their data too: goal forget deletes it where it is."""
    m = version.manifest
    ids = [int(m.loc[m["split"] == split, "sample_id"].iloc[0]) for split in ("train", "val", "test")]
    outcome = _check(ws, gx_context, "any-split", kind="samples", ids=ids)
    assert outcome.success, outcome.failed_rules
    assert outcome.forget_set.split_counts() == {"test": 1, "train": 1, "val": 1}


def test_already_erased_samples_and_subjects_are_caught(ws, version, gx_context):
    ledger = open_ledger(ws)
    ids = _train(version)[:3]
    assert _check(ws, gx_context, "first", kind="samples", ids=ids).success
    ledger.append("erased", "first", what="workspace, dvc cache")
    outcome = _check(ws, gx_context, "second", kind="samples", ids=ids[:1] + _train(version)[10:12])
    assert _failed(outcome) == {"ids_not_erased"}

    subject = version.manifest["subject_id"].iloc[0]
    assert _check(ws, gx_context, "subj-a", kind="subjects", ids=[subject]).success
    ledger.append("erased", "subj-a")
    assert "ids_not_erased" in _failed(_check(ws, gx_context, "subj-b", kind="subjects", ids=[subject], goal="misclassify"))


def test_samples_removed_from_the_store_count_as_erased(ws, version, gx_context):
    ids = _train(version)[:2]
    version.remove_samples(ids[:1])
    assert _failed(_check(ws, gx_context, "gone", kind="samples", ids=ids)) == {"ids_exist", "ids_not_erased"}


def test_subject_rules(ws, version, gx_context):
    subject = version.manifest["subject_id"].iloc[5]
    outcome = _check(ws, gx_context, "subj-1", kind="subjects", ids=[subject, subject, "no-such-person"])
    assert _failed(outcome) == {"ids_unique", "subjects_exist"}
    ok = _check(ws, gx_context, "subj-2", kind="subjects", ids=[subject])
    assert ok.success and ok.forget_set.sample_ids.tolist() == sorted(version.manifest.loc[version.manifest["subject_id"] == subject, "sample_id"])


def test_class_rules(ws, version, gx_context):
    _set_limits(ws, max_forget_fraction=0.5)
    assert _failed(_check(ws, gx_context, "cls-1", kind="classes", ids=["3", 3, "11", 42])) == {"ids_unique", "classes_exist"}
    ok = _check(ws, gx_context, "cls-2", kind="classes", ids=[4])
    assert ok.success and set(ok.forget_set.rows["label"]) == {4}
    # A class already removed from train cannot be requested again.
    version.remove_samples(_train(version, label=4))
    assert _failed(_check(ws, gx_context, "cls-3", kind="classes", ids=["4"])) == {"classes_not_erased", "forget_set_not_empty"}


def test_relabel_rules(ws, version, gx_context):
    ids = _train(version)[:3]
    labels = version.manifest.set_index("sample_id").loc[ids, "label"].tolist()
    other = [(label + 1) % 10 for label in labels]
    outcome = _check(ws, gx_context, "rl-1", kind="samples", goal="relabel", ids=ids, new_labels=[labels[0], "no-class", other[2]])
    assert _failed(outcome) == {"relabel_changes_label", "relabel_targets_valid"}
    assert _check(ws, gx_context, "rl-2", kind="samples", goal="relabel", ids=ids, new_labels=[str(o) for o in other]).success


def _rewrite_shard(version, shard, transform):
    path = version.root / "shards" / shard
    array = np.load(path)
    buffer = io.BytesIO()
    np.save(buffer, transform(array))
    path.write_bytes(buffer.getvalue())


def test_content_hash_mismatch_is_caught(ws, version, gx_context):
    row = version.manifest[version.manifest["split"] == "train"].iloc[3]

    def flip_one_pixel(array):
        array[int(row["offset"]), 0, 0, 0] ^= 1
        return array

    _rewrite_shard(version, row["shard"], flip_one_pixel)
    outcome = _check(ws, gx_context, "tamper", kind="samples", ids=[int(row["sample_id"])])
    assert _failed(outcome) == {"content_hashes_match"}


def test_dtype_range_nan_and_shape_are_caught(ws, version, gx_context):
    m = version.manifest[version.manifest["split"] == "train"]
    row = m.iloc[0]
    shard_rows = m[m["shard"] == row["shard"]]

    def to_float_with_nan(array):
        array = array.astype(np.float32)
        array[int(row["offset"]), 0, 0, 0] = np.nan
        array[int(row["offset"]), 1, 1, 0] = 300.0
        array[int(row["offset"]), 2, 2, 0] = -5.0
        return array

    _rewrite_shard(version, row["shard"], to_float_with_nan)
    outcome = _check(ws, gx_context, "float", kind="samples", ids=shard_rows["sample_id"].tolist()[:3])
    assert _failed(outcome) == {"image_dtype", "pixels_finite", "pixels_min_in_range", "pixels_max_in_range", "content_hashes_match"}
    by_rule = {r.rule: r for r in outcome.results}
    assert by_rule["pixels_finite"].counts["unexpected_count"] == 1 and by_rule["image_dtype"].counts["unexpected_count"] == 3

    other = m[m["shard"] != row["shard"]].iloc[0]
    _rewrite_shard(version, other["shard"], lambda a: a[..., 0])  # drop the channel axis
    assert "image_shape" in _failed(_check(ws, gx_context, "shape", kind="samples", ids=[int(other["sample_id"])]))


def test_missing_shard_and_bad_labels_are_caught(ws, version, gx_context):
    m = version.manifest[version.manifest["split"] == "train"]
    row = m.iloc[0]
    (version.root / "shards" / row["shard"]).unlink()
    assert {"images_readable", "content_hashes_match"} <= _failed(_check(ws, gx_context, "noshard", kind="samples", ids=[int(row["sample_id"])]))

    manifest = version.manifest.copy()
    victim = m[m["shard"] != row["shard"]].iloc[0]
    manifest.loc[manifest["sample_id"] == victim["sample_id"], "label"] = 12
    manifest.to_csv(version.root / "manifest.csv", index=False)
    fresh = DatasetVersion(version.root)
    submit(ws, {"request_id": "badlabel", "kind": "samples", "ids": [int(victim["sample_id"])], "reason": "t", "requested_by": "p"})
    outcome = validate_request(ws, "badlabel", version=fresh, context=gx_context)
    assert {"labels_in_domain", "manifest_labels_in_domain"} <= _failed(outcome)


def test_safety_limits(ws, version, gx_context):
    train = _train(version)
    limit = int(0.30 * len(train))
    assert _failed(_check(ws, gx_context, "big", kind="samples", ids=train[: limit + 1])) >= {"max_forget_fraction"}
    assert "max_forget_fraction" not in _failed(_check(ws, gx_context, "edge", kind="samples", ids=train[limit + 1 : 2 * limit + 1]))
    assert _failed(_check(ws, gx_context, "empty", kind="samples", ids=[10**8])) == {"ids_exist", "forget_set_not_empty"}
    # A sample request may not empty a class; a class request may.
    assert "class_not_emptied" in _failed(_check(ws, gx_context, "allof0", kind="samples", ids=_train(version, label=0)))
    assert _check(ws, gx_context, "class0", kind="classes", ids=[0]).success


def test_class_requests_must_leave_two_classes_and_limits_come_from_params(ws, version, gx_context):
    _set_limits(ws, max_forget_fraction=1.0)
    assert _failed(_check(ws, gx_context, "nine", kind="classes", ids=list(range(9)))) == {"classes_left"}
    assert _check(ws, gx_context, "eight", kind="classes", ids=list(range(8))).success
    ws.params_path.write_text(ws.params_path.read_text() + "  min_classes_left: 1\n")
    with pytest.raises(ConfigError, match="min_classes_left"):
        validate_requests(ws, ["nine"])


def test_batch_continues_past_failures_and_unknown_requests(ws, version, gx_context):
    train = _train(version)
    for rid, ids in (("b-1", train[:5]), ("b-2", [10**7]), ("b-3", train[5:9])):
        submit(ws, {"request_id": rid, "kind": "samples", "ids": ids, "reason": "t", "requested_by": "p"})
    outcomes = validate_requests(ws, ["b-1", "b-2", "nope", "b-3"])
    assert [(o.request_id, o.success) for o in outcomes] == [("b-1", True), ("b-2", False), ("nope", False), ("b-3", True)]
    assert outcomes[2].error and "no request nope" in outcomes[2].error
    # A rejected request stays rejected; a validated one can be validated again (new data version).
    with pytest.raises(RequestError, match="rejected"):
        validate_request(ws, "b-2", context=gx_context)
    assert validate_request(ws, "b-1", context=gx_context).success
    assert [e["event"] for e in open_ledger(ws).status("b-1").history] == ["received", "validated", "validated"]
    assert open_ledger(ws).verify().ok


def test_progress_bars_are_off(ws, version, capfd):
    submit(ws, {"request_id": "quiet", "kind": "samples", "ids": _train(version)[:2], "reason": "t", "requested_by": "p"})
    validate_requests(ws, ["quiet"])
    captured = capfd.readouterr()
    assert "Calculating Metrics" not in captured.out + captured.err


def test_current_dataset_discovery(ws, tmp_path):
    assert current_dataset(ws).name == "digits"
    shutil.copytree(ws.data_dir / "digits", ws.data_dir / ".previous-digits")  # the store's backup copy
    assert current_dataset(ws).name == "digits"
    with pytest.raises(ConfigError, match="no dataset"):
        current_dataset(load_settings(tmp_path / "empty"))
    shutil.copytree(ws.data_dir / "digits", ws.data_dir / "digits2")
    with pytest.raises(ConfigError, match="several datasets"):
        current_dataset(ws)
    assert current_dataset(ws, "digits2").root.name == "digits2"


def test_cli_validate(ws, version):
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    submit(ws, {"request_id": "cli-ok", "kind": "samples", "ids": _train(version)[:4], "reason": "t", "requested_by": "p"})
    submit(ws, {"request_id": "cli-bad", "kind": "samples", "ids": [10**7], "reason": "t", "requested_by": "p"})
    out = runner.invoke(app, ["request", "validate", "cli-ok", "-w", str(ws.workspace)])
    assert out.exit_code == 0 and "validated cli-ok" in out.output
    out = runner.invoke(app, ["request", "validate", "cli-bad", "-w", str(ws.workspace)])
    assert out.exit_code == 1 and "ids_exist" in out.output
    out = runner.invoke(app, ["request", "show", "cli-bad", "-w", str(ws.workspace)])
    assert "rejected" in out.output and "failed expectations" in out.output


def test_great_expectations_is_imported_lazily():
    code = "import sys, forgetflow.validation.validate, forgetflow.requests.intake; print('great_expectations' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_lost_salt_fails_only_the_subject_request(ws, version):
    subject = version.manifest["subject_id"].iloc[0]
    submit(ws, {"request_id": "s-lost", "kind": "subjects", "ids": [subject], "reason": "t", "requested_by": "p"})
    submit(ws, {"request_id": "plain", "kind": "samples", "ids": _train(version)[:2], "reason": "t", "requested_by": "p"})
    (ws.state_dir / "requests.json").unlink()
    lost, plain = validate_requests(ws, ["s-lost", "plain"])
    assert not lost.success and "salt" in lost.error and plain.success
    assert open_ledger(ws).status("s-lost").state == "received"  # retried once the salt is restored


def test_a_batch_checks_the_manifest_once_and_reports_it_for_every_request(ws, version, monkeypatch):
    import forgetflow.validation.validate as V

    train = _train(version)
    manifest = version.manifest.copy()
    manifest.loc[manifest["sample_id"] == train[-1], "label"] = 12  # a broken manifest fails every request
    manifest.to_csv(version.root / "manifest.csv", index=False)
    for i in range(3):
        submit(ws, {"request_id": f"m-{i}", "kind": "samples", "ids": train[2 * i : 2 * i + 2], "reason": "t", "requested_by": "p"})
    built = []
    real = V.F.manifest_frame
    monkeypatch.setattr(V.F, "manifest_frame", lambda v: built.append(v) or real(v))
    outcomes = validate_requests(ws, ["m-0", "m-1", "m-2"])
    assert len(built) == 1  # not once per request
    dataset_rules = [[r for r in o.results if r.level == "dataset"] for o in outcomes]
    assert len(dataset_rules[0]) == 5 and dataset_rules[0] == dataset_rules[1] == dataset_rules[2]
    assert all("manifest_labels_in_domain" in _failed(o) and not o.success for o in outcomes)
    assert all("manifest_labels_in_domain" in o.report_path.read_text() for o in outcomes)


def test_a_batch_reads_the_ledger_once_and_still_sees_earlier_erasures(ws, version, monkeypatch):
    from forgetflow.requests.ledger import Ledger

    train = _train(version)
    submit(ws, {"request_id": "gone", "kind": "samples", "ids": train[:2], "reason": "t", "requested_by": "p"})
    assert validate_requests(ws, ["gone"])[0].success
    open_ledger(ws).append("erased", "gone", sample_ids=train[:2])
    for rid, ids in (("l-0", train[2:4]), ("l-1", train[1:3]), ("l-2", train[4:6])):
        submit(ws, {"request_id": rid, "kind": "samples", "ids": ids, "reason": "t", "requested_by": "p"})
    folds = []
    real = Ledger.statuses
    monkeypatch.setattr(Ledger, "statuses", lambda self: folds.append(1) or real(self))
    # l-0 named twice: the second validation sees the first's entry, as it would one batch later
    outcomes = validate_requests(ws, ["l-0", "l-1", "l-2", "l-0"])
    assert len(folds) == 1  # not once per request: each read folds the whole ledger
    assert [(o.request_id, o.success) for o in outcomes] == [("l-0", True), ("l-1", False), ("l-2", True), ("l-0", True)]
    assert _failed(outcomes[1]) == {"ids_not_erased"}  # sample train[1] went with "gone"
    assert [e["event"] for e in open_ledger(ws).status("l-0").history] == ["received", "validated", "validated"]
    assert open_ledger(ws).verify().ok


def _alone(rules, frames, context):
    """Each rule's declared expectation run by GX on this request's frame alone: what a batch must
    reproduce for every request in it."""
    from forgetflow.validation.suites import _observed, import_gx

    gx, gxe = import_gx()
    source = context.data_sources.add_pandas(name=f"alone-{len(context.data_sources.all())}")
    out = {}
    for rule in rules:
        batch = source.add_dataframe_asset(name=rule.rule).add_batch_definition_whole_dataframe(name=rule.rule).get_batch(batch_parameters={"dataframe": frames[rule.frame]})
        suite = gx.ExpectationSuite(name=rule.rule, expectations=[getattr(gxe, rule.expectation)(**rule.kwargs)])
        [result] = batch.validate(suite, result_format="BASIC").results
        info = result.result
        counts = {key: int(info[key]) for key in ("element_count", "unexpected_count", "missing_count") if key in info}
        if "observed_value" in info:
            counts["observed_value"] = _observed(info["observed_value"])
        out[rule.rule] = (bool(result.success), counts)
    return out


def test_a_batch_gives_each_request_the_verdicts_and_counts_of_its_own_validation(ws, version, gx_context, monkeypatch):
    import forgetflow.validation.suites as S
    from forgetflow.validation.validate import LedgerSnapshot, prepare
    from forgetflow.validation.limits import load_limits
    from forgetflow.params import load_params

    _set_limits(ws, max_forget_fraction=0.2)
    train, subject = _train(version), version.manifest["subject_id"].iloc[5]
    labels = version.manifest.set_index("sample_id").loc[train[:3], "label"].tolist()
    requests = {
        "ok": dict(kind="samples", ids=train[:4]),
        "dupes": dict(kind="samples", ids=[train[4], train[4], train[5], 10**7, 10**7 + 1]),
        "empty": dict(kind="samples", ids=[10**8]),
        "big": dict(kind="samples", ids=train[10 : 10 + int(0.2 * len(train)) + 1]),
        "ok-2": dict(kind="samples", ids=train[2:6]),  # overlaps "ok" and "dupes": unique within a request only
        "subj": dict(kind="subjects", ids=[subject, subject, "nobody"]),
        "cls": dict(kind="classes", ids=["3", 3, "11", 42]),  # two unknown classes: nulls are not repeats
        "cls-ok": dict(kind="classes", ids=[5]),
        "relabel": dict(kind="samples", goal="relabel", ids=train[:3], new_labels=[labels[0], "no-class", (labels[2] + 1) % 10]),
    }
    for rid, request in requests.items():
        submit(ws, {"request_id": rid, "reason": "t", "requested_by": "p", **request})
    snapshot = LedgerSnapshot.read(ws)
    limits = load_limits(load_params(ws.params_path))
    prepared = [prepare(ws, rid, version=version, limits=limits, snapshot=snapshot) for rid in requests]
    runs = []
    real = S._run_group
    monkeypatch.setattr(S, "_run_group", lambda *a, **k: runs.append(1) or real(*a, **k))
    batched = S.run_batch([(p.checked_rules, p.frames) for p in prepared], name="t", context=gx_context)
    assert len(runs) == 4  # one GX run per frame for each kind of request: samples, relabel, subjects, classes
    for p, results in zip(prepared, batched):
        alone = _alone(p.checked_rules, p.frames, gx_context)
        assert {r.rule: (r.success, r.counts) for r in results} == alone, p.request_id
        assert not any(r.error for r in results)
    failed = {p.request_id: {r.rule for r in results if not r.success} for p, results in zip(prepared, batched)}
    assert failed["ok"] == failed["ok-2"] == failed["cls-ok"] == set()
    assert failed["dupes"] == {"ids_unique", "ids_exist"} and failed["empty"] == {"ids_exist", "forget_set_not_empty"}
    assert "max_forget_fraction" in failed["big"] and failed["subj"] == {"ids_unique", "subjects_exist"}
    assert failed["cls"] == {"ids_unique", "classes_exist"} and failed["relabel"] == {"relabel_changes_label", "relabel_targets_valid"}
