"""forgetflow's held-out stop rule for goal forget, shared by the methods that offer it
(`heldout_stop: true` in their config): stop unlearning once the forget set is no more accurate
than held-out data of its classes, the point a model that never saw it would sit at (the reference
point of SCRUB+R, Kurmanji et al. 2023). It is a stop rule, not part of any paper's method."""

from __future__ import annotations

import math

import numpy as np
import torch

from forgetflow.methods.base import MissingInputError
from forgetflow.training import autocast, to_tensor

CHECK_CHUNK = 256  # forget samples per step's worth of checks: larger sets are checked every ceil(n / 256) steps


class HeldoutStop:
    """forgetflow's stop rule for goal forget (`heldout_stop: true`), after SCRUB+R's reference point:
    a model that never saw the forget set is expected to be as accurate on it as on held-out data of
    the same classes. The target is the original's validation accuracy per class, weighted by the
    forget set's class mix; the forget set is predicted in eval mode after every optimisation step,
    and the run stops once it has as many errors as an unseen set is expected to have, rounded down:
    floor(n * (1 - target)). Not past it: forgetting more than an unseen sample would be is itself
    a membership signal. Rounding down matters on small requests: a 17-sample set whose held-out
    accuracy is 97 % is expected to have 0.5 errors, so nothing is unlearned (the model already
    treats it as unseen), where one forced error would be 6 points of over-forgetting. A set that
    needs no errors stops before the first update. Forget sets over 256 samples are checked every
    ceil(n / 256) steps, so a check costs about one pass over 256 samples per step."""

    def __init__(self, method: str, model, forget, val, device: str):
        if val is None or len(val.labels) == 0:
            raise MissingInputError(f"{method} with heldout_stop needs the validation split (val=)", "pass val=, or set heldout_stop: false")
        self.model, self.device = model, device
        self.x, self.y = to_tensor(forget.images), torch.from_numpy(np.asarray(forget.labels, dtype=np.int64).copy())
        labels, counts = np.unique(forget.labels, return_counts=True)
        val_x, val_y = to_tensor(val.images), torch.from_numpy(np.asarray(val.labels, dtype=np.int64).copy())
        correct = self._correct(val_x, val_y)
        weighted = [(count, float(correct[val_y == label].float().mean())) for label, count in zip(labels.tolist(), counts.tolist()) if bool((val_y == label).any())]
        if not weighted:
            raise MissingInputError(f"{method}: the validation split has no sample of the forget set's classes", "heldout_stop needs held-out data of the forget set's classes; set heldout_stop: false")
        self.target = 100.0 * sum(c * a for c, a in weighted) / sum(c for c, _ in weighted)
        n = len(self.y)
        self.errors_needed = math.floor(n * (100.0 - self.target) / 100.0 + 1e-9)
        self.checks, self.steps = 0, 0
        self.every = max(1, math.ceil(n / CHECK_CHUNK))
        self._measure()

    def _correct(self, x, y) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(y), 512):
                with autocast(self.device):
                    out.append(self.model(x[start : start + 512].to(self.device)).float().argmax(1).cpu() == y[start : start + 512])
        self.model.train(was_training)
        return torch.cat(out)

    def reached(self) -> bool:
        self.steps += 1
        if self.steps % self.every:
            return False
        self.checks += 1
        return self._measure()

    def _measure(self) -> bool:
        correct = int(self._correct(self.x, self.y).sum())
        self.last = 100.0 * correct / len(self.y)
        self.done = len(self.y) - correct >= self.errors_needed
        return self.done

    def summary(self, epochs: int) -> str:
        if self.done and self.steps == 0:
            return f"nothing to unlearn: forget accuracy {self.last:.1f}% is already at the held-out level ({self.target:.1f}%, {self.errors_needed} error(s) expected of {len(self.y)})"
        if self.done:
            return f"forget accuracy {self.last:.1f}% reached the held-out accuracy {self.target:.1f}% after {self.steps} steps"
        return f"{epochs} epochs done before the forget accuracy reached the held-out accuracy ({self.last:.1f}% vs {self.target:.1f}%)"
