"""The expectation suites, declared in code, and their run in an ephemeral Great Expectations context.

Each expectation carries a `rule` (a stable name used in the ledger, the report and tests) and a
level: `request` (the request makes sense for this dataset version), `forget_set` (the data to be
forgotten is what the manifest says), `safety` (limits from params.yaml) and `dataset` (the version
itself is sane). A batch of requests is validated with one suite per frame for all the requests
that share their rules (`run_batch`). GX's results name the offending values (e.g. sample IDs);
they are reduced here to each request's counts, and no value leaves this module.
"""

from __future__ import annotations

import itertools
import numbers
import os
import uuid
from dataclasses import dataclass, field

import pandas as pd

from forgetflow.requests.resolution import RecordedRequest
from forgetflow.validation.limits import ValidationLimits

LEVELS = ("request", "forget_set", "safety", "dataset")


@dataclass(frozen=True)
class Rule:
    rule: str
    level: str
    frame: str
    expectation: str  # class name in great_expectations.expectations
    kwargs: dict
    description: str


@dataclass
class RuleResult:
    rule: str
    level: str
    expectation: str
    description: str
    success: bool
    counts: dict = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict:
        out = {"rule": self.rule, "level": self.level, "expectation": self.expectation, "success": self.success, **self.counts}
        if self.error:
            out["error"] = self.error
        return out


def _r(rule, level, frame, expectation, description, **kwargs) -> Rule:
    return Rule(rule, level, frame, expectation, kwargs, description)


