"""Validate recorded requests against the current dataset version and record the outcome.

A passing request gets a `validated` ledger entry (dataset, data version, forget-set counts, hash
and sample IDs, the validation summary, the report's path and SHA-256); a failing one a `rejected`
entry naming the failed rules. In a batch every request gets its own verdict, so one failing
request does not hold up the others, but the work is done once per batch: the requests' frames are
checked by one GX run per frame (`suites.run_batch`; run per request, GX's set-up made a 100-request
batch cost 19 s on digits), the dataset's own rules (the manifest) once (`DatasetChecks`) and the
ledger is read once (`LedgerSnapshot`). A request is prepared (`prepare`), checked, and recorded
(`record`): nothing is written for it until its results are in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from forgetflow.data.store import DatasetVersion
from forgetflow.errors import ForgetflowError
from forgetflow.params import load_params
from forgetflow.requests.intake import open_ledger
from forgetflow.requests.ledger import Ledger, RequestStatus
from forgetflow.requests.pseudonyms import workspace_salt
from forgetflow.requests.resolution import ForgetSet, RecordedRequest, resolve
from forgetflow.requests.schema import RequestError
from forgetflow.settings import Settings
from forgetflow.validation import frames as F
from forgetflow.validation.limits import ValidationLimits, load_limits
from forgetflow.validation.report import render_report, report_dir
from forgetflow.validation.suites import Rule, RuleResult, build_rules, ephemeral_context, run_batch, summarize

VALIDATABLE_STATES = ("received", "validated")  # validated again when the dataset version moved on


@dataclass
class ValidationOutcome:
    request_id: str
    success: bool
    summary: dict = field(default_factory=dict)
    results: list[RuleResult] = field(default_factory=list)
    forget_set: ForgetSet | None = None
    report_path: Path | None = None
    error: str | None = None  # the request could not be validated at all (unknown, wrong state)

    @property
    def failed_rules(self) -> list[str]:
        return [r.rule for r in self.results if not r.success]


def current_dataset(settings: Settings, name: str | None = None) -> DatasetVersion:
    """The named dataset version, or the only one in the workspace (several: an error listing them)."""
    from forgetflow.data.importer import default_dataset

    return DatasetVersion(settings.data_dir / default_dataset(settings, name))


def data_version_of(settings: Settings, version: DatasetVersion) -> str | None:
    from forgetflow.data.versioning import DvcWorkspace
    from forgetflow.errors import VersioningError

    try:
        return DvcWorkspace(settings.workspace, settings.remote_url, settings.state_dir, settings.dvc_remote_config).md5(version.root)
    except (VersioningError, OSError, KeyError, TypeError):
        return None


def validate_requests(settings: Settings, request_ids: list[str], *, dataset: str | None = None, context=None, batch_id: str | None = None) -> list[ValidationOutcome]:
    """Give each request its own verdict, with the suites run once for the batch (one GX run per
    frame for all requests of the same kind); errors stay per request. A request named twice
    is validated again in a second round, as it would be one batch later."""
    version = current_dataset(settings, dataset)
    limits = load_limits(load_params(settings.params_path))
    shared = DatasetChecks(version, data_version_of(settings, version), context)
    snapshot = LedgerSnapshot.read(settings)
    outcomes: dict[int, ValidationOutcome] = {}
    for positions in _rounds(request_ids):
        prepared: dict[int, PreparedRequest] = {}
        for position in positions:
            try:
                prepared[position] = prepare(settings, request_ids[position], version=version, limits=limits, snapshot=snapshot)
            except ForgetflowError as exc:  # unknown request, wrong state, lost salt: this request only
                outcomes[position] = ValidationOutcome(request_ids[position], False, error=exc.message)
        found = run_batch([(p.checked_rules, p.frames) for p in prepared.values()], name="batch", context=shared.context)
        for (position, request), results in zip(prepared.items(), found):
            try:
                outcomes[position] = record(settings, request, results, shared=shared, batch_id=batch_id)
            except ForgetflowError as exc:  # changed while the suites ran
                outcomes[position] = ValidationOutcome(request.request_id, False, error=exc.message)
    return [outcomes[position] for position in range(len(request_ids))]


def _rounds(request_ids: list[str]) -> list[list[int]]:
    """Positions of the request IDs split into rounds in which no ID repeats."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for position, request_id in enumerate(request_ids):
        index = seen[request_id] = seen.get(request_id, -1) + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(position)
    return rounds


class DatasetChecks:
    """What every request of a batch checks the same way: the manifest's own expectations (the
    "dataset" rules) and the DVC version, computed once per batch instead of once per request. Each
    request's report and ledger entry still list the dataset rules' results."""

    def __init__(self, version: DatasetVersion, data_version: str | None, context=None):
        self.version, self.data_version = version, data_version
        self.context = context or ephemeral_context()
        self._results: dict[str, RuleResult] = {}

    def results(self, rules: list) -> list[RuleResult]:
        """The results of these manifest rules, each validated once."""
        missing = [rule for rule in rules if rule.rule not in self._results]
        if missing:
            [found] = run_batch([(missing, {"manifest": F.manifest_frame(self.version)})], name="dataset", context=self.context)
            self._results.update((r.rule, r) for r in found)
        return [self._results[rule.rule] for rule in rules]


