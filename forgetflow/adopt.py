"""Adopt a model trained elsewhere as the first registered version, instead of training one.

The file is a `state_dict` (of the network, or of a whole forgetflow classifier) or a checkpoint in
forgetflow's format. Its architecture is `--arch`, else the checkpoint's spec, else params.yaml's
`model.arch`, built for the dataset's channels and classes. The weights must load strictly (every
key, every shape). The model sees images as forgetflow stores them, scaled to [0, 1], and
normalises them itself with a per-channel mean and std: by default the training split's, as
forgetflow trains; `mean`/`std` give the ones the model was trained with (0 and 1: none).

The adopted model is evaluated on val and test, gets its layer statistics (PGU), and is registered
with `forgetflow.stage=adopted`, the file's SHA-256, the data md5 and `recipe=unknown`, as
`champion`. The reference that later batches retrain from scratch uses params.yaml's `model` and
`train` sections: adoption writes the architecture into `model.arch`; matching the `train:` recipe
to the user's own is the user's part (README, "Your own model and data").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from forgetflow.errors import ConfigError
from forgetflow.settings import Settings
from forgetflow.workspace import write_atomic

NESTED_KEYS = ("state_dict", "model_state_dict", "model")  # where training scripts often put the weights


@dataclass
class Adoption:
    version: str
    run_id: str
    dataset: str
    data_md5: str
    arch: str
    sha256: str
    metrics: dict
    layer_stats: str  # "stored", or why not
    params_changed: str | None = None  # what adoption wrote into params.yaml
    aliases: list[str] = field(default_factory=list)


def read_weights(path: Path) -> tuple[dict, dict | None]:
    """(state_dict, forgetflow spec or None) from a weights file; never unpickles code."""
    import torch

    from forgetflow.models import CHECKPOINT_FORMAT

    if not path.is_file():
        raise ConfigError(f"no checkpoint file {path}", "pass the path of a state_dict saved with torch.save(model.state_dict(), PATH)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled objects and names the first class it met
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        detail = f"it holds a pickled {found.group(1)} object" if found else "not a file torch.save wrote"
        raise ConfigError(
            f"{path.name} is not a weights file torch can load safely ({detail})",
            "save the weights, not the model object: torch.save(model.state_dict(), PATH)",
        ) from exc
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return dict(payload["state_dict"]), dict(payload["spec"])
    if isinstance(payload, dict) and not _is_state_dict(payload):
        nested = next((payload[k] for k in NESTED_KEYS if _is_state_dict(payload.get(k))), None)
        if nested is None:
            keys = ", ".join(map(str, list(payload)[:6]))
            raise ConfigError(f"{path.name} holds a dict that is not a state_dict (keys: {keys})", f"save model.state_dict(), or put it under one of the keys {', '.join(NESTED_KEYS)}")
        payload = nested
    if not _is_state_dict(payload):
        raise ConfigError(f"{path.name} holds a {type(payload).__name__}, not a state_dict", "save it with torch.save(model.state_dict(), PATH)")
    state = dict(payload)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, None


def _is_state_dict(value) -> bool:
    import torch

    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def load_strict(target, state: dict, *, what: str) -> None:
    """Load every key with its shape, or say exactly what differs."""
    expected = target.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} is {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model" for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
        raise ConfigError(
            f"the weights do not fit {what}: {'; '.join(parts)}",
            "pass the architecture the model was trained with (--arch SPEC), built for this dataset's channels and classes "
            "(torchvision models on images of 64 px or less get the small-image stem: README, 'Your own model and data')",
        )
    target.load_state_dict(state, strict=True)


def parse_stats(text: str | None, channels: int, name: str) -> list[float] | None:
    """'0.5' or '0.4,0.5,0.6' -> one value per channel."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise ConfigError(f"--{name} {text!r} is not a number or a comma-separated list of numbers", f"e.g. --{name} 0.5 or --{name} 0.485,0.456,0.406") from exc
    if len(values) == 1:
        values = values * channels
    if len(values) != channels or not all(math.isfinite(v) for v in values) or (name == "std" and any(v <= 0 for v in values)):
        raise ConfigError(f"--{name} needs 1 or {channels} finite number(s){', all above 0' if name == 'std' else ''}, got {text!r}", "one value per image channel of the dataset")
    return values


