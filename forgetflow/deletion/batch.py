"""The state of one deletion batch, persisted after every step so a killed flow resumes.

`.forgetflow/batches/<batch_id>.json` holds each finished step's small outputs (IDs, md5s, paths,
metrics), written atomically. A re-run of the flow finds the open batch, skips the steps already
done and continues; the ledger records each request's events once (steps check before appending).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from forgetflow.settings import Settings
from forgetflow.workspace import write_atomic

STEPS = ("batched", "validated", "versioned", "reference", "ladder", "unlearned", "evaluated", "registered", "promoted", "erased")


def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: FORGETFLOW_CRASH_AFTER=<step> kills the process
    with SIGKILL right after that point, as an OOM killer or a lost node would."""
    if os.environ.get("FORGETFLOW_CRASH_AFTER") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def batches_dir(settings: Settings) -> Path:
    return settings.state_dir / "batches"


def new_batch_id() -> str:
    return time.strftime("batch-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]


@dataclass
class BatchState:
    batch_id: str
    request_ids: list[str]
    steps: dict = field(default_factory=dict)  # step name -> its outputs
    closed: bool = False
    times: dict = field(default_factory=lambda: {"started": time.time()})  # step -> unix time it finished

    def done(self, step: str) -> bool:
        return step in self.steps

    def save(self, settings: Settings) -> None:
        write_atomic(batches_dir(settings) / f"{self.batch_id}.json", json.dumps(self.__dict__, indent=2, sort_keys=True, default=str))

    def record(self, settings: Settings, step: str, outputs: dict) -> dict:
        """Merge one step's outputs into the file under a lock (steps may run in parallel tasks)."""
        from filelock import FileLock

        path = batches_dir(settings) / f"{self.batch_id}.json"
        with FileLock(str(path) + ".lock"):
            if path.exists():
                stored = json.loads(path.read_text())
                self.steps = {**stored["steps"], **self.steps}
                self.times = {**stored.get("times", {}), **self.times}
            self.steps[step] = outputs
            self.times[step] = time.time()
            self.save(settings)
        crash_point(step)
        return outputs

    def close(self, settings: Settings) -> None:
        self.closed = True
        self.times["closed"] = time.time()
        self.save(settings)

    @classmethod
    def load(cls, settings: Settings, batch_id: str) -> "BatchState":
        return cls(**json.loads((batches_dir(settings) / f"{batch_id}.json").read_text()))


def open_batches(settings: Settings) -> list[BatchState]:
    """Batches that started but did not finish (oldest first): a re-run resumes these first."""
    folder = batches_dir(settings)
    if not folder.is_dir():
        return []
    states = [BatchState(**json.loads(p.read_text())) for p in sorted(folder.glob("batch-*.json"))]
    return [s for s in states if not s.closed]