@dataclass
class LedgerSnapshot:
    """The ledger as a batch's validation starts: every request's status, and the samples and
    subjects earlier requests erased. Read once per batch: read per request, parsing and folding the
    whole ledger cost 0.37 s per request at 20,100 entries and made a batch O(batch × ledger).
    Validating a request appends only that request's own entry, so the snapshot stays true for the
    rest of the batch; each request's own history is checked again under the ledger lock."""

    ledger: Ledger
    statuses: dict[str, RequestStatus]
    erased_ids: set[int]
    erased_subjects: set[str]

    @classmethod
    def read(cls, settings: Settings) -> "LedgerSnapshot":
        ledger = open_ledger(settings)
        statuses = ledger.statuses()
        # Only requests in state `erased` count, and a request being validated never is one.
        erased_ids, erased_subjects = F.erased_targets(statuses)
        return cls(ledger, statuses, erased_ids, erased_subjects)


@dataclass
class PreparedRequest:
    """A request resolved against the dataset version, with the frames and rules its suites check."""

    request_id: str
    status: RequestStatus
    request: RecordedRequest
    version: DatasetVersion
    forget: ForgetSet
    frames: dict
    rules: list[Rule]
    limits: ValidationLimits
    ledger: Ledger

    @property
    def checked_rules(self) -> list[Rule]:
        """The rules checked on this request's own frames (the manifest's are the batch's)."""
        return [rule for rule in self.rules if rule.frame != "manifest"]


def validate_request(settings: Settings, request_id: str, *, version: DatasetVersion | None = None, dataset: str | None = None, limits: ValidationLimits | None = None, context=None) -> ValidationOutcome:
    """Validate and record one request; raises what `validate_requests` reports per request."""
    version = version or current_dataset(settings, dataset)
    limits = limits or load_limits(load_params(settings.params_path))
    request = prepare(settings, request_id, version=version, limits=limits, snapshot=LedgerSnapshot.read(settings))
    shared = DatasetChecks(version, data_version_of(settings, version), context)
    [results] = run_batch([(request.checked_rules, request.frames)], name=request_id, context=shared.context)
    return record(settings, request, results, shared=shared)


def prepare(settings: Settings, request_id: str, *, version: DatasetVersion, limits: ValidationLimits, snapshot: LedgerSnapshot) -> PreparedRequest:
    status = snapshot.statuses.get(request_id)
    if status is None:
        raise RequestError(f"no request {request_id} in the ledger", "list requests with `forgetflow request list`")
    if status.state not in VALIDATABLE_STATES:
        raise RequestError(f"request {request_id} is {status.state}; only received or validated requests can be validated", "submit a new request if this one was rejected")
    request = RecordedRequest.from_status(status)
    salt = workspace_salt(settings.state_dir, create=False) if request.kind == "subjects" else None

    forget = resolve(request, version, salt=salt)
    frames = {
        "request": F.request_frame(request, version, salt=salt, erased_ids=snapshot.erased_ids, erased_subjects=snapshot.erased_subjects),
        "forget_set": F.forget_set_frame(forget, version),
        "classes": F.classes_frame(forget, version),
    }
    n_train = int((version.manifest["split"] == "train").sum())
    rules = build_rules(
        request,
        num_classes=version.num_classes,
        image_shape=version.image_shape,
        dtype=version.meta.get("dtype", "uint8"),
        pixel_range=tuple(version.meta.get("pixel_range", (0, 255))),
        n_train=n_train,
        limits=limits,
    )
    return PreparedRequest(request_id, status, request, version, forget, frames, rules, limits, snapshot.ledger)


def record(settings: Settings, prepared: PreparedRequest, results: list[RuleResult], *, shared: DatasetChecks, batch_id: str | None = None) -> ValidationOutcome:
    """Merge the request's results with the batch's manifest results, write the report and the
    ledger entry (`validated` or `rejected`)."""
    if shared.version is not prepared.version:
        raise ValueError("record: `shared` checks belong to another dataset version")
    request_id, request, status, forget, ledger = prepared.request_id, prepared.request, prepared.status, prepared.forget, prepared.ledger
    found = {r.rule: r for r in results + shared.results([rule for rule in prepared.rules if rule.frame == "manifest"])}
    results = [found[rule.rule] for rule in prepared.rules]  # in the order they are reported
    summary = summarize(results)
    data_version = shared.data_version
    validated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    report_path = report_dir(settings.workspace) / f"{request_id}.md"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(
        request_id=request_id, kind=request.kind, goal=request.goal, n_targets=len(request.targets), dataset=prepared.version.name, data_version=data_version,
        validated_at=validated_at, forget_summary=forget.summary(), limits=prepared.limits.model_dump(), results=results,
    )
    report_path.write_text(text)
    fields = {
        "dataset": prepared.version.name,
        "data_version": data_version,
        "forget_set": forget.summary(),
        "validation": summary,
        "report": str(report_path.relative_to(settings.workspace)),
        "report_sha256": hashlib.sha256(text.encode()).hexdigest(),
        **({"batch_id": batch_id} if batch_id else {}),  # a rejection names the batch that made it
    }
    with ledger.lock:
        # Someone else may have moved the request on while the suites ran.
        now = ledger.status(request_id)
        if now is None or now.history[-1]["seq"] != status.history[-1]["seq"]:
            raise RequestError(f"request {request_id} changed while it was being validated", "run the validation again")
        if summary["success"]:
            entry = ledger.append("validated", request_id, sample_ids=forget.sample_ids, **fields)
        else:
            entry = ledger.append("rejected", request_id, reason="failed expectations: " + ", ".join(r["rule"] for r in summary["failed_rules"]), **fields)
    status.history.append(entry)  # the snapshot follows its own batch's appends (a request named twice)
    status.state = entry["event"]
    return ValidationOutcome(request_id, summary["success"], summary, results, forget, report_path)

