"""Prefect global concurrency limits: one job per compute device, one writer per workspace.

- `device` limit (1 slot): unlearning and the reference retrain hold it, so one GPU never runs
  two of them (the deletion flow takes it once for both when the reference is retrained
  locally). Named after the host and device, so two machines with `cuda:0` do not block each
  other; FORGETFLOW_DEVICE_LIMIT overrides the name (e.g. one name per physical GPU in a pool).
- `workspace` limit (1 slot): a deletion flow holds it for the whole batch. A second run (a trigger
  while a batch runs) waits for the slot instead of failing, so it is queued, not lost, and the
  requests that arrived meanwhile join its batch.

Both are taken with `strict=True`: a missing limit is an error, never a silently unlimited run, and
`ensure_limits` creates them (idempotently) at service start-up and at the start of every flow.

A slot is a lease: Prefect renews it while the holder lives. A run that is stopped (SIGTERM from
`forgetflow serve`, a worker or a cancel; Ctrl-C) releases its slots itself: termination signals
wait while a slot is being granted or released, because one that lands in the middle of that API
call leaves the slot taken until the lease expires (a grant nobody knows of, or a release that never
happened). A holder killed outright (SIGKILL, OOM) cannot: each slot is recorded with its holder's
PID and host (`slots.py`), and a run refused a slot frees those of dead holders before it waits, so a
killed batch never blocks the next run.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar

from forgetflow.service.naming import slug, workspace_id
from forgetflow.settings import Settings

# The server's minimum lease. Prefect renews it every 45 s (3/4 of it) while the holder lives; a
# server with a repossessor revokes an expired one within 15 s (and `slots.free_stale` does where
# forgetflow started the server), so even an unrecorded dead holder's slot is free after ~75 s.
LEASE_S = 60
# The longest pause between two requests for a slot, whatever Retry-After the server suggests (up to
# 30 s): each refusal also sweeps stale slots, so a slot that went stale is found soon.
MAX_POLL_S = 15.0


def device_limit_name(settings: Settings) -> str:
    if settings.device_limit:
        return settings.device_limit
    return f"forgetflow-device-{slug(socket.gethostname())}-{slug(settings.resolved_device())}"


def workspace_limit_name(settings: Settings) -> str:
    return f"forgetflow-workspace-{workspace_id(settings)}"


def ensure_limits(settings: Settings) -> list[str]:
    """Create the device and workspace limits (1 slot each) where missing; returns their names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    names = [device_limit_name(settings), workspace_limit_name(settings)]
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                except ObjectAlreadyExists:  # another process created it first
                    pass
    return names


_DEFERRED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def _signals_deferred():
    """Deliver SIGTERM and SIGINT only when the block is done. Python runs signal handlers in the
    main thread only, so a block in another thread cannot be interrupted and needs nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    try:
        for signum in _DEFERRED_SIGNALS:
            handler = signal.getsignal(signum)
            if handler is not None:  # None: set outside Python, so it could not be put back
                previous[signum] = handler
                signal.signal(signum, lambda caught, _frame: received.append(caught))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received:
            signal.raise_signal(signum)  # the restored handler runs now (Prefect's raises TerminationSignal)


def _retry_after_s(error: Exception) -> float | None:
    """Seconds the server asks to wait when the slot is taken (HTTP 423); None for other errors."""
    import httpx

    cause = error.__cause__
    if isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423:
        return float(cause.response.headers.get("Retry-After", 1.0))
    return None


class _SlotTakenIsNotAnError(logging.Filter):
    """Drops Prefect's ERROR "Service 'ConcurrencySlotAcquisitionWithLeaseService' failed to process
    item" when the failure is the server's 423 (the slot is taken): `_slot` asks with no retries
    and waits itself, so that answer is the normal wait, and the error line on every attempt of a
    queued run would read as a fault in the service's log. Any other failure is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) != 2 or args[0] != "ConcurrencySlotAcquisitionWithLeaseService" or not isinstance(args[1], tuple) or not args[1]:
            return True
        future = args[1][-1]
        try:
            error = future.exception(timeout=0) if future.done() else None
        except Exception:  # cancelled, or not a future at all: keep the record
            return True
        response = getattr(error, "response", None)
        return getattr(response, "status_code", None) != 423


_SLOT_TAKEN_FILTER = _SlotTakenIsNotAnError()


def _quiet_slot_waits() -> None:
    logger = logging.getLogger("prefect._internal.concurrency")
    if _SLOT_TAKEN_FILTER not in logger.filters:
        logger.addFilter(_SLOT_TAKEN_FILTER)


