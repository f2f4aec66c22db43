"""Retrain from scratch on the retained data with the one training recipe (the exact-unlearning reference).

`config` is the `train` section of params.yaml (`forgetflow.params.TrainParams`); defaults are that
section's defaults, so pass `params.train.model_dump()` to reproduce the base model's recipe. The
architecture comes from the given model's `spec`; its weights are not used.
"""

from __future__ import annotations

from forgetflow.errors import ConfigError
from forgetflow.methods.base import MethodError, MethodInfo, Timer, UnlearnResult, register
from forgetflow.params import TrainParams

DEFAULTS = TrainParams().model_dump()
SEARCH_SPACE: dict = {}  # the reference is never tuned: it uses the base model's recipe


def retrain(model, forget, *, retain, val=None, config, seed, device, progress=True, **_):
    from pydantic import ValidationError

    from forgetflow.training import train_model

    spec = getattr(model, "spec", None)
    if spec is None:
        raise MethodError("retrain needs a forgetflow ImageClassifier (with .spec) to know the architecture", "load the model with forgetflow.models.load_checkpoint")
    try:
        recipe = TrainParams.model_validate(config)
    except ValidationError as exc:
        raise ConfigError(f"retrain: invalid training recipe: {exc}", "use the `train` section of params.yaml") from exc
    timer = Timer()
    result = train_model(spec, recipe, retain, val, device=device, seed=seed, progress=progress)
    return UnlearnResult(model=result.model.to(device).eval(), seconds=timer.elapsed, config=config, log=result.history, stopped_because=f"{recipe.epochs} epochs done")


INFO = register(
    MethodInfo(
        name="retrain",
        summary="Retrain from scratch on the retained data (exact unlearning, the reference)",
        paper="exact unlearning (the gold standard every method is compared with)",
        kinds=("samples", "subjects", "classes"),
        goals=("forget",),
        needs=("forget", "retain"),
        defaults=DEFAULTS,
        search_space=SEARCH_SPACE,
        fn=retrain,
    )
)