def build_rules(request: RecordedRequest, *, num_classes: int, image_shape: tuple, dtype: str, pixel_range: tuple, n_train: int, limits: ValidationLimits) -> list[Rule]:
    """Every expectation for one request, in the order they are reported."""
    rules: list[Rule] = []
    req = "request"
    if request.kind == "samples":
        rules += [
            _r("ids_unique", req, req, "ExpectColumnValuesToBeUnique", "no sample ID is named twice", column="target"),
            _r("ids_exist", req, req, "ExpectColumnValuesToNotBeNull", "every sample ID exists in the dataset version", column="split"),
            _r("ids_not_erased", req, req, "ExpectColumnValuesToBeInSet", "no sample was already erased by an earlier request", column="already_erased", value_set=[False]),
        ]
        if request.goal != "forget":
            # Goal forget deletes a sample from whatever split holds it (a person's test photo is
            # their data too); the instance goals ask for behaviour on samples the model trained on.
            rules.append(_r("ids_in_train", req, req, "ExpectColumnValuesToBeInSet", f"every sample ID is in the train split (goal {request.goal})", column="split", value_set=["train"]))
        if request.goal == "relabel":
            rules += [
                _r("relabel_targets_valid", req, req, "ExpectColumnValuesToNotBeNull", "every new label is a class of the dataset", column="new_label"),
                _r("relabel_changes_label", req, req, "ExpectColumnValuesToBeInSet", "every new label differs from the sample's current label", column="label_changed", value_set=[True]),
            ]
    elif request.kind == "subjects":
        rules += [
            _r("ids_unique", req, req, "ExpectColumnValuesToBeUnique", "no subject is named twice", column="target"),
            _r("subjects_exist", req, req, "ExpectColumnValuesToNotBeNull", "every subject has samples in the dataset version", column="n_samples"),
            _r("ids_not_erased", req, req, "ExpectColumnValuesToBeInSet", "no subject was already erased by an earlier request", column="already_erased", value_set=[False]),
        ]
    else:
        rules += [
            _r("ids_unique", req, req, "ExpectColumnValuesToBeUnique", "no class is named twice (by name or index)", column="label"),
            _r("classes_exist", req, req, "ExpectColumnValuesToNotBeNull", "every class name or index exists", column="label"),
            _r("classes_not_erased", req, req, "ExpectColumnValuesToBeBetween", "every class still has train samples (not erased before)", column="train_count", min_value=1),
        ]
    fs = "forget_set"
    shape = "x".join(map(str, image_shape))
    rules += [
        _r("forget_ids_unique", fs, fs, "ExpectColumnValuesToBeUnique", "the resolved forget set has no repeated sample", column="sample_id"),
        _r("labels_in_domain", fs, fs, "ExpectColumnValuesToBeBetween", f"labels lie in 0..{num_classes - 1}", column="label", min_value=0, max_value=num_classes - 1),
        _r("images_readable", fs, fs, "ExpectColumnValuesToNotBeNull", "every image can be read from its shard", column="stored_hash"),
        _r("image_shape", fs, fs, "ExpectColumnValuesToBeInSet", f"every image has the manifest's shape {shape}", column="shape", value_set=[shape]),
        _r("image_dtype", fs, fs, "ExpectColumnValuesToBeInSet", f"every image has dtype {dtype}", column="dtype", value_set=[dtype]),
        _r("pixels_min_in_range", fs, fs, "ExpectColumnValuesToBeBetween", f"no pixel below {pixel_range[0]}", column="pixel_min", min_value=pixel_range[0]),
        _r("pixels_max_in_range", fs, fs, "ExpectColumnValuesToBeBetween", f"no pixel above {pixel_range[1]}", column="pixel_max", max_value=pixel_range[1]),
        _r("pixels_finite", fs, fs, "ExpectColumnValuesToBeInSet", "no NaN or infinite pixel", column="finite", value_set=[True]),
        _r("content_hashes_match", fs, fs, "ExpectColumnPairValuesToBeEqual", "each image's SHA-256 matches the manifest", column_A="content_hash", column_B="stored_hash"),
    ]
    sf = "safety"
    limit = limits.max_forget_train(n_train)
    rules += [
        _r("forget_set_not_empty", sf, fs, "ExpectTableRowCountToBeBetween", "the forget set is not empty", min_value=1),
        _r("max_forget_fraction", sf, fs, "ExpectColumnSumToBeBetween", f"at most {limits.max_forget_fraction:.0%} of train ({limit} of {n_train} samples)", column="is_train", max_value=limit),
        _r("classes_left", sf, "classes", "ExpectColumnUniqueValueCountToBeBetween", f"at least {limits.min_classes_left} classes keep train samples", column="kept_class", min_value=limits.min_classes_left),
    ]
    if request.kind != "classes":
        rules.append(_r("class_not_emptied", sf, "classes", "ExpectColumnValuesToBeBetween", f"every touched class keeps at least {limits.min_class_samples_left} train sample(s); removing a class needs a class request", column="remaining_if_touched", min_value=limits.min_class_samples_left))
    ds = "dataset"
    rules += [
        _r("manifest_ids_unique", ds, "manifest", "ExpectColumnValuesToBeUnique", "manifest sample IDs are unique", column="sample_id"),
        _r("manifest_labels_in_domain", ds, "manifest", "ExpectColumnValuesToBeBetween", "manifest labels lie in the label domain", column="label", min_value=0, max_value=num_classes - 1),
        _r("manifest_splits_known", ds, "manifest", "ExpectColumnValuesToBeInSet", "every manifest split is train, val or test", column="split", value_set=["train", "val", "test"]),
        _r("manifest_subjects_present", ds, "manifest", "ExpectColumnValuesToNotBeNull", "every sample has a subject", column="subject_id"),
        _r("manifest_hashes_wellformed", ds, "manifest", "ExpectColumnValueLengthsToEqual", "every content hash is a 64-character SHA-256", column="content_hash", value=64),
    ]
    return rules


