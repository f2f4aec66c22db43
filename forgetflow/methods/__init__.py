"""The method registry and the one call signature every unlearning method shares.

    unlearn(name, model, forget, *, retain=None, val=None, stats=None, config=None, seed=0,
            device="cpu", kind="samples", goal="forget", time_budget_s=None, progress=True)
        -> UnlearnResult

`forget`, `retain` and `val` are `forgetflow.data.store.LoadedSplit` objects (uint8 images,
int64 labels, sample IDs). `stats` is the checkpoint's `layer_stats` (PGU). `config` holds
hyperparameters; missing keys take the method's paper defaults, unknown keys are an error (a typo
must not silently fall back to a default). A method never modifies the model it is given: it
returns a new one.

One key is forgetflow's and open to every method with goal `forget`: `repair_epochs` (default 0).
After the method, the candidate is fine-tuned that many epochs on `retain` (SGD lr 0.01, momentum
0.9, weight decay 5e-4, batch 64) with a guard on the forget set, within what is left of the time
budget (`_loops.repair_on_retain`). It is a ladder's repair step, not part of any paper: the
methods that reach the forgetting cost retain accuracy, which the gate checks against a reference
that fits its training data. The result's config records it.

Every module in this package is imported automatically (except `base` and names starting with
`_`), so adding a method is adding one module that calls `base.register`. A module that fails to
import does not take the registry down: the failure is kept in `IMPORT_ERRORS`, warned about, and
reported by `get_method` when someone asks for a method that is missing.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import pkgutil
import traceback
import warnings

from forgetflow.errors import ConfigError
from forgetflow.methods.base import (
    GOALS,
    KINDS,
    REGISTRY,
    MethodError,
    MethodInfo,
    MissingInputError,
    UnknownMethodError,
    UnlearnResult,
    UnsupportedRequestError,
)

IMPORT_ERRORS: dict[str, str] = {}  # module name -> formatted exception


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_") or module.name == "base" or module.name.startswith("base"):
            continue
        try:
            importlib.import_module(f"{__name__}.{module.name}")
        except Exception as exc:  # noqa: BLE001 -- one broken method module must not hide the others
            IMPORT_ERRORS[module.name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            warnings.warn(f"forgetflow.methods.{module.name} failed to import: {IMPORT_ERRORS[module.name]}", RuntimeWarning, stacklevel=2)


_import_all()


def list_methods() -> list[MethodInfo]:
    return [REGISTRY[name] for name in sorted(REGISTRY)]


def get_method(name: str) -> MethodInfo:
    if name in REGISTRY:
        return REGISTRY[name]
    broken = [module for module in IMPORT_ERRORS if name.replace("-", "_") in module]
    if broken:
        raise UnknownMethodError(f"method {name!r} is not available: module {broken[0]!r} failed to import ({IMPORT_ERRORS[broken[0]]})", "fix the module's import error (python -c 'import forgetflow.methods." + broken[0] + "')")
    raise UnknownMethodError(f"unknown unlearning method {name!r}", f"choose one of: {', '.join(sorted(REGISTRY))} (`forgetflow methods` lists them)")


def resolve_config(info: MethodInfo, config: dict | None) -> dict:
    """Paper defaults overridden by `config`; unknown keys raise ConfigError."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(info.defaults))
    if unknown:
        raise ConfigError(f"{info.name}: unknown hyperparameter(s) {', '.join(unknown)}", f"allowed: {', '.join(sorted(info.defaults))}")
    return {**copy.deepcopy(info.defaults), **config}