def _log_wait(name: str, retry_after_s: float) -> None:
    """One line when a run starts to queue for a slot, in the run's log where there is a run."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        logger = get_run_logger()
    except MissingContextError:
        logger = logging.getLogger(__name__)
    logger.info("waiting for concurrency slot %s (another job holds it); asking again in %.0f s, as the server suggests", name, retry_after_s)


@contextmanager
def _held(settings: Settings, name: str, purpose: str):
    """One request for a slot of `name` (ConcurrencySlotAcquisitionError when refused), recorded
    with this process as its holder while it is held (see slots.py)."""
    from prefect.concurrency.context import ConcurrencyContext
    from prefect.concurrency.sync import concurrency

    from forgetflow.service import slots

    path = lease_id = None
    # A context of our own: Prefect notes the lease it grants there, so it is the only one in it.
    with ConcurrencyContext() as granted:
        try:
            with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_S, max_retries=0):
                lease_id = granted.cleanup_lease_ids[-1] if granted.cleanup_lease_ids else None
                path = slots.record(settings, name, str(lease_id) if lease_id else None, purpose)
                yield
        finally:
            # Released (Prefect drops a released lease from the context); otherwise the record stays
            # and the next sweep releases the lease again.
            if path is not None and lease_id not in granted.cleanup_lease_ids:
                path.unlink(missing_ok=True)


def _free_stale(settings: Settings, name: str) -> int:
    """Best effort: a sweep that fails (a server hiccup) only means waiting for the next one."""
    from forgetflow.service import slots

    try:
        return slots.free_stale(settings, name)
    except Exception as exc:  # noqa: BLE001 - never let the sweep break the wait
        logging.getLogger(__name__).warning("could not check concurrency slot %s for dead holders: %s", name, exc)
        return 0


@contextmanager
def _slot(settings: Settings, name: str, *, wait_s: float | None = None, busy=None, purpose: str = ""):
    """Hold one slot of the limit `name`: as long as it takes (`wait_s` None), or at most `wait_s`
    seconds, then raise `busy(holders)`. Each request for the slot is a single attempt with signals
    deferred, and the wait between attempts is interruptible: a stopped run either holds the slot
    (and releases it on the way out) or never got it. A refused request first frees the slots of
    dead holders (slots.py) and, if that freed one, asks again at once."""
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError

    from forgetflow.service import slots

    _quiet_slot_waits()
    held = ExitStack()
    deadline = None if wait_s is None else time.monotonic() + max(wait_s, 0.0)
    waited = False
    try:
        while True:
            try:
                with _signals_deferred():
                    held.enter_context(_held(settings, name, purpose))
                break
            except ConcurrencySlotAcquisitionError as error:
                retry_after_s = _retry_after_s(error)
                if retry_after_s is None:
                    raise
            if _free_stale(settings, name):
                continue
            left_s = None if deadline is None else deadline - time.monotonic()
            if left_s is not None and left_s <= 0:
                if busy is None:
                    raise TimeoutError(f"concurrency slot {name} still taken after {wait_s:g} s")
                raise busy([h for h in slots.holders(settings, name) if h["alive"] is not False])
            if not waited:
                _log_wait(name, retry_after_s)
                waited = True
            time.sleep(min(retry_after_s, MAX_POLL_S, *([left_s] if left_s is not None else [])))
        yield
    finally:
        with _signals_deferred():
            held.close()


# Device slots this context already holds: a task inside a flow that holds the slot does not ask
# again. Each acquisition is a write on the Prefect server, and on SQLite one in two collides with
# the flow's own event writes and costs a 2 s retry (docs/scale-out.md). Threads start with an
# empty context, so jobs in other threads or processes still queue for the slot.
_held_devices: ContextVar[frozenset[str]] = ContextVar("forgetflow_held_devices", default=frozenset())


@contextmanager
def device_slot(settings: Settings):
    """Hold the device's single slot (waits for it) for one unlearning or retraining job; a no-op
    where this context already holds it."""
    name = device_limit_name(settings)
    held = _held_devices.get()
    if name in held:
        yield
        return
    with _slot(settings, name, purpose="unlearning or retraining"):
        token = _held_devices.set(held | {name})
        try:
            yield
        finally:
            _held_devices.reset(token)


def _busy(settings: Settings, holders: list[dict]):
    from forgetflow.deletion.lock import WorkspaceBusyError

    who = "; ".join(f"{h.get('purpose') or 'a forgetflow run'} (pid {h.get('pid')} on {h.get('host')}, since {h.get('since')})" for h in holders)
    return WorkspaceBusyError(
        f"workspace {settings.workspace} is busy: {who or 'another run holds its concurrency slot ' + workspace_limit_name(settings)}",
        "wait for it to finish; queued requests join the next batch (or pass a longer --wait)",
    )


def workspace_busy(settings: Settings):
    """WorkspaceBusyError if a live run is recorded as holding the workspace slot (no server
    needed: `process --wait 0` stops at once), else None. The slot itself stays the authority."""
    from forgetflow.service import slots

    holders = [h for h in slots.holders(settings, workspace_limit_name(settings)) if h["alive"]]
    return _busy(settings, holders) if holders else None


@contextmanager
def workspace_slot(settings: Settings, *, wait_s: float | None = None, purpose: str = ""):
    """Hold the workspace's single writer slot: queue for it (`wait_s` None: a second trigger
    waits its turn), or give up after `wait_s` seconds with WorkspaceBusyError naming the holder."""
    with _slot(settings, workspace_limit_name(settings), wait_s=wait_s, busy=lambda holders: _busy(settings, holders), purpose=purpose):
        yield
