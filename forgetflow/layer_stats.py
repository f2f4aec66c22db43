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

Any model built from Conv2d and Linear layers works, whatever its wiring; normalisation layers and
PReLU keep their own parameters untouched (PGU and SVD projection never change them). A model with
another kind of parametrised layer (a grouped or depthwise conv, attention, an embedding, a module
holding raw parameters) is refused with the layer's name and type (`UnsupportedModelError`), as is
a Conv2d or Linear the forward pass never calls. Convs are unfolded with zero padding whatever
their padding mode (the border rows of reflect-padded convs are approximated).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.errors import UnsupportedModelError

# Parametrised layers the projection methods leave as they are.
LEFT_ALONE = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm, nn.PReLU)


def unfold_padding(module: nn.Conv2d) -> tuple[int, int] | None:
    """A conv's padding as numbers for F.unfold ('valid', 'same' resolved); None when 'same' pads unevenly."""
    if not isinstance(module.padding, str):
        return tuple(module.padding)
    if module.padding == "valid":
        return (0, 0)
    totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
    return None if any(t % 2 for t in totals) else tuple(t // 2 for t in totals)


def unsupported_layers(model: nn.Module) -> list[str]:
    """'<name> (<type>: why)' for each layer the layer statistics and SVD activations cannot handle."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                found.append(f"{name} (Conv2d with groups={module.groups}: a grouped or depthwise convolution)")
            elif unfold_padding(module) is None:
                found.append(f"{name} (Conv2d with padding='same' and an even kernel: uneven padding)")
        elif isinstance(module, (nn.Linear, *LEFT_ALONE)):
            continue
        elif any(True for _ in module.parameters(recurse=False)):
            owned = ", ".join(n for n, _ in module.named_parameters(recurse=False))
            found.append(f"{name or '(the model itself)'} ({type(module).__name__}, holding parameters {owned})")
    return found


def refuse(problems: list[str], what: str) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UnsupportedModelError(
            f"{what} cannot handle layer {problems[0]}{more}",
            "they work on models built from Conv2d (groups=1) and Linear layers, normalisation layers left as they are: "
            "use the other unlearning methods for this architecture (unlearning.methods in params.yaml), or another architecture",
        )


def projectable_layers(model: nn.Module, what: str = "PGU's layer statistics") -> dict[str, nn.Module]:
    """Conv2d and Linear modules by qualified name (module references, never name rewriting);
    refuses a model with a layer the projection methods cannot handle."""
    refuse(unsupported_layers(model), what)
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def check_all_called(layers: dict[str, nn.Module], seen, what: str) -> None:
    """A Conv2d/Linear the forward pass never calls (an unused head, a weight used functionally) has
    no input to take statistics of."""
    missing = [name for name in layers if name not in seen]
    refuse([f"{name} ({type(layers[name]).__name__} never called in the forward pass)" for name in missing], what)


def layer_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The representation rows of a layer input: (rows, in_features) or (rows, C_in*k*k)."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    patches = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=unfold_padding(module), stride=1)
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
    patches = F.unfold(x.float(), module.kernel_size, dilation=module.dilation, padding=unfold_padding(module), stride=1)
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
    try:
        values, vectors = torch.linalg.eigh(covariance.double())
    except torch.linalg.LinAlgError:  # LAPACK's eigh can fail on a degenerate matrix; the SVD of a PSD one is the same basis
        vectors, values, _ = torch.linalg.svd(covariance.double())
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
    check_all_called(projectable_layers(model), covariances, "PGU's layer statistics")
    stats = {}
    for name, cov in covariances.items():
        u, sigma = eigenbasis(cov)
        stats[name] = {"U": u, "sigma": sigma}
    return {"kind": "input-covariance/1", "n_samples": int(len(images)), "layers": stats}


def layer_stats_if_supported(model: nn.Module, images: np.ndarray, **kwargs) -> tuple[dict | None, str | None]:
    """(stats, None), or (None, why) for a model the statistics cannot handle: such a model is still
    trained, adopted and registered; PGU then refuses it and the ladder's other rungs serve it."""
    try:
        return compute_layer_stats(model, images, **kwargs), None
    except UnsupportedModelError as exc:
        return None, exc.message


def covariance_from_stats(layer: dict) -> torch.Tensor:
    """Rebuild C = U diag(sigma^2) U^T from stored stats."""
    u, sigma = layer["U"], layer["sigma"]
    return (u * sigma.pow(2)) @ u.T
