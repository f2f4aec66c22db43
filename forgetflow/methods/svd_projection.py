"""SVD projection: gradient-free class forgetting by weight projection (Kodge, Saha, Roy, TMLR 2024).

For every conv and linear layer (the final classifier included), from one forward pass each of a
small retain sample and a small forget sample (eval mode, no gradient):
    A   = the layer's INPUT representation: linear -> input vectors; conv -> one random 3k x 3k crop
          (same place for the whole batch) when the map is wider than 3k, unfolded with the layer's
          own stride/padding/dilation, at most 10,000 random patch columns
    U, s = thin SVD of A, s_i = sigma_i^2 / sum sigma^2 (energy fractions)
    lambda_i = alpha s_i / ((alpha - 1) s_i + 1),  M = U diag(lambda) U^T
    P = I - (M_f - M_f M_r),  W_flat <- W_flat P^T   (P is not symmetric: transposed, as the code)
Biases and BatchNorm are left alone. `reference/methods.md` §2.

Paper defaults (CIFAR-10, VGG11_BN, TMLR scripts): 100 retain images per retain class (the FIRST
ones of each class in dataset order), 900 forget images drawn at random, alpha_r = 100, alpha_f = 3,
10,000 patch columns per conv layer. alpha is searched over alpha_r in {10, 30, 100, 300, 1000} x
alpha_f in {1, 3, 10, 30, 100} (tune_our.py) with the metric retain_acc x (1 - forget_acc),
evaluated on the `val` split drawn from the training pool -- never on test (the official
tune_our.py uses test, pitfall S10). With `select_alpha: false` the given alpha_r/alpha_f are used.

Deviations: activations come from un-augmented images (the official code uses the training
augmentation; our default recipe trains without augmentation); the search considers all 25 pairs
instead of the legacy early-stopping walk, and leaves a pair unfinished as soon as it provably
cannot beat the best so far (`AlphaScorer`): the same pair is chosen as by a full evaluation.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.layer_stats import check_all_called, projectable_layers, unfold_padding
from forgetflow.methods._loops import count_correct, finish
from forgetflow.methods.base import MethodInfo, Timer, register
from forgetflow.training import to_tensor

DEFAULTS = {
    "alpha_r": 100.0,
    "alpha_f": 3.0,
    "select_alpha": True,
    "alpha_r_grid": [10.0, 30.0, 100.0, 300.0, 1000.0],
    "alpha_f_grid": [1.0, 3.0, 10.0, 30.0, 100.0],
    "retain_per_class": 100,
    "forget_samples": 900,
    "max_patches": 10_000,
    "crop_factor": 3,
}
SEARCH_SPACE = {"alpha_r": DEFAULTS["alpha_r_grid"], "alpha_f": DEFAULTS["alpha_f_grid"]}


def projection_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Conv2d and Linear; a model with a layer the projection cannot handle is refused by name."""
    return projectable_layers(model, "SVD projection")


def conv_patches(module: nn.Conv2d, x: torch.Tensor, crop_factor: int, generator: torch.Generator) -> torch.Tensor:
    """(C_in*k*k, patches) from one random crop of the input map, unfolded with the layer's geometry."""
    kh, kw = module.kernel_size
    ch, cw = crop_factor * kh, crop_factor * kw
    _, _, h, w = x.shape
    if h > ch or w > cw:
        top = int(torch.randint(0, max(h - ch, 0) + 1, (1,), generator=generator)) if h > ch else 0
        left = int(torch.randint(0, max(w - cw, 0) + 1, (1,), generator=generator)) if w > cw else 0
        x = x[:, :, top : top + min(ch, h), left : left + min(cw, w)]
    patches = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=unfold_padding(module), stride=module.stride)
    return patches.permute(1, 0, 2).reshape(patches.shape[1], -1)


