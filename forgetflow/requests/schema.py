"""The deletion-request model: what to forget, why, for whom, and with which goal.

A request names its targets by one `kind`:

- `samples`  - sample IDs from the manifest (pseudonymous integer indices, never reused);
- `subjects` - data-subject IDs (a person: every sample they contributed, in every split);
- `classes`  - class names or class indices (every training sample of the class).

and one `goal`:

- `forget`      - behave like a model retrained without the data (the privacy goal);
- `misclassify` - every forget instance predicted away from its label (instance-wise unlearning);
- `relabel`     - predict a given new label for each forget instance.

Which goals each kind allows is the explicit table `ALLOWED_GOALS`: `relabel` needs one new label
per target sample, which only a sample request can name; a class request only serves `forget`,
because a model retrained without a class already predicts it away (misclassify would add nothing)
and relabelling a class is class remapping, not unlearning.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator, model_validator

from forgetflow.errors import ForgetflowError

Kind = Literal["samples", "subjects", "classes"]
Goal = Literal["forget", "misclassify", "relabel"]
KINDS: tuple[str, ...] = ("samples", "subjects", "classes")
GOALS: tuple[str, ...] = ("forget", "misclassify", "relabel")

ALLOWED_GOALS: dict[str, tuple[str, ...]] = {
    "samples": ("forget", "misclassify", "relabel"),
    "subjects": ("forget", "misclassify"),
    "classes": ("forget",),
}

# Caller-given request IDs end up in file names, flow-run names and MLflow tags: keep them boring.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_REQUEST_ID_RE = re.compile(REQUEST_ID_PATTERN)
MAX_TARGETS = 1_000_000  # one request; larger erasures are several requests (and fail the size limit anyway)
MAX_SUBJECT_ID_LENGTH = 256
MAX_SAMPLE_ID = 2**63  # manifests store sample IDs as int64
# How far back a caller may date a request. GDPR Art. 12(3) gives one month to answer, extendable
# by two more: a request received longer ago is overdue already, and an older date would make the
# ledger's timeline (and deadline reports) say something that did not happen. Leave `received_at`
# out to record the time of intake.
MAX_RECEIVED_AGE = timedelta(days=90)
MAX_CLOCK_SKEW = timedelta(minutes=5)  # a sender's clock may run this much ahead
# A timestamp is text: an ISO 8601 date and time with a zone (Z or +hh:mm), nothing looser.
_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})")

Target = Union[StrictInt, StrictStr]


class RequestError(ForgetflowError):
    """A deletion request is malformed, conflicts with a recorded one, or cannot be processed."""


def new_request_id() -> str:
    return str(uuid.uuid4())


def is_valid_request_id(value: object) -> bool:
    return isinstance(value, str) and _REQUEST_ID_RE.fullmatch(value) is not None


class DeletionRequest(BaseModel):
    """One deletion request as submitted (subject IDs in clear text: never stored like this)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(default_factory=new_request_id, pattern=REQUEST_ID_PATTERN, description="UUID, or a caller-given ID: 1-64 of [A-Za-z0-9._-], starting with a letter or digit.")
    kind: Kind
    ids: list[Target] = Field(min_length=1, max_length=MAX_TARGETS, description="Sample IDs (int), subject IDs (str) or class names/indices.")
    goal: Goal = "forget"
    new_labels: list[Target] | None = Field(default=None, description="relabel only: one new class name/index per ID, in the same order.")
    reason: str = Field(min_length=1, max_length=2000)
    requested_by: str = Field(min_length=1, max_length=200)
    received_at: AwareDatetime = Field(default_factory=lambda: datetime.now(timezone.utc), description="ISO 8601 with a time zone, at most 90 days ago; default: now.")
    # Strict: "yes", 1 or "true" are not booleans in a request (JSON has true and false).
    urgent: StrictBool = Field(default=False, description="Process now (the served urgent deployment is triggered) instead of in the next scheduled batch.")

    @field_validator("received_at", mode="before")
    @classmethod
    def _timestamp_text(cls, value):
        if isinstance(value, datetime):
            return value
        if not isinstance(value, str) or not _TIMESTAMP_RE.fullmatch(value):
            raise ValueError("must be an ISO 8601 timestamp with a time zone, e.g. 2026-03-01T09:30:00Z")
        return value

    @field_validator("received_at", mode="after")
    @classmethod
    def _recent(cls, value: datetime) -> datetime:
        now = datetime.now(timezone.utc)
        if value > now + MAX_CLOCK_SKEW:
            raise ValueError("lies in the future")
        if value < now - MAX_RECEIVED_AGE:
            raise ValueError(f"is more than {MAX_RECEIVED_AGE.days} days ago; leave it out to record the time of intake")
        return value

    @field_validator("reason", "requested_by")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> "DeletionRequest":
        if self.goal not in ALLOWED_GOALS[self.kind]:
            raise ValueError(f"goal {self.goal!r} is not allowed for kind {self.kind!r} (allowed: {', '.join(ALLOWED_GOALS[self.kind])})")
        if self.kind == "samples":
            if not all(isinstance(v, int) and 0 <= v < MAX_SAMPLE_ID for v in self.ids):
                raise ValueError("sample IDs must be non-negative integers below 2**63")
        elif self.kind == "subjects":
            if not all(isinstance(v, str) and 0 < len(v) <= MAX_SUBJECT_ID_LENGTH for v in self.ids):
                raise ValueError(f"subject IDs must be non-empty strings of at most {MAX_SUBJECT_ID_LENGTH} characters")
        elif not all((isinstance(v, int) and v >= 0) or (isinstance(v, str) and v) for v in self.ids):
            raise ValueError("classes must be class names (non-empty strings) or non-negative class indices")
        if self.goal == "relabel":
            if self.new_labels is None:
                raise ValueError("goal 'relabel' needs new_labels: one new class name or index per ID")
            if len(self.new_labels) != len(self.ids):
                raise ValueError(f"new_labels has {len(self.new_labels)} entries for {len(self.ids)} IDs; give one per ID")
            if not all((isinstance(v, int) and v >= 0) or (isinstance(v, str) and v) for v in self.new_labels):
                raise ValueError("new_labels must be class names (non-empty strings) or non-negative class indices")
        elif self.new_labels is not None:
            raise ValueError(f"new_labels is only allowed with goal 'relabel', not {self.goal!r}")
        return self


def describe_validation_error(exc: ValidationError) -> str:
    """The problems of a rejected request, without echoing its values (they may be personal data)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        # Element positions are dropped so one bad type in a long list is reported once.
        location = ".".join("*" if isinstance(part, int) else str(part) for part in error["loc"]) or "request"
        problems.append(f"{location}: {error['msg']}")
    # The same message repeats for every element of a long list; say it once.
    unique = list(dict.fromkeys(problems))
    shown = unique[:10] + ([f"... and {len(unique) - 10} more problems"] if len(unique) > 10 else [])
    return "; ".join(shown)


def parse_request(data: object) -> DeletionRequest:
    """Validate a decoded JSON object (or a model) as a request; raise RequestError naming the problems."""
    if isinstance(data, DeletionRequest):
        return data
    if not isinstance(data, dict):
        raise RequestError(f"a request must be a JSON object, not {type(data).__name__}", "see `forgetflow request submit --help` for the fields")
    try:
        return DeletionRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestError(f"invalid deletion request: {describe_validation_error(exc)}", "fix the fields named above and submit again") from None
