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

CONFIDENCE_SAMPLE = 1000  # retained samples the confidence match scores at each check
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

    def __init__(self, method: str, model, forget, val, device: str, *, match: str = "accuracy", retain=None):
        if match not in ("accuracy", "confidence"):
            from forgetflow.errors import ConfigError

            raise ConfigError(f"{method}: heldout_stop must be true, false or 'confidence', got {match!r}", "true stops at the held-out accuracy; 'confidence' also at held-out confidence")
        if match == "confidence" and (retain is None or len(retain.labels) == 0):
            raise MissingInputError(f"{method} with heldout_stop: confidence needs 'retain' data", "pass retain=, or set heldout_stop: true")
        self.match = match
        if val is None or len(val.labels) == 0:
            raise MissingInputError(f"{method} with heldout_stop needs the validation split (val=)", "pass val=, or set heldout_stop: false")
        self.model, self.device = model, device
        self.x, self.y = to_tensor(forget.images), torch.from_numpy(np.asarray(forget.labels, dtype=np.int64).copy())
        labels, counts = np.unique(forget.labels, return_counts=True)
        val_x, val_y = to_tensor(val.images), torch.from_numpy(np.asarray(val.labels, dtype=np.int64).copy())
        correct = self._logits(val_x).argmax(1) == val_y
        weighted = [(count, float(correct[val_y == label].float().mean())) for label, count in zip(labels.tolist(), counts.tolist()) if bool((val_y == label).any())]
        if not weighted:
            raise MissingInputError(f"{method}: the validation split has no sample of the forget set's classes", "heldout_stop needs held-out data of the forget set's classes; set heldout_stop: false")
        self.target = 100.0 * sum(c * a for c, a in weighted) / sum(c for c, _ in weighted)
        if match == "confidence":
            pick = np.random.default_rng(0).permutation(len(retain.labels))[:CONFIDENCE_SAMPLE]
            self.retain_x = to_tensor(retain.images[np.sort(pick)])
            self.retain_y = torch.from_numpy(np.asarray(retain.labels, dtype=np.int64)[np.sort(pick)].copy())
            self.val_x, self.val_y = val_x, val_y
            # The forget set's class mix, as weights on the validation samples of each class.
            mix = dict(zip(labels.tolist(), counts.tolist()))
            per_class = {label: int((val_y == label).sum()) for label in mix}
            self.val_weight = torch.tensor([mix.get(int(y), 0) / per_class[int(y)] if per_class.get(int(y)) else 0.0 for y in val_y.tolist()], dtype=torch.float64)
            self.confident_target = float("nan")
        n = len(self.y)
        self.errors_needed = math.floor(n * (100.0 - self.target) / 100.0 + 1e-9)
        self.checks, self.steps = 0, 0
        self.every = max(1, math.ceil(n / CHECK_CHUNK))
        self._measure()

    def _logits(self, x) -> torch.Tensor:
        """The model's logits on `x` in eval mode, leaving its train/eval mode as it was."""
        was_training = self.model.training
        self.model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(x), 512):
                with autocast(self.device):
                    out.append(self.model(x[start : start + 512].to(self.device)).float().cpu())
        self.model.train(was_training)
        return torch.cat(out)

    def reached(self) -> bool:
        self.steps += 1
        if self.steps % self.every:
            return False
        self.checks += 1
        return self._measure()

    @staticmethod
    def _true_confidence(logits, y) -> torch.Tensor:
        return logits.softmax(1).gather(1, y[:, None]).squeeze(1)

    def _measure(self) -> bool:
        logits = self._logits(self.x)
        correct = int((logits.argmax(1) == self.y).sum())
        self.last = 100.0 * correct / len(self.y)
        self.done = len(self.y) - correct >= self.errors_needed
        if self.done and self.match == "confidence":
            self.done = self._confidence_reached(self._true_confidence(logits, self.y))
        return self.done

    def _confidence_reached(self, forget_confidence: torch.Tensor) -> bool:
        """The confidence-based membership attack's view (the gate's MIA-efficacy: an SVC on the
        true-label confidence, retain vs unseen): the share of the forget set below the confidence
        threshold that best tells the current model's retained samples from validation samples must
        reach the share of validation samples of the forget set's classes below it, rounded down."""
        members = self._true_confidence(self._logits(self.retain_x), self.retain_y)
        unseen = self._true_confidence(self._logits(self.val_x), self.val_y)
        threshold = _best_threshold(members.numpy(), unseen.numpy())
        below_val = float((self.val_weight * (unseen < threshold).double()).sum() / self.val_weight.sum())
        below_forget = int((forget_confidence < threshold).sum())
        self.confident_target = 100.0 * below_val
        self.confident_last = 100.0 * below_forget / len(self.y)
        return below_forget >= math.floor(len(self.y) * below_val + 1e-9)

    def summary(self, epochs: int) -> str:
        if self.done and self.steps == 0:
            return f"nothing to unlearn: forget accuracy {self.last:.1f}% is already at the held-out level ({self.target:.1f}%, {self.errors_needed} error(s) expected of {len(self.y)})"
        if self.done and self.match == "confidence":
            return f"forget accuracy {self.last:.1f}% and share below the membership threshold {self.confident_last:.1f}% reached the held-out levels ({self.target:.1f}%, {self.confident_target:.1f}%) after {self.steps} steps"
        if self.done:
            return f"forget accuracy {self.last:.1f}% reached the held-out accuracy {self.target:.1f}% after {self.steps} steps"
        return f"{epochs} epochs done before the forget accuracy reached the held-out accuracy ({self.last:.1f}% vs {self.target:.1f}%)"


def _best_threshold(members: np.ndarray, unseen: np.ndarray) -> float:
    """The confidence threshold that best separates members (at or above) from unseen samples
    (below), by balanced accuracy: the one-feature attack the gate's SVC approximates."""
    values = np.concatenate([members, unseen])
    is_member = np.concatenate([np.ones(len(members)), np.zeros(len(unseen))])
    order = np.argsort(values, kind="stable")
    values, is_member = values[order], is_member[order]
    # Predicting "unseen" for the first i sorted values: true-negative and false-negative rates.
    unseen_below = np.concatenate([[0.0], np.cumsum(1 - is_member)]) / max(len(unseen), 1)
    members_below = np.concatenate([[0.0], np.cumsum(is_member)]) / max(len(members), 1)
    balanced = (unseen_below + (1 - members_below)) / 2
    cut = int(np.argmax(balanced))
    if cut == 0:
        return float(values[0])
    if cut == len(values):
        return float(np.nextafter(values[-1], np.inf))
    return float((values[cut - 1] + values[cut]) / 2)
