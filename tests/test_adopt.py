"""Any architecture, and a model trained outside forgetflow adopted as the first version: a
`torchvision:` model and a `MODULE:CALLABLE` one, trained here for a few steps with plain PyTorch,
adopted through the CLI (real DVC, real SQLite MLflow), unlearned with PGU and SVD projection, and
a deletion batch (real Prefect harness, real GX) that removes a person from all three splits."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import sys

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from forgetflow.errors import ConfigError, UnsupportedModelError
from forgetflow.models import ModelSpec, build_model
from forgetflow.settings import load_settings

from conftest import REPO_PARAMS, make_workspace
from test_own_data import invoke
from tinyimages import CLASSES, write_manifest

FACTORY = '''
from torch import nn


def make_net(in_channels, num_classes):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, num_classes),
    )


def not_a_model(in_channels, num_classes):
    return "model"
'''


# Architectures -----------------------------------------------------------------------------------
def test_torchvision_resnet18_on_small_images_is_the_resnet18_arch():
    small = build_model(ModelSpec(arch="torchvision:resnet18", in_channels=1, num_classes=10, image_size=28))
    own = build_model(ModelSpec(arch="resnet18", in_channels=1, num_classes=10, image_size=28))
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in own.state_dict().items()}
    assert small.net.conv1.kernel_size == (3, 3) and small.net.conv1.stride == (1, 1) and isinstance(small.net.maxpool, nn.Identity)
    large = build_model(ModelSpec(arch="torchvision:resnet18", in_channels=1, num_classes=10, image_size=96, image_width=80))
    assert large.net.conv1.in_channels == 1 and large.net.conv1.kernel_size == (7, 7) and isinstance(large.net.maxpool, nn.MaxPool2d)
    assert large(torch.zeros(2, 1, 96, 80)).shape == (2, 10)


def test_architecture_specs_are_checked_with_clear_errors(tmp_path):
    from forgetflow.architectures import check_fits
    from forgetflow.params import load_params

    ws = make_workspace(tmp_path / "ws", model={"arch": "torchvision:Res Net"})
    with pytest.raises(ConfigError, match="model.arch"):
        load_params(ws / "params.yaml")
    with pytest.raises(ConfigError, match="did you mean resnet18"):
        build_model(ModelSpec(arch="torchvision:resnet17", in_channels=3, num_classes=2, image_size=32))
    with pytest.raises(ConfigError, match="cannot take 12x12 images"):
        check_fits(build_model(ModelSpec(arch="torchvision:vgg11", in_channels=1, num_classes=2, image_size=12)), 1, (12, 12), 2)

    load_settings(ws)  # opens the workspace: its modules may name factories
    (ws / "factories_here.py").write_text(FACTORY)
    net = build_model(ModelSpec(arch="factories_here:make_net", in_channels=1, num_classes=3, image_size=12))
    assert net(torch.zeros(2, 1, 12, 12)).shape == (2, 3)
    with pytest.raises(ConfigError, match="returned str, not a torch.nn.Module"):
        build_model(ModelSpec(arch="factories_here:not_a_model", in_channels=1, num_classes=3, image_size=12))
    with pytest.raises(ConfigError, match="outside the workspace"):  # a spec never calls code from elsewhere
        build_model(ModelSpec(arch="shutil:rmtree", in_channels=1, num_classes=3, image_size=12))
    with pytest.raises(ConfigError, match="no module 'nowhere_to_be_found'"):
        build_model(ModelSpec(arch="nowhere_to_be_found:make", in_channels=1, num_classes=3, image_size=12))


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.attention = nn.MultiheadAttention(4, 1, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        tokens = self.conv(x).flatten(2).transpose(1, 2)
        return self.head(self.attention(tokens, tokens, tokens)[0].mean(1))


class _Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.head, self.spare = nn.Conv2d(1, 4, 3), nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize("model, named", [
    (lambda: build_model(ModelSpec(arch="torchvision:mobilenet_v3_small", in_channels=1, num_classes=3, image_size=12)), "Conv2d with groups=16"),
    (_Attention, "attention (MultiheadAttention, holding parameters in_proj_weight"),
    (_Unused, "spare (Linear never called in the forward pass)"),
])
def test_layer_statistics_and_svd_activations_refuse_what_they_cannot_handle(model, named):
    from forgetflow.layer_stats import compute_layer_stats, layer_stats_if_supported
    from forgetflow.methods.svd_projection import Projector

    net = model()
    images = np.full((4, 12, 12, 1), 7, np.uint8)
    with pytest.raises(UnsupportedModelError, match="PGU's layer statistics cannot handle layer") as caught:
        compute_layer_stats(net, images)
    assert named in caught.value.message
    assert layer_stats_if_supported(net, images) == (None, caught.value.message)
    with pytest.raises(UnsupportedModelError, match="SVD projection cannot handle layer") as caught:
        Projector(net, torch.zeros(4, 1, 12, 12), torch.zeros(2, 1, 12, 12))
    assert named in caught.value.message


# Adoption ------------------------------------------------------------------------------------------
def test_weights_files_of_every_usual_shape_load_strictly(tmp_path):
    """A forgetflow checkpoint, a whole classifier's state_dict, a DataParallel one, a nested one."""
    from forgetflow.adopt import build_adopted, read_weights
    from forgetflow.models import save_checkpoint

    spec = ModelSpec(arch="small_cnn", in_channels=1, num_classes=3, image_size=12, width=4, mean=[0.3], std=[0.2])
    torch.manual_seed(0)
    original = build_model(spec).eval()
    x = torch.rand(4, 1, 12, 12)
    files = {
        "checkpoint.pt": None,
        "whole.pt": original.state_dict(),
        "parallel.pt": {f"module.{k}": v for k, v in original.net.state_dict().items()},
        "nested.pt": {"epoch": 3, "state_dict": original.net.state_dict()},
    }
    save_checkpoint(original, tmp_path / "checkpoint.pt")
    for name, payload in files.items():
        if payload is not None:
            torch.save(payload, tmp_path / name)
        state, saved = read_weights(tmp_path / name)
        stats = {"mean": None, "std": None} if name in ("checkpoint.pt", "whole.pt") else {"mean": "0.3", "std": "0.2"}
        fresh = ModelSpec(arch="small_cnn", in_channels=1, num_classes=3, image_size=12, width=4)
        model = build_adopted(tmp_path / name, state, saved, fresh, arch=None, dataset="d", **stats)
        with torch.no_grad():
            assert torch.allclose(model(x), original(x)), name
        assert model.spec.mean == pytest.approx([0.3]) and model.spec.std == pytest.approx([0.2])