def params_with_arch(params_path: Path, arch: str) -> str | None:
    """params.yaml's text with `arch` in its `model:` section (comments and layout kept), or None
    when it is already there. The edit must parse to the same document with only model.arch
    changed; otherwise the user is asked to make it."""
    import yaml

    from forgetflow.params import load_params

    if load_params(params_path).model.arch == arch:
        return None
    text = params_path.read_text() if params_path.exists() else ""
    expected = yaml.safe_load(text) or {}
    lines = text.splitlines(keepends=True)
    value = f'"{arch}"'
    start = next((i for i, line in enumerate(lines) if re.match(r"model:", line)), None)
    if start is None:
        lines.append(("" if not lines or lines[-1].endswith("\n") else "\n") + f"model:\n  arch: {value}\n")
    elif re.match(r"model:\s*\{", lines[start]):  # flow style on one line: rewrite that line
        section = dict(expected.get("model") or {}, arch=arch)
        lines[start] = "model: " + yaml.safe_dump(section, default_flow_style=True, width=10_000).strip() + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace() and not lines[i].startswith("#")), len(lines))
        line = next((i for i in range(start + 1, end) if re.match(r"\s+arch:", lines[i])), None)
        if line is None:
            lines.insert(start + 1, f"  arch: {value}\n")
        else:
            indent = re.match(r"(\s+)", lines[line]).group(1)
            comment = re.search(r"\s+#.*$", lines[line].rstrip("\n"))
            lines[line] = f"{indent}arch: {value}{comment.group(0) if comment else ''}\n"
    edited = "".join(lines)
    expected["model"] = dict(expected.get("model") or {}, arch=arch)
    try:
        same = yaml.safe_load(edited) == expected
    except yaml.YAMLError:
        same = False
    if not same:
        raise ConfigError(f"could not set model.arch to {arch} in {params_path} without changing anything else", f'set it by hand (model:\n  arch: "{arch}") and adopt again')
    return edited


def build_adopted(checkpoint: Path, state: dict, saved_spec: dict | None, spec, *, arch: str | None, mean: str | None, std: str | None, dataset: str):
    """The classifier holding the file's weights: the checkpoint's spec, or `spec` (the dataset's,
    from params.yaml) with `arch` and the given normalisation; loaded strictly."""
    from forgetflow.architectures import check_fits
    from forgetflow.models import ModelSpec, build_model

    whole = saved_spec is not None or (any(k.startswith("normalize.") for k in state) and all(k.startswith(("net.", "normalize.")) for k in state))
    if saved_spec is not None:
        recorded = ModelSpec(**saved_spec)
        if arch is not None and arch != recorded.arch:
            raise ConfigError(f"{checkpoint.name} is a forgetflow checkpoint of {recorded.arch}, not {arch}", "leave --arch out: the checkpoint names its architecture")
        if (recorded.in_channels, recorded.num_classes, recorded.image_hw) != (spec.in_channels, spec.num_classes, spec.image_hw):
            raise ConfigError(
                f"{checkpoint.name} was made for {recorded.in_channels}-channel {recorded.image_hw[0]}x{recorded.image_hw[1]} images of {recorded.num_classes} classes; "
                f"dataset {dataset} has {spec.in_channels}-channel {spec.image_hw[0]}x{spec.image_hw[1]} images of {spec.num_classes} classes",
                "adopt it with the dataset it was trained on (--dataset NAME)",
            )
        spec = recorded
    elif arch is not None:
        spec.arch = arch
    if whole and (mean is not None or std is not None):
        raise ConfigError("the file holds the model's own normalisation (normalize.mean/std)", "leave --mean and --std out")
    spec.mean = parse_stats(mean, spec.in_channels, "mean") or spec.mean
    spec.std = parse_stats(std, spec.in_channels, "std") or spec.std
    model = build_model(spec)
    what = f"{spec.arch} for {spec.in_channels}-channel {spec.image_hw[0]}x{spec.image_hw[1]} images and {spec.num_classes} classes"
    load_strict(model if whole else model.net, state, what=what)
    if whole:  # the file's normalisation is the model's: the spec it travels with says so
        spec.mean, spec.std = model.normalize.mean.flatten().tolist(), model.normalize.std.flatten().tolist()
    check_fits(model, spec.in_channels, spec.image_hw, spec.num_classes)
    return model.eval()


