"""Per-layer input representation covariance, stored with a checkpoint for PGU (Hoang et al.).

For every conv and linear layer, C = sum over rows of (row outer row), where a row is the layer's
input: the input vector for linear layers, and for conv layers each patch of the input unfolded
with the layer's kernel, dilation and padding at stride 1. Accumulated in float64 over one pass of
the (augmented, if the recipe augments) training set, model in eval mode with Dropout active,
as the paper's code does. Stored as the eigenbasis U and sigma = sqrt(eigenvalues).

A conv layer's sum is formed from float32 products over short pieces (one image's patches, or a
block of rows; `row_gram`) added into the float64 total. That agrees with the all-float64 product
to about 1e-6 relative or better and costs about half as much on a CPU, where these sums were most
of PGU's set-up per request.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def projectable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv2d and Linear modules by qualified name (module references, never name rewriting)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def layer_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The representation rows of a layer input: (rows, in_features) or (rows, C_in*k*k)."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    patches = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=1)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


# float32 products are summed in float64 in pieces this size, so each float32 sum stays short
GRAM_CHUNK_ELEMENTS = 1 << 24  # per-image products: images per chunk x D x D (64 MB in float32, twice that in float64)
ROWS_PER_PRODUCT = 16384  # flat product: rows per block


def row_gram(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Sum of the representation rows' outer products of one layer input, float64 (D, D).

    Linear: the float64 product of the rows. Conv: float32 products summed in float64, either per
    image (P P^T, P the image's (D, positions) patches: no (rows, D) copy) when an image has at
    least D positions, or over blocks of rows when it has fewer (then the per-image products would
    be short and their float64 sum would cost as much as they do)."""
    if isinstance(module, nn.Linear):
        rows = layer_rows(module, x).double()
        return rows.T @ rows
    patches = F.unfold(x.float(), module.kernel_size, dilation=module.dilation, padding=module.padding, stride=1)
    _, d, positions = patches.shape
    total = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    if positions >= d:
        for chunk in patches.split(max(1, GRAM_CHUNK_ELEMENTS // (d * d))):
            total += torch.bmm(chunk, chunk.transpose(1, 2)).double().sum(0)
    else:
        for block in patches.transpose(1, 2).reshape(-1, d).split(ROWS_PER_PRODUCT):
            total += (block.T @ block).double()
    return total


@torch.no_grad()
def accumulate_covariance(model: nn.Module, batches, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Sum of row outer products per layer (float64) over an iterable of input batches."""
    layers = projectable_layers(model)
    sums: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(module, inputs, _output):
            update = row_gram(module, inputs[0].detach())
            sums[name] = sums[name] + update if name in sums else update

        return hook

    was_training = model.training
    model.eval()
    for m in model.modules():  # Dropout stays active, as in the paper's statistics pass
        if isinstance(m, nn.Dropout):
            m.train()
    handles = [m.register_forward_hook(hook_for(n)) for n, m in layers.items()]
    try:
        for x in batches:
            model(x.to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: value.cpu() for name, value in sums.items()}


def eigenbasis(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """U and sigma (descending) of a symmetric PSD matrix; tiny negative eigenvalues clip to 0."""
    values, vectors = torch.linalg.eigh(covariance.double())
    order = torch.argsort(values, descending=True)
    return vectors[:, order], values[order].clamp_min(0).sqrt()


def compute_layer_stats(model: nn.Module, images: np.ndarray, *, batch_size: int = 256, device: str = "cpu", augment=None) -> dict:
    """Stats for the whole training set: {layer name: {"U": ..., "sigma": ..., "rows": n}}."""
    from forgetflow.training import to_tensor

    def batches():
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[start : start + batch_size])
            yield augment(x) if augment is not None else x

    covariances = accumulate_covariance(model, batches(), device)
    stats = {}
    for name, cov in covariances.items():
        u, sigma = eigenbasis(cov)
        stats[name] = {"U": u, "sigma": sigma}
    return {"kind": "input-covariance/1", "n_samples": int(len(images)), "layers": stats}


def covariance_from_stats(layer: dict) -> torch.Tensor:
    """Rebuild C = U diag(sigma^2) U^T from stored stats."""
    u, sigma = layer["U"], layer["sigma"]
    return (u * sigma.pow(2)) @ u.T