def test_adoption_writes_model_arch_into_params_yaml_keeping_the_rest(tmp_path):
    from forgetflow.adopt import params_with_arch

    block = "# mine\nmodel:\n  # which one\n  arch: small_cnn   # note\n  width: 8\ntrain:\n  epochs: 2\n"
    flow = "model: {arch: small_cnn, width: 4}\ntrain: {epochs: 2}\n"
    (tmp_path / "a.yaml").write_text(block)
    (tmp_path / "b.yaml").write_text(flow)
    assert params_with_arch(tmp_path / "a.yaml", "torchvision:resnet18") == block.replace("arch: small_cnn", 'arch: "torchvision:resnet18"')
    assert yaml.safe_load(params_with_arch(tmp_path / "b.yaml", "m:f")) == {"model": {"arch": "m:f", "width": 4}, "train": {"epochs": 2}}
    assert params_with_arch(tmp_path / "a.yaml", "small_cnn") is None


def lenient_evaluation() -> dict:
    section = copy.deepcopy(REPO_PARAMS["evaluation"])
    for goal in section["gate"].values():
        for key in goal:
            goal[key] = 0.0 if key.startswith("min_") else 100.0
    return section


# Named splits: person-1 (images 3, 4, 5) has one image in each; a fifth of the others are test, a fifth val.
SPLITS = {3: "train", 4: "val", 5: "test", **{i: ("test", "val")[i % 5] for i in range(45) if i % 5 < 2 and i // 3 != 1}}
PGU = [{"method": "pgu", "config": {"epochs": 2}}]


def train_outside(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 15) -> nn.Module:
    """Plain PyTorch, as a user's own script would: inputs in [0, 1], no normalisation."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def adopted(tmp_path_factory):
    """A manifest workspace with two models adopted through the CLI: squeezenet, then the workspace's
    own factory (`--force`, the champion)."""
    import torchvision
    from PIL import Image

    from forgetflow.data.importer import import_dataset
    from forgetflow.params import load_params

    root = tmp_path_factory.mktemp("adopt")
    ws = make_workspace(
        root / "ws", evaluation=lenient_evaluation(), validation={"max_forget_fraction": 0.5},
        unlearning={"methods": {"samples": {"forget": PGU}, "subjects": {"forget": PGU}}, "retain_sample_size": 50},
    )
    csv = write_manifest(root / "src", n=45, splits=SPLITS)
    settings = load_settings(ws)
    import_dataset(settings, load_params(settings.params_path), "manifest", str(csv))
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(root / "src" / r[0]), dtype=np.float32) / 255.0) for r in rows])[:, None]
    y = torch.tensor([CLASSES.index(r[1]) for r in rows])

    squeeze = torchvision.models.squeezenet1_1(num_classes=3)  # the README's small-image stem, by hand
    squeeze.features[0] = nn.Conv2d(1, 64, 3, 1, 1)
    squeeze.features[2] = nn.Identity()
    torch.save(train_outside(squeeze, x, y, steps=3).state_dict(), root / "squeeze.pt")
    (ws / "mymodels.py").write_text(FACTORY)
    spec = importlib.util.spec_from_file_location("user_factories", ws / "mymodels.py")
    factories = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(factories)
    own = train_outside(factories.make_net(1, 3), x, y)
    torch.save({"epoch": 15, "model_state_dict": own.state_dict()}, root / "own.pt")  # a training script's checkpoint

    first = invoke("adopt", str(root / "squeeze.pt"), "--arch", "torchvision:squeezenet1_1", "--mean", "0", "--std", "1", "-w", str(ws))
    refused = invoke("adopt", str(root / "own.pt"), "--arch", "mymodels:make_net", "-w", str(ws))
    misfit = invoke("adopt", str(root / "own.pt"), "--arch", "torchvision:squeezenet1_1", "--force", "-w", str(ws))
    second = invoke("adopt", str(root / "own.pt"), "--arch", "mymodels:make_net", "--mean", "0", "--std", "1", "--force", "-w", str(ws))
    return {"settings": settings, "root": root, "x": x, "y": y, "own": own, "squeeze": squeeze, "runs": (first, refused, misfit, second)}


def _version(settings, version):
    from mlflow import MlflowClient

    from forgetflow.tracking import configure

    configure(settings)
    client = MlflowClient()
    mv = client.get_model_version(settings.registered_model_name, version)
    return mv, client.get_run(mv.run_id)


def _accuracy(net, x, y, rows) -> float:
    with torch.no_grad():
        return float((net(x[rows]).argmax(1) == y[rows]).float().mean() * 100)


def test_adoption_registers_the_first_version_with_its_lineage(adopted):
    from forgetflow.data.importer import dvc_workspace
    from forgetflow.data.store import DatasetVersion

    settings, root = adopted["settings"], adopted["root"]
    first, refused, misfit, second = adopted["runs"]
    assert first[0] == 0 and "v1" in first[1] and "layer statistics (PGU): stored" in first[1], first[1]
    assert refused[0] == 2 and "already has a champion (version 1)" in refused[1] and "--force" in refused[1]
    assert misfit[0] == 2 and "do not fit torchvision:squeezenet1_1" in misfit[1] and "missing" in misfit[1]
    assert second[0] == 0 and "v2" in second[1], second[1]

    md5 = dvc_workspace(settings).md5(settings.data_dir / "faces")
    mv, run = _version(settings, "1")
    tags = mv.tags
    assert tags["forgetflow.stage"] == "adopted" and tags["forgetflow.parent_version"] == "none"
    assert tags["forgetflow.checkpoint_sha256"] == hashlib.sha256((root / "squeeze.pt").read_bytes()).hexdigest()
    assert tags["forgetflow.data_md5"] == md5 and tags["forgetflow.recipe"].startswith("unknown")
    assert tags["forgetflow.arch"] == "torchvision:squeezenet1_1"
    # The registered model scores what the user's own model scores on the same images.
    manifest = DatasetVersion(settings.data_dir / "faces").manifest.sort_values("sample_id")
    for split in ("val", "test"):
        rows = torch.tensor(manifest.sample_id[manifest.split == split].to_numpy())  # sample ID = manifest row
        assert run.data.metrics[f"{split}_accuracy"] == pytest.approx(_accuracy(adopted["squeeze"], adopted["x"], adopted["y"], rows), abs=1e-4)
    mv2, _ = _version(settings, "2")
    assert mv2.aliases == ["champion"] and mv2.tags["forgetflow.arch"] == "mymodels:make_net"
    assert yaml.safe_load((settings.workspace / "params.yaml").read_text())["model"]["arch"] == "mymodels:make_net"


def test_a_version_loads_without_the_params_file(adopted, tmp_path):
    from forgetflow.models import load_checkpoint
    from forgetflow.tracking import download_checkpoint

    settings = adopted["settings"]
    params = settings.workspace / "params.yaml"
    saved = params.read_text()
    params.unlink()
    try:
        model, payload = load_checkpoint(download_checkpoint(settings, alias="champion", dst=tmp_path))
    finally:
        params.write_text(saved)
    assert payload["spec"]["arch"] == "mymodels:make_net" and payload["layer_stats"]["layers"]
    x = adopted["x"][:8]
    with torch.no_grad():
        assert torch.allclose(model(x), adopted["own"](x), atol=1e-5)


def _champion(adopted, tmp_path):
    from forgetflow.data.store import DatasetVersion
    from forgetflow.models import load_checkpoint
    from forgetflow.tracking import download_checkpoint

    settings = adopted["settings"]
    model, payload = load_checkpoint(download_checkpoint(settings, alias="champion", dst=tmp_path))
    version = DatasetVersion(settings.data_dir / "faces")
    return model, payload, {split: version.load(split) for split in ("train", "val")}


def test_pgu_and_svd_projection_run_on_the_adopted_model(adopted, tmp_path):
    from forgetflow.layer_stats import projectable_layers
    from forgetflow.methods import unlearn

    model, payload, splits = _champion(adopted, tmp_path)
    train, val = splits["train"], splits["val"]
    forget = train.__class__(*(a[train.labels == 0] for a in (train.images, train.labels, train.sample_ids)))
    layers = sorted(projectable_layers(model))
    pgu = unlearn("pgu", model, forget, val=val, stats=payload["layer_stats"], config={"epochs": 2}, kind="classes", progress=False)
    assert pgu.extra["projected_layers"] == layers and len(pgu.log) >= 2  # epoch 0 measures, then steps
    svd = unlearn("svd_projection", model, forget, retain=train, val=val, config={"select_alpha": False}, kind="classes", progress=False)
    for result in (pgu, svd):
        changed = [name for name in layers if not torch.equal(dict(result.model.named_modules())[name].weight, dict(model.named_modules())[name].weight)]
        assert changed, result.stopped_because


@pytest.mark.flow
def test_a_subject_is_deleted_from_every_split_and_the_rest_stays_bit_for_bit(adopted, prefect_harness):
    from flows.deletion import process_deletions
    from forgetflow.data.store import DatasetVersion
    from forgetflow.deletion.promotion import summary_markdown
    from forgetflow.requests.intake import submit

    settings = adopted["settings"]
    before = DatasetVersion(settings.data_dir / "faces")
    person = before.manifest[before.manifest.subject_id == "person-1"]
    assert sorted(person.split) == ["test", "train", "val"]
    other_test = int(before.manifest[(before.manifest.split == "test") & (before.manifest.subject_id != "person-1")].sample_id.iloc[0])
    base = {"reason": "GDPR Art. 17", "requested_by": "dpo@example.org"}
    submit(settings, {**base, "kind": "subjects", "ids": ["person-1"]}, announce="none")
    submit(settings, {**base, "kind": "samples", "ids": [other_test]}, announce="none")  # a test sample: deleted where it is
    kept_ids = before.manifest[~before.manifest.sample_id.isin([*person.sample_id, other_test])].sample_id.to_numpy()
    kept_before = before.load(sample_ids=kept_ids)

    [batch] = process_deletions(workspace=str(settings.workspace), progress=False)

    after = DatasetVersion(settings.data_dir / "faces")
    assert "person-1" not in set(after.manifest.subject_id) and other_test not in set(after.manifest.sample_id)
    columns = ["sample_id", "subject_id", "label", "split", "content_hash"]
    expected = before.manifest[before.manifest.sample_id.isin(kept_ids)][columns].reset_index(drop=True)
    assert after.manifest[columns].reset_index(drop=True).equals(expected)
    kept_after = after.load(sample_ids=kept_ids)
    assert np.array_equal(kept_after.images, kept_before.images) and np.array_equal(kept_after.labels, kept_before.labels)

    [group] = batch["methods"]
    assert group["method"] == "pgu" and group["n_forget_train"] == 1  # only the train image was trained on
    n = before.split_counts()
    assert batch["gate"]["splits_changed"] == {"test": {"before": n["test"], "removed": 2}, "val": {"before": n["val"], "removed": 1}}
    assert f"| test split | changed by this batch: 2 of {n['test']} test samples deleted" in summary_markdown(batch)
    mv, run = _version(settings, batch["registered"]["candidate"]["version"])
    assert mv.tags["forgetflow.test_split_changed"] == "True" and "test_accuracy" in run.data.metrics
    report = next((settings.workspace / "reports" / "batches" / batch["batch_id"]).glob("group-*/report.md")).read_text()
    assert "test split: changed by this batch" in report


def test_data_import_and_adopt_keep_the_cli_fast():
    """The new commands import nothing heavy at CLI start-up."""
    import subprocess

    code = "import sys, forgetflow.cli; print([m for m in ('torch', 'mlflow', 'dvc', 'torchvision', 'PIL') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