def adopt(settings: Settings, checkpoint: Path, *, arch: str | None = None, dataset: str | None = None, mean: str | None = None, std: str | None = None, force: bool = False) -> Adoption:
    """Check, evaluate and register `checkpoint` as the champion (see the module docstring)."""
    import shutil

    from forgetflow.architectures import check_arch
    from forgetflow.base_model import scratch_dir
    from forgetflow.data.importer import default_dataset, dvc_workspace
    from forgetflow.data.store import DatasetVersion
    from forgetflow.deletion.lock import workspace_lock
    from forgetflow.layer_stats import layer_stats_if_supported
    from forgetflow.models import save_checkpoint
    from forgetflow.params import load_params
    from forgetflow.training import evaluate, model_spec_for

    checkpoint = Path(checkpoint)
    name = default_dataset(settings, dataset)
    root = settings.data_dir / name
    if not (root / "meta.json").is_file():
        raise ConfigError(f"no dataset {name!r} in {settings.data_dir}", "import it first: forgetflow data import ...")
    if arch is not None:
        try:
            check_arch(arch)
        except ValueError as exc:
            raise ConfigError(f"--arch: {exc}", "e.g. --arch torchvision:resnet18 or --arch mymodels:make_net") from exc
    state, saved_spec = read_weights(checkpoint)
    _refuse_second_champion(settings, force)
    params = load_params(settings.params_path)
    version = DatasetVersion(root)
    model = build_adopted(checkpoint, state, saved_spec, model_spec_for(params.model, version.meta), arch=arch, mean=mean, std=std, dataset=name)
    spec = model.spec
    new_params = params_with_arch(settings.params_path, spec.arch)  # checked now, written once registered
    from forgetflow.data.store import sha256_file

    sha256 = sha256_file(checkpoint)
    device = settings.resolved_device()
    with workspace_lock(settings, purpose="adopt"):
        _refuse_second_champion(settings, force)  # again, under the lock
        data_md5 = dvc_workspace(settings).md5(root)
        metrics = {}
        for split in ("val", "test"):
            scores = evaluate(model.to(device), version.load(split), device)
            metrics.update({f"{split}_accuracy": scores["accuracy"], f"{split}_loss": scores["loss"]})
        metrics = {k: v for k, v in metrics.items() if v == v}  # an empty split has no score
        stats, why = layer_stats_if_supported(model, version.load("train").images, device=device) if params.train.store_layer_stats else (None, "train.store_layer_stats is false")
        model = model.cpu().eval()
        old_params = settings.params_path.read_text() if new_params is not None else None
        if new_params is not None:  # the reference of later batches is retrained with this architecture
            write_atomic(settings.params_path, new_params)
        work = scratch_dir(settings)
        try:
            saved = save_checkpoint(
                model, work / "checkpoint.pt",
                extra={"dataset": name, "data_md5": data_md5, "recipe": "unknown", "adopted_from": checkpoint.name, "adopted_sha256": sha256, "class_names": version.class_names, "metrics": metrics},
                layer_stats=stats,
            )
            registration = _register(settings, load_params(settings.params_path), model, saved, name=name, data_md5=data_md5, sha256=sha256, source=checkpoint.name, metrics=metrics, layer_stats=why or "stored")
        except BaseException:
            if old_params is not None:  # nothing registered: params.yaml as it was
                write_atomic(settings.params_path, old_params)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return Adoption(registration.version, registration.run_id, name, data_md5, spec.arch, sha256, metrics, why or "stored", f"model.arch: {spec.arch}" if new_params is not None else None, registration.aliases)


def _refuse_second_champion(settings: Settings, force: bool) -> None:
    from forgetflow.tracking import current_version

    champion = current_version(settings)
    if champion is not None and not force:
        raise ConfigError(
            f"{champion['name']} already has a champion (version {champion['version']}); adoption registers the first version",
            "use --force to register the adopted model as the new champion anyway",
        )


def _register(settings: Settings, params, model, checkpoint: Path, *, name: str, data_md5: str, sha256: str, source: str, metrics: dict, layer_stats: str):
    from forgetflow.lineage import code_version, prefect_flow_run_id
    from forgetflow.registration import dvc_source_url
    from forgetflow.tracking import lineage_tags, log_and_register

    spec = model.spec
    tags = lineage_tags(
        {
            "stage": "adopted",
            "method": "adopted",  # trained outside forgetflow: no recipe of ours
            "dataset": name,
            "data_md5": data_md5,
            "checkpoint_sha256": sha256,
            "recipe": "unknown: trained outside forgetflow",
            "recipe_hash": "unknown",
            "params_hash": params.hash(),
            "code_version": code_version(),
            "prefect_flow_run_id": prefect_flow_run_id(),
            "source": f"adopt {source}",
            "arch": spec.arch,
            "layer_stats": layer_stats,
            "parent_version": "none",
        }
    )
    flat = {"model.arch": spec.arch, "model.mean": ",".join(f"{v:.6g}" for v in spec.mean), "model.std": ",".join(f"{v:.6g}" for v in spec.std), "adopted.sha256": sha256}
    return log_and_register(
        settings,
        run_name=f"adopt-{name}-{data_md5[:8]}",
        model=model,
        checkpoint_path=checkpoint,
        params=flat,
        metrics=metrics,
        datasets=[{"name": name, "md5": data_md5, "source_url": dvc_source_url(name, data_md5), "context": "training"}],
        tags=tags,
    )