def check_request(info: MethodInfo, *, kind: str, goal: str, forget=None, retain=None, val=None, stats=None, config: dict | None = None) -> dict:
    """Validate kind, goal and inputs before any work; returns the resolved config."""
    if kind not in KINDS:
        raise UnsupportedRequestError(f"unknown request kind {kind!r}", f"use one of {', '.join(KINDS)}")
    if goal not in GOALS:
        raise UnsupportedRequestError(f"unknown request goal {goal!r}", f"use one of {', '.join(GOALS)}")
    if not info.serves(kind, goal):
        able = [m.name for m in list_methods() if m.serves(kind, goal)]
        raise UnsupportedRequestError(
            f"method {info.name!r} does not serve {kind} requests with goal {goal!r} (it serves kinds {', '.join(info.kinds)}; goals {', '.join(info.goals)})",
            f"methods that do: {', '.join(able) or 'none'}",
        )
    if forget is None or len(forget.labels) == 0:
        raise MissingInputError(f"{info.name}: the forget set is empty", "a request must name at least one sample, subject or class")
    given = {"retain": retain, "val": val, "stats": stats}
    hints = {
        "retain": "pass retain= (a sample of the retained training data; class-balanced for class requests)",
        "val": "pass val= (the validation split drawn from the training pool, never the test split)",
        "stats": "PGU needs the per-layer input statistics stored with the checkpoint: retrain the base model with `train.store_layer_stats: true` in params.yaml and pass the checkpoint's `layer_stats` as stats=",
    }
    for need in info.needs:
        if need == "forget":
            continue
        value = given[need]
        if value is None or (need != "stats" and len(value.labels) == 0):
            raise MissingInputError(f"{info.name} needs {need!r} data, which was not given", hints[need])
    resolved = resolve_config(info, config)
    if info.check is not None:
        info.check(resolved, forget=forget, retain=retain, val=val, stats=stats, kind=kind, goal=goal)
    return resolved


def unlearn(name: str, model, forget, *, retain=None, val=None, stats=None, config: dict | None = None, seed: int = 0, device: str = "cpu", kind: str = "samples", goal: str = "forget", time_budget_s: float | None = None, progress: bool = True) -> UnlearnResult:
    """Run method `name` on a deep copy of `model`; the caller's model is never touched."""
    from forgetflow.device import seed_everything

    info = get_method(name)
    config = dict(config or {})
    repair_epochs = _repair_epochs(name, config.pop("repair_epochs", 0), goal, retain)
    resolved = check_request(info, kind=kind, goal=goal, forget=forget, retain=retain, val=val, stats=stats, config=config)
    working = copy.deepcopy(model).to(device)
    seed_everything(seed)
    kwargs = dict(retain=retain, val=val, stats=stats, config=resolved, seed=seed, device=device, time_budget_s=time_budget_s, progress=progress)
    parameters = inspect.signature(info.fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key, value in (("kind", kind), ("goal", goal)):
        if takes_any or key in parameters:
            kwargs[key] = value
    result = info.fn(working, forget, **kwargs)
    if not isinstance(result, UnlearnResult):
        raise MethodError(f"method {name!r} returned {type(result).__name__}, not UnlearnResult", "a method must return forgetflow.methods.base.UnlearnResult")
    if repair_epochs:
        from forgetflow.methods._loops import repair_on_retain

        repair_on_retain(result, forget, retain, kind=kind, val=val, epochs=repair_epochs, seed=seed, device=device, time_budget_s=time_budget_s, progress=progress)
    result.model.eval()
    return result


def _repair_epochs(name: str, value, goal: str, retain) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name}: repair_epochs must be a whole number >= 0, got {value!r}", "e.g. repair_epochs: 2")
    if value and goal != "forget":
        raise ConfigError(f"{name}: repair_epochs serves goal forget only, not {goal!r}", "fine-tuning on the retained data would undo the flipped predictions")
    if value and (retain is None or len(retain.labels) == 0):
        raise MissingInputError(f"{name}: repair_epochs needs 'retain' data, which was not given", "pass retain=, or drop repair_epochs")
    return value


__all__ = [
    "IMPORT_ERRORS",
    "MethodInfo",
    "UnlearnResult",
    "check_request",
    "get_method",
    "list_methods",
    "resolve_config",
    "unlearn",
]