@torch.no_grad()
def collect_representations(model: nn.Module, x: torch.Tensor, *, max_patches: int, crop_factor: int, generator: torch.Generator, device: str) -> dict[str, torch.Tensor]:
    """Input representation matrix (features, columns) of every conv/linear layer, one forward pass."""
    layers = projection_layers(model)
    found: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(module, inputs, _output):
            inp = inputs[0].detach().float()
            if isinstance(module, nn.Conv2d):
                rep = conv_patches(module, inp, crop_factor, generator)
                if rep.shape[1] > max_patches:
                    keep = torch.randperm(rep.shape[1], generator=generator)[:max_patches].to(rep.device)
                    rep = rep[:, keep]
            else:
                rep = inp.reshape(-1, inp.shape[-1]).T
            found[name] = rep.double().cpu()

        return hook

    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(hook_for(n)) for n, m in layers.items()]
    try:
        model(x.to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    check_all_called(layers, found, "SVD projection")
    return found


def energy_basis(representation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """U and energy fractions s_i = sigma_i^2 / sum sigma^2 of a representation matrix."""
    rows, cols = representation.shape
    if cols > rows:  # wide (patches >> features): eigh of the d x d Gram matrix, sigma^2 = its eigenvalues
        energy, u = torch.linalg.eigh(representation @ representation.T)
        order = torch.argsort(energy, descending=True)
        u, energy = u[:, order], energy[order].clamp_min(0)
    else:
        u, sigma, _ = torch.linalg.svd(representation, full_matrices=False)
        energy = sigma.pow(2)
    return u, energy / energy.sum().clamp_min(1e-300)


def scaled_projector(u: torch.Tensor, s: torch.Tensor, alpha: float) -> torch.Tensor:
    """M = U diag(alpha s / ((alpha - 1) s + 1)) U^T."""
    lam = alpha * s / ((alpha - 1) * s + 1)
    return (u * lam) @ u.T


def projection_matrix(m_forget: torch.Tensor, m_retain: torch.Tensor) -> torch.Tensor:
    """P = I - (M_f - M_f M_r): removes the forget space minus its overlap with the retain space."""
    eye = torch.eye(m_forget.shape[0], dtype=m_forget.dtype)
    return eye - (m_forget - m_forget @ m_retain)


def apply_projection(module: nn.Module, original_weight: torch.Tensor, p: torch.Tensor) -> None:
    """W <- W_flat P^T, reshaped back (bias untouched). float64 on the CPU (MPS has no float64)."""
    flat = original_weight.detach().cpu().reshape(original_weight.shape[0], -1).double()
    _store(module, original_weight, flat @ p.cpu().T)


def _store(module: nn.Module, original_weight: torch.Tensor, flat: torch.Tensor) -> None:
    module.weight.data.copy_(flat.reshape(original_weight.shape).to(device=module.weight.device, dtype=module.weight.dtype))


def _times_projector(w: torch.Tensor, u: torch.Tensor, s: torch.Tensor, alpha: float) -> torch.Tensor:
    """w @ M for M = U diag(lambda) U^T, without forming M (O(out d r) instead of O(d^3))."""
    lam = alpha * s / ((alpha - 1) * s + 1)
    return ((w @ u) * lam) @ u.T


def project_weight(flat: torch.Tensor, forget_basis, retain_basis, alpha_f: float, alpha_r: float) -> torch.Tensor:
    """W P^T = W - (W - W M_r) M_f  (M symmetric), the factorised form of W (I - M_f + M_r M_f)."""
    a = flat - _times_projector(flat, *retain_basis, alpha_r)
    return flat - _times_projector(a, *forget_basis, alpha_f)


class Projector:
    """Bases of one model's retain and forget activation spaces; projects the model for any alpha pair."""

    def __init__(self, model: nn.Module, x_retain: torch.Tensor, x_forget: torch.Tensor, *, max_patches: int = 10_000, crop_factor: int = 3, generator: torch.Generator | None = None, device: str = "cpu"):
        generator = generator or torch.Generator().manual_seed(0)
        self.model = model
        self.layers = projection_layers(model)
        self.original = {name: m.weight.detach().clone() for name, m in self.layers.items()}
        rep_r = collect_representations(model, x_retain, max_patches=max_patches, crop_factor=crop_factor, generator=generator, device=device)
        rep_f = collect_representations(model, x_forget, max_patches=max_patches, crop_factor=crop_factor, generator=generator, device=device)
        self.retain = {name: energy_basis(rep) for name, rep in rep_r.items()}
        self.forget = {name: energy_basis(rep) for name, rep in rep_f.items()}

    def projections(self, alpha_r: float, alpha_f: float) -> dict[str, torch.Tensor]:
        return {name: projection_matrix(scaled_projector(*self.forget[name], alpha_f), scaled_projector(*self.retain[name], alpha_r)) for name in self.layers}

    def apply(self, alpha_r: float, alpha_f: float) -> None:
        """Set every layer to W_original P^T (always from the original weights, so calls do not compound)."""
        for name, module in self.layers.items():
            weight = self.original[name]
            flat = weight.detach().cpu().reshape(weight.shape[0], -1).double()
            _store(module, weight, project_weight(flat, self.forget[name], self.retain[name], alpha_f, alpha_r))


def retain_sample(retain, forget_classes: np.ndarray, per_class: int) -> np.ndarray:
    """The first `per_class` indices of each retain class in dataset order (S5)."""
    rows = [np.flatnonzero(retain.labels == c)[:per_class] for c in np.unique(retain.labels) if c not in set(forget_classes.tolist())]
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)


class AlphaScorer:
    """The selection metric retain_acc x (1 - forget_acc) on val, accuracies as fractions.

    Exact early exit: the forget-class rows (a tenth of val) are scored first, then the retain rows
    in chunks; as soon as even a perfect rest could not beat the best score so far, the pair is left
    unfinished. A pair whose score can only tie the best would lose anyway (the first best pair in
    grid order wins), so the chosen pair is the one a full evaluation of every pair picks, at a
    fraction of the forward passes: most of the grid either keeps the class or wrecks the retain
    classes, and shows it within a chunk.
    """

    def __init__(self, val, forget_classes: np.ndarray, device: str, chunk: int = 128):
        x, y = to_tensor(val.images), torch.from_numpy(np.array(val.labels, copy=True))
        forget_rows = torch.from_numpy(np.isin(val.labels, forget_classes))
        self.forget = (x[forget_rows], y[forget_rows])
        self.retain = (x[~forget_rows], y[~forget_rows])
        self.device, self.chunk = device, chunk

    def score(self, model: nn.Module, best: float) -> dict:
        """{"val_score", "val_retain_accuracy", "val_forget_accuracy"}, or, for a pair that cannot
        beat `best`, {"val_forget_accuracy", "val_score_at_most"} (the bound that ruled it out)."""
        x_f, y_f = self.forget
        forget_acc = count_correct(model, x_f, y_f, self.device) / len(y_f) if len(y_f) else 0.0
        ceiling = 1.0 - forget_acc
        x_r, y_r = self.retain
        n = len(y_r)
        if n == 0:  # no retain signal: no pair can be chosen on val, the configured pair stays
            return {"val_score": float("nan"), "val_retain_accuracy": float("nan"), "val_forget_accuracy": forget_acc}
        correct = 0
        for start in range(0, n, self.chunk):
            at_most = (correct + n - start) / n * ceiling
            if at_most <= best:
                return {"val_forget_accuracy": forget_acc, "val_score_at_most": at_most}
            correct += count_correct(model, x_r[start : start + self.chunk], y_r[start : start + self.chunk], self.device)
        retain_acc = correct / n
        return {"val_score": retain_acc * ceiling, "val_retain_accuracy": retain_acc, "val_forget_accuracy": forget_acc}


def search_alpha(projector: Projector, scorer: AlphaScorer, grid: list[tuple[float, float]], timer: Timer, *, progress: bool = False):
    """(chosen pair, one log row per pair tried, why it stopped): the first pair of `grid` with the
    highest val score (None when the budget ran out before any pair was scored)."""
    from tqdm.auto import tqdm

    best, chosen, log = -1.0, None, []
    stopped = f"alpha selected on val from {len(grid)} pairs"
    for alpha_r, alpha_f in tqdm(grid, desc="SVD alpha search", leave=False, disable=not progress):
        if timer.over_budget():
            stopped = f"time budget reached after {len(log)} of {len(grid)} alpha pairs"
            break
        projector.apply(alpha_r, alpha_f)
        row = scorer.score(projector.model, best)
        log.append({"alpha_r": alpha_r, "alpha_f": alpha_f, **row})
        if row.get("val_score", -1.0) > best:
            best, chosen = row["val_score"], (alpha_r, alpha_f)
    return chosen, log, stopped


def svd_projection(model, forget, *, retain, val=None, config, seed, device, time_budget_s=None, progress=True, **_):
    timer = Timer(time_budget_s)
    generator = torch.Generator().manual_seed(seed)
    forget_classes = np.unique(forget.labels)
    forget_rows = torch.randperm(len(forget.labels), generator=generator)[: config["forget_samples"]].numpy()
    x_forget = to_tensor(forget.images[forget_rows])
    x_retain = to_tensor(retain.images[retain_sample(retain, forget_classes, config["retain_per_class"])])
    projector = Projector(model, x_retain, x_forget, max_patches=config["max_patches"], crop_factor=config["crop_factor"], generator=generator, device=device)

    log: list[dict] = []
    chosen = (config["alpha_r"], config["alpha_f"])
    stopped = "alpha fixed by config"
    if config["select_alpha"] and val is not None:
        grid = list(itertools.product(config["alpha_r_grid"], config["alpha_f_grid"]))
        found, log, stopped = search_alpha(projector, AlphaScorer(val, forget_classes, device), grid, timer, progress=progress)
        chosen = found or chosen  # the budget ran out before any pair was scored: the configured pair
    projector.apply(*chosen)
    used = config | {"alpha_r": chosen[0], "alpha_f": chosen[1]}
    return finish(model, timer, used, log, stopped, forget_classes=[int(c) for c in forget_classes], retain_sample_size=int(len(x_retain)), forget_sample_size=int(len(x_forget)))


INFO = register(
    MethodInfo(
        name="svd_projection",
        summary="Gradient-free class forgetting: project every layer off the forget activation space",
        paper="Kodge, Saha, Roy, Deep Unlearning: Fast and Efficient Gradient-free Class Forgetting (TMLR 2024)",
        kinds=("classes",),
        goals=("forget",),
        needs=("forget", "retain", "val"),
        defaults=DEFAULTS,
        search_space=SEARCH_SPACE,
        fn=svd_projection,
    )
)