# Great Expectations -------------------------------------------------------------------------
def import_gx():
    """Import GX (about 2.5 s) only when a suite runs; analytics off for older 1.x releases."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


def ephemeral_context():
    """An in-memory context with the "Calculating Metrics" progress bars off."""
    gx, _ = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


_run_counter = itertools.count()


# The latest context only (id -> (context, frame -> batch definition)): a batch uses one context.
_BATCH_DEFINITIONS: dict[int, tuple[object, dict]] = {}


def _batch_definition(context, frame_name: str):
    """One pandas data source per context and one asset per frame, reused by every request, so a
    batch of requests does not write the context's stores once per request."""
    entry = _BATCH_DEFINITIONS.get(id(context))
    if entry is None or entry[0] is not context:
        source = context.data_sources.add_pandas(name=f"forgetflow-{uuid.uuid4().hex[:8]}")
        _BATCH_DEFINITIONS.clear()
        entry = _BATCH_DEFINITIONS[id(context)] = (context, {"source": source})
    definitions = entry[1]
    if frame_name not in definitions:
        asset = definitions["source"].add_dataframe_asset(name=frame_name)
        definitions[frame_name] = asset.add_batch_definition_whole_dataframe(name=frame_name)
    return definitions[frame_name]


REQUEST_KEY = "_request"  # the batch frames' column that says which request a row belongs to

# Table-level rules judge one number per request (a row count, a column sum, a count of distinct
# values). In a batch, pandas computes that number for every request and the rule is checked row by
# row on the `aggregates` frame (one row per request) with the same bounds.
_AGGREGATES = {
    "ExpectTableRowCountToBeBetween": lambda groups, kwargs: groups.size(),
    "ExpectColumnSumToBeBetween": lambda groups, kwargs: groups[kwargs["column"]].sum(),
    "ExpectColumnUniqueValueCountToBeBetween": lambda groups, kwargs: groups[kwargs["column"]].nunique(),
}
_RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": [REQUEST_KEY], "return_unexpected_index_query": False}


def run_batch(items: list[tuple[list[Rule], dict[str, pd.DataFrame]]], *, name: str, context=None) -> list[list[RuleResult]]:
    """Each item's rules on its own frames, with one GX validation per frame for every item that has
    the same rules: the frames are stacked with a request column and each request's verdict and
    counts are read back from the unexpected rows that GX names. Built per item, a suite cost about
    0.1 s of GX set-up per frame, most of a 100-request batch's validation time.

    Suites are built in code and validated directly on the batch (they are not stored in the
    context: an ephemeral context keeps nothing anyway, and storing costs time).
    """
    gx, gxe = import_gx()
    context = context or ephemeral_context()
    groups: dict[tuple, list[int]] = {}
    for index, (rules, _) in enumerate(items):
        groups.setdefault(tuple(_signature(rule) for rule in rules), []).append(index)
    out: list[list[RuleResult]] = [[] for _ in items]
    for members in groups.values():
        rules = items[members[0]][0]
        found = _run_group(gx, gxe, context, rules, [items[i][1] for i in members], suffix=f"{name}-{next(_run_counter)}")
        for index, results in zip(members, found):
            out[index] = results
    return out


def _signature(rule: Rule) -> tuple:
    return (rule.rule, rule.level, rule.frame, rule.expectation, repr(sorted(rule.kwargs.items())), rule.description)


