"""The method registry: discovery, request checks, clear errors, config handling, the CLI listing."""

import json

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

import forgetflow.methods as methods
from forgetflow.errors import ConfigError, ForgetflowError
from forgetflow.methods import get_method, list_methods, unlearn
from forgetflow.methods._fixtures import make_splits, take, train_small
from forgetflow.methods.base import MissingInputError, UnknownMethodError, UnsupportedRequestError

SEED_METHODS = {"l2ul", "svd_projection", "pgu", "retrain", "finetune", "gradient_ascent", "neggrad_plus", "random_labels"}


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    splits = make_splits("digits", seed=0)
    model = train_small(splits, width=4, epochs=2).model
    yield splits, model, take(splits.train, np.arange(10))
    torch.set_num_threads(threads)


def test_every_method_module_is_discovered_and_declares_itself():
    names = {info.name for info in list_methods()}
    assert SEED_METHODS <= names
    assert not {k: v for k, v in methods.IMPORT_ERRORS.items() if k in SEED_METHODS}
    for info in list_methods():
        assert info.kinds and info.goals and "forget" in info.needs
        assert set(info.needs) <= {"forget", "retain", "val", "stats"}
        assert set(info.search_space) <= set(info.defaults), info.name


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownMethodError, match="svd_projection"):
        get_method("no-such-method")


@pytest.mark.parametrize(
    "name, kind, goal",
    [("svd_projection", "samples", "forget"), ("l2ul", "classes", "misclassify"), ("l2ul", "samples", "forget"), ("pgu", "samples", "relabel"), ("finetune", "samples", "teleport")],
)
def test_unsupported_kind_or_goal_is_refused_before_any_work(setup, name, kind, goal):
    splits, model, forget = setup
    with pytest.raises(UnsupportedRequestError) as caught:
        unlearn(name, model, forget, retain=splits.train, val=splits.val, stats={"layers": {}}, kind=kind, goal=goal, progress=False)
    assert caught.value.hint  # says what to use instead


@pytest.mark.parametrize("name, missing", [("finetune", "retain"), ("svd_projection", "retain"), ("pgu", "val"), ("retrain", "retain")])
def test_missing_inputs_name_what_is_missing(setup, name, missing):
    splits, model, forget = setup
    kind = "classes" if name == "svd_projection" else "samples"
    with pytest.raises(MissingInputError, match=missing) as caught:
        unlearn(name, model, forget, kind=kind, stats={"layers": {}}, progress=False)
    assert isinstance(caught.value, ForgetflowError) and caught.value.hint


def test_pgu_without_stored_statistics_says_to_retrain_with_them(setup):
    splits, model, forget = setup
    with pytest.raises(MissingInputError) as caught:
        unlearn("pgu", model, forget, val=splits.val, progress=False)
    assert "store_layer_stats: true" in str(caught.value)


def test_empty_forget_set_and_unknown_config_keys_are_errors(setup):
    splits, model, forget = setup
    with pytest.raises(MissingInputError, match="empty"):
        unlearn("gradient_ascent", model, take(forget, np.arange(0)), progress=False)
    with pytest.raises(ConfigError, match="learning_rate"):
        unlearn("gradient_ascent", model, forget, config={"learning_rate": 0.1}, progress=False)


def test_the_input_model_is_never_modified_and_config_is_complete(setup):
    splits, model, forget = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = unlearn("gradient_ascent", model, forget, config={"lr": 0.1, "epochs": 2}, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())
    assert result.config == {**get_method("gradient_ascent").defaults, "lr": 0.1, "epochs": 2}
    assert result.seconds > 0 and result.stopped_because


def test_cli_lists_methods_as_json_and_table():
    from forgetflow.cli.methods import register

    app = typer.Typer()
    register(app)

    @app.callback()
    def _root():  # keep `methods` a named sub-command
        pass

    runner = CliRunner()
    out = runner.invoke(app, ["methods", "--json"])
    assert out.exit_code == 0, out.output
    listing = json.loads(out.output)
    rows = {row["name"]: row for row in listing["methods"]}
    assert SEED_METHODS <= set(rows)
    assert all(rows[name]["measured"] for name in ("l2ul", "svd_projection", "pgu"))  # the seed papers state their measured limits
    ladders = {(row["kind"], row["goal"]): row for row in listing["ladders"]}
    assert ladders[("samples", "forget")]["rungs"] and ladders[("classes", "forget")]["source"] in ("shipped default", "params.yaml") or ladders[("classes", "forget")]["source"].startswith("calibration")
    assert rows["pgu"]["needs"] == ["forget", "val", "stats"] and rows["pgu"]["defaults"]["gamma"] is None and rows["pgu"]["defaults"]["class_stop_accuracy"] == 1.0
    table = runner.invoke(app, ["methods"])
    assert table.exit_code == 0 and "l2ul" in table.output and "pgu" in table.output


def test_a_broken_method_module_is_reported_not_fatal(monkeypatch):
    import pkgutil
    import warnings

    real = pkgutil.iter_modules

    def with_broken(path):
        yield from real(path)
        yield pkgutil.ModuleInfo(None, "broken_method", False)

    monkeypatch.setattr(pkgutil, "iter_modules", with_broken)
    monkeypatch.setattr(methods, "IMPORT_ERRORS", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods._import_all()
    assert "broken_method" in methods.IMPORT_ERRORS and any("broken_method" in str(w.message) for w in caught)
    assert SEED_METHODS <= {info.name for info in list_methods()}  # the others still load
    with pytest.raises(UnknownMethodError, match="failed to import"):
        get_method("broken-method")
