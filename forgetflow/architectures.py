"""Architectures named by `model.arch`, beyond forgetflow's own `small_cnn` and `resnet18`.

- `torchvision:NAME`: `torchvision.models.get_model(NAME, weights=None, num_classes=C)`. Its first
  conv takes the data's channels; for images of 64 px or smaller it becomes the small-image stem,
  as in `resnet18`: a 3x3 stride-1 conv, and a max-pool right after it is dropped.
- `MODULE:CALLABLE`: the user's factory `f(in_channels, num_classes) -> nn.Module` from a module in
  the workspace. Only modules whose file lies under an import root (a workspace that
  `load_settings` opened) are imported: a checkpoint's spec names a function to call, and must
  not become a way to call any function on the machine.

The spec string travels in every checkpoint, so a version loads without the user's params file.
`check_arch` needs no torch: params.yaml is validated without it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

from forgetflow.errors import ConfigError

BUILTIN = ("small_cnn", "resnet18")
SMALL_IMAGE_MAX = 64
IMPORT_ROOTS_ENV = "FORGETFLOW_IMPORT_ROOTS"  # inherited by subprocesses (torchrun ranks, served runs)
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
FORMS = "small_cnn, resnet18, torchvision:NAME (e.g. torchvision:resnet50) or MODULE:CALLABLE (a factory f(in_channels, num_classes) in the workspace)"


def check_arch(arch: str) -> str:
    """The spec if it is well formed; ValueError otherwise (pydantic reports it with the field)."""
    if arch in BUILTIN:
        return arch
    prefix, sep, rest = arch.partition(":")
    if sep and prefix == "torchvision" and re.fullmatch(r"[a-z0-9_]+", rest):
        return arch
    if sep and prefix != "torchvision" and _DOTTED.fullmatch(prefix) and _DOTTED.fullmatch(rest):
        return arch
    raise ValueError(f"{arch!r} is not an architecture: use {FORMS}")


# Import roots ---------------------------------------------------------------------------------
def add_import_root(path: Path) -> None:
    """Allow factories from modules under `path` (and make them importable), here and in subprocesses."""
    root = str(Path(path).resolve())
    roots = [r for r in os.environ.get(IMPORT_ROOTS_ENV, "").split(os.pathsep) if r]
    if root not in roots:
        os.environ[IMPORT_ROOTS_ENV] = os.pathsep.join([*roots, root])


def import_roots() -> list[Path]:
    return [Path(r) for r in os.environ.get(IMPORT_ROOTS_ENV, "").split(os.pathsep) if r]


def _import_user_module(name: str, arch: str):
    roots = import_roots()
    for root in roots:  # appended: a workspace file never shadows an installed package
        if str(root) not in sys.path:
            sys.path.append(str(root))
    where = ", ".join(map(str, roots)) or "no workspace opened"
    importlib.invalidate_caches()  # a module written since the last import is found too
    try:
        spec = importlib.util.find_spec(name.split(".")[0])  # finds the top package without running it
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ConfigError(f"model.arch {arch}: no module {name!r} in the workspace ({where})", f"put {name.replace('.', '/')}.py (or a package) in the workspace folder")
    origin = spec.origin if spec.origin not in (None, "built-in", "frozen") else next(iter(spec.submodule_search_locations or []), None)
    if origin is None or not any(Path(origin).resolve().is_relative_to(root) for root in roots):
        raise ConfigError(
            f"model.arch {arch}: module {name.split('.')[0]!r} is {origin or 'built into Python'}, outside the workspace ({where})",
            "forgetflow imports model factories only from the workspace: add a module there that imports your factory (and give it a name no installed package has)",
        )
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise ConfigError(f"model.arch {arch}: importing {name} failed: {type(exc).__name__}: {exc}", "fix the module so that `import` works in the workspace") from exc


# Building ------------------------------------------------------------------------------------
def build_network(arch: str, in_channels: int, num_classes: int, image_size: tuple[int, int]):
    """The backbone for a `torchvision:` or `MODULE:CALLABLE` spec (forgetflow's own: models.py)."""
    try:
        check_arch(arch)
    except ValueError as exc:
        raise ConfigError(f"unknown architecture: {exc}", "set model.arch in params.yaml to one of these forms") from exc
    prefix, _, rest = arch.partition(":")
    if prefix == "torchvision":
        return torchvision_network(rest, in_channels, num_classes, small_images=max(image_size) <= SMALL_IMAGE_MAX)
    return user_network(arch, in_channels, num_classes)


def torchvision_network(name: str, in_channels: int, num_classes: int, *, small_images: bool):
    import difflib

    from torchvision import models

    known = models.list_models(module=models)  # classification models only
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        raise ConfigError(f"torchvision has no classification model {name!r}", f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models(module=torchvision.models)")
    extra = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}  # one output in training too
    net = models.get_model(name, weights=None, num_classes=num_classes, **extra)
    adapt_stem(net, in_channels, small_images=small_images)
    return net


def adapt_stem(net, in_channels: int, *, small_images: bool) -> None:
    """The first conv takes `in_channels`; with `small_images`, it becomes 3x3 stride 1 and a
    max-pool that follows it (before any other conv) is dropped."""
    from torch import nn

    modules = list(net.named_modules())
    position = next((i for i, (_, m) in enumerate(modules) if isinstance(m, nn.Conv2d)), None)
    if position is None:
        raise ConfigError("the model has no Conv2d layer to take the images", "choose a convolutional torchvision model")
    name, conv = modules[position]
    kernel, stride, padding = conv.kernel_size, conv.stride, conv.padding
    if small_images:
        kernel = tuple(min(k, 3) for k in kernel)
        stride, padding = (1, 1), tuple(k // 2 for k in kernel)
    if (in_channels, kernel, stride, padding) != (conv.in_channels, conv.kernel_size, conv.stride, conv.padding):
        if conv.groups != 1:
            raise ConfigError(f"the first conv {name} is grouped (groups={conv.groups}) and cannot be adapted to {in_channels} channel(s)", "use a model whose first conv is a plain Conv2d")
        stem = nn.Conv2d(in_channels, conv.out_channels, kernel, stride=stride, padding=padding, dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode)
        net.set_submodule(name, stem)
    if small_images:
        for pool_name, module in modules[position + 1 :]:
            if isinstance(module, nn.Conv2d):
                break
            if isinstance(module, nn.MaxPool2d):
                net.set_submodule(pool_name, nn.Identity())
                break


def user_network(arch: str, in_channels: int, num_classes: int):
    from torch import nn

    module_name, _, attribute = arch.partition(":")
    factory = _import_user_module(module_name, arch)
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise ConfigError(f"model.arch {arch}: {module_name} has no callable {attribute!r}", "define def factory(in_channels, num_classes) -> nn.Module there")
    try:
        net = factory(in_channels, num_classes)
    except Exception as exc:
        raise ConfigError(f"model.arch {arch}: {attribute}({in_channels}, {num_classes}) raised {type(exc).__name__}: {exc}", "the factory is called as f(in_channels, num_classes) and must return an nn.Module") from exc
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model.arch {arch}: {attribute}(...) returned {type(net).__name__}, not a torch.nn.Module", "return the model object from the factory")
    return net


def check_fits(model, in_channels: int, image_size: tuple[int, int], num_classes: int) -> None:
    """One forward pass on zeros: the model takes the data's images and gives one score per class."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, in_channels, *image_size))
    except Exception as exc:
        raise ConfigError(
            f"the model cannot take {image_size[0]}x{image_size[1]} images with {in_channels} channel(s): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "choose an architecture for this image size (torchvision models need a few dozen pixels at least; vision transformers a fixed size), or set data.resize and re-import",
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"the model returns {shape} for a batch of 2, not (2, {num_classes}) class scores", "the model must return one logit per class")
