"""The deletion-request model: kinds, goals, IDs, relabel targets."""

from __future__ import annotations

import uuid

import pytest

from forgetflow.requests.schema import ALLOWED_GOALS, DeletionRequest, RequestError, parse_request


def _request(**overrides):
    data = {"kind": "samples", "ids": [1, 2, 3], "reason": "GDPR Art. 17", "requested_by": "dpo@example.org"}
    data.update(overrides)
    return data


def test_defaults_generate_a_uuid_and_a_utc_timestamp():
    request = parse_request(_request())
    assert uuid.UUID(request.request_id).version == 4
    assert request.goal == "forget" and request.received_at.utcoffset() is not None


@pytest.mark.parametrize("kind,goal", [(k, g) for k in ALLOWED_GOALS for g in ("forget", "misclassify", "relabel")])
def test_goal_table_is_enforced(kind, goal):
    ids = {"samples": [1, 2], "subjects": ["subj-000001", "subj-000002"], "classes": ["3", 4]}[kind]
    data = _request(kind=kind, ids=ids, goal=goal)
    if goal == "relabel":
        data["new_labels"] = [0, 1]
    if goal in ALLOWED_GOALS[kind]:
        assert parse_request(data).goal == goal
    else:
        with pytest.raises(RequestError, match="not allowed for kind"):
            parse_request(data)


def test_goal_table_is_explicit():
    assert ALLOWED_GOALS == {"samples": ("forget", "misclassify", "relabel"), "subjects": ("forget", "misclassify"), "classes": ("forget",)}


@pytest.mark.parametrize("request_id", ["a", "REQ-2026.03_01", "x" * 64, "7f3c"])
def test_safe_request_ids_are_accepted(request_id):
    assert parse_request(_request(request_id=request_id)).request_id == request_id


@pytest.mark.parametrize("request_id", ["", "x" * 65, "../escape", "a/b", "-lead", ".hidden", "white space", "ünïcode", "a\nb", "semi;colon"])
def test_unsafe_request_ids_are_rejected(request_id):
    with pytest.raises(RequestError, match="request_id"):
        parse_request(_request(request_id=request_id))


def test_relabel_needs_one_new_label_per_id():
    with pytest.raises(RequestError, match="needs new_labels"):
        parse_request(_request(goal="relabel"))
    with pytest.raises(RequestError, match="one per ID"):
        parse_request(_request(goal="relabel", new_labels=[1]))
    assert parse_request(_request(goal="relabel", new_labels=[1, "seven", 0])).new_labels == [1, "seven", 0]
    with pytest.raises(RequestError, match="only allowed with goal 'relabel'"):
        parse_request(_request(new_labels=[1, 2, 3]))


@pytest.mark.parametrize(
    "overrides",
    [
        {"ids": []},
        {"ids": [-1]},
        {"ids": [2**63]},
        {"ids": ["12"]},
        {"ids": [True]},
        {"ids": [1.5]},
        {"kind": "subjects", "ids": [12]},
        {"kind": "subjects", "ids": [""]},
        {"kind": "classes", "ids": [-2]},
        {"kind": "people"},
        {"goal": "delete"},
        {"reason": "   "},
        {"requested_by": ""},
        {"received_at": "2026-01-01T00:00:00"},  # no timezone
        {"extra_field": 1},
    ],
)
def test_malformed_requests_are_rejected(overrides):
    with pytest.raises(RequestError):
        parse_request(_request(**overrides))


def test_error_messages_name_the_field_but_never_echo_values():
    secret = "subject-alice-smith"
    with pytest.raises(RequestError) as info:
        parse_request({"kind": "subjects", "ids": [secret, {"name": secret}], "reason": "x", "requested_by": "y", "bogus": secret})
    assert "ids" in info.value.message and "bogus" in info.value.message
    assert secret not in str(info.value)


def test_non_objects_are_rejected():
    for data in ([1, 2], "request", 3, None):
        with pytest.raises(RequestError, match="JSON object"):
            parse_request(data)


def test_requests_are_immutable():
    request = parse_request(_request())
    with pytest.raises(Exception):
        request.ids = [9]
    assert isinstance(request, DeletionRequest)
