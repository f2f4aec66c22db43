"""`forgetflow erasure verify REQUEST`: re-run the erasure proof for one request, any time later.

The erased images' hashes come from the batch's tombstone, whose SHA-256 the ledger recorded;
a tombstone that does not match is itself a finding (the proof cannot be trusted). The weights of
superseded versions are checked too (quarantined or deleted as `unlearning.superseded` says)."""

from __future__ import annotations

import hashlib
import json

from forgetflow.deletion.erasure import verify_erasure
from forgetflow.errors import ForgetflowError
from forgetflow.requests.intake import open_ledger
from forgetflow.settings import Settings


def verify_request(settings: Settings, request_id: str) -> dict:
    status = open_ledger(settings).status(request_id)
    if status is None:
        raise ForgetflowError(f"no request {request_id} in the ledger", "list requests with `forgetflow request list`")
    erased = status.last("erased")
    if erased is None:
        if status.state == "rejected":
            reason = (status.last("rejected") or {}).get("reason", "")
            raise ForgetflowError(f"request {request_id} was rejected ({reason}): no data was deleted, so there is no erasure to verify", "see `forgetflow audit request ID`; submit a corrected request if it should be honoured")
        raise ForgetflowError(f"request {request_id} has not been erased (state: {status.state})", "run `forgetflow process` to finish its batch (a provisional batch erases once a reference verifies it)")
    path = settings.workspace / erased["tombstone"]
    problems = []
    if not path.is_file():
        return {"ok": False, "problems": [f"tombstone {erased['tombstone']} is missing"], "n_hashes": 0, "objects_scanned": 0}
    if hashlib.sha256(path.read_bytes()).hexdigest() != erased["tombstone_sha256"]:
        problems.append(f"tombstone {erased['tombstone']} does not match the SHA-256 in the ledger")
    tombstone = json.loads(path.read_text())
    hashes = set(tombstone["content_hashes"].get(request_id, []))
    ids = {int(s) for s in status.last("validated")["sample_ids"]}
    check = verify_erasure(settings, tombstone["dataset"], hashes, ids)
    problems += check.problems
    # Weights of versions trained on the erased data: withdrawn as `unlearning.superseded` says.
    from forgetflow.deletion.superseded import check_superseded_weights

    problems += check_superseded_weights(settings)
    return {"ok": not problems, "problems": problems, "n_hashes": len(hashes), "objects_scanned": check.objects_scanned}