def _run_group(gx, gxe, context, rules: list[Rule], frames: list[dict[str, pd.DataFrame]], *, suffix: str) -> list[list[RuleResult]]:
    n = len(frames)
    stacked = {name: pd.concat([f[name].assign(**{REQUEST_KEY: k}) for k, f in enumerate(frames)], ignore_index=True) for name in dict.fromkeys(rule.frame for rule in rules)}
    aggregates = pd.DataFrame({REQUEST_KEY: range(n)})
    checked: dict[str, list[tuple[Rule, object]]] = {}  # frame -> (rule, the expectation run for it)
    for rule in rules:
        if rule.expectation in _AGGREGATES:
            values = _AGGREGATES[rule.expectation](stacked[rule.frame].groupby(REQUEST_KEY), rule.kwargs)
            aggregates[rule.rule] = values.reindex(range(n), fill_value=0).to_numpy()
            bounds = {key: value for key, value in rule.kwargs.items() if key != "column"}
            expectation = gxe.ExpectColumnValuesToBeBetween(column=rule.rule, **bounds, meta={"rule": rule.rule})
            checked.setdefault("aggregates", []).append((rule, expectation))
        elif rule.expectation == "ExpectColumnValuesToBeUnique":  # unique within each request
            expectation = gxe.ExpectCompoundColumnsToBeUnique(column_list=[REQUEST_KEY, rule.kwargs["column"]], ignore_row_if="any_value_is_missing", meta={"rule": rule.rule})
            checked.setdefault(rule.frame, []).append((rule, expectation))
        else:
            checked.setdefault(rule.frame, []).append((rule, getattr(gxe, rule.expectation)(**rule.kwargs, meta={"rule": rule.rule})))
    stacked["aggregates"] = aggregates
    per_request: list[dict[str, RuleResult]] = [{} for _ in range(n)]
    for frame_name, pairs in checked.items():
        frame = stacked[frame_name]
        suite = gx.ExpectationSuite(name=f"{frame_name}-{suffix}", expectations=[expectation for _, expectation in pairs])
        batch = _batch_definition(context, frame_name).get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(suite, result_format=_RESULT_FORMAT)
        rule_of = {rule.rule: rule for rule, _ in pairs}
        for result in outcome.results:
            rule = rule_of[result.expectation_config.meta["rule"]]
            for k, reduced in enumerate(_split(rule, result, frame, n, aggregate=frame_name == "aggregates")):
                per_request[k][rule.rule] = reduced
    return [[found[rule.rule] for rule in rules] for found in per_request]


def _split(rule: Rule, result, frame: pd.DataFrame, n: int, *, aggregate: bool) -> list[RuleResult]:
    """One batched result as each request's own: its rows, its unexpected rows, its missing values;
    an aggregate rule reports the request's number as the observed value. The offending values GX
    returns are counted here and dropped."""
    info = result.result or {}
    error = _error_of(result)
    unexpected = [0] * n
    for row in info.get("unexpected_index_list") or []:
        unexpected[int(row[REQUEST_KEY])] += 1
    if error is None and sum(unexpected) != info.get("unexpected_count", 0):
        error = "Great Expectations did not name every unexpected row"
    if error is None and not result.success and not any(unexpected):
        error = "failed without naming an unexpected row"
    if aggregate:
        counts = [{"observed_value": _observed(value)} for value in frame[rule.rule]]
    else:
        keys = frame[REQUEST_KEY]
        sizes = keys.value_counts().reindex(range(n), fill_value=0)
        missing = _missing(rule, frame).groupby(keys).sum().reindex(range(n), fill_value=0) if "missing_count" in info else None
        counts = [{"element_count": int(sizes[k]), "unexpected_count": unexpected[k], **({"missing_count": int(missing[k])} if missing is not None else {})} for k in range(n)]
    if error is not None:
        counts = [{} for _ in range(n)]
    return [RuleResult(rule.rule, rule.level, rule.expectation, rule.description, error is None and unexpected[k] == 0, counts[k], error) for k in range(n)]


def _missing(rule: Rule, frame: pd.DataFrame) -> pd.Series:
    """The rows GX leaves out of a rule as missing: a null in its column; both nulls for a pair."""
    if "column" in rule.kwargs:
        return frame[rule.kwargs["column"]].isna()
    return frame[rule.kwargs["column_A"]].isna() & frame[rule.kwargs["column_B"]].isna()


def _observed(value):
    return int(value) if isinstance(value, numbers.Integral) else round(float(value), 6)


def _error_of(result) -> str | None:
    exception = getattr(result, "exception_info", None) or {}
    if exception.get("raised_exception"):
        message = str(exception.get("exception_message") or "error")
        return message.splitlines()[0][:200]
    return None


def summarize(results: list[RuleResult]) -> dict:
    """The ledger's validation summary: counts and which rules failed, never sample values."""
    levels = {}
    for level in LEVELS:
        mine = [r for r in results if r.level == level]
        if mine:
            levels[level] = {"evaluated": len(mine), "failed": sum(not r.success for r in mine)}
    failed = [r for r in results if not r.success]
    return {
        "success": not failed,
        "evaluated": len(results),
        "failed": len(failed),
        "levels": levels,
        "failed_rules": [r.as_dict() for r in failed],
    }
