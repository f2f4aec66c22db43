"""Run deletion batches without Prefect: the same resumable steps the flow's tasks call, in the
same order. For scripts, notebooks and the crash-safety tests; the Prefect flow adds retries,
observability and scheduling on top of exactly this sequence."""

from __future__ import annotations

from forgetflow.deletion import pipeline, promotion
from forgetflow.deletion.lock import workspace_lock
from forgetflow.deletion.verification import verify_pending
from forgetflow.settings import Settings


def run_pending(settings: Settings, request_ids: list[str] | None = None, *, method: str | None = None, wait_s: float = 0.0, progress: bool = True) -> list[dict]:
    summaries = []
    with workspace_lock(settings, purpose="process_deletions (library runner)", wait_s=wait_s):
        for _ in range(2):  # an unfinished batch first, then one new batch
            state = pipeline.start_batch(settings, request_ids)
            if state is None:
                break
            if pipeline.validate(settings, state)["valid"]:
                pipeline.version_data(settings, state)
                pipeline.reference(settings, state, progress=progress)
                pipeline.unlearn(settings, state, method_override=method, progress=progress)
                pipeline.escalate_reference(settings, state, progress=progress)
                pipeline.evaluate(settings, state)
                promotion.register(settings, state)
                promotion.promote(settings, state)
                verify_pending(settings, state)
                promotion.erase(settings, state)  # a provisional batch is quarantined instead
            summaries.append(promotion.finish(settings, state))
            if request_ids and set(request_ids) <= set(state.request_ids):
                break
    return summaries
