"""Your own data: manifests and image folders with real subject IDs, channels as stored, stable
sample IDs, every bad row named before anything is written, and the workspace's default dataset.
Real PNG files, real DVC repositories; no MLflow or Prefect."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forgetflow.data.importer import import_dataset
from forgetflow.data.sources import load_source
from forgetflow.data.store import DatasetVersion
from forgetflow.errors import DataSourceError
from forgetflow.params import load_params
from forgetflow.settings import load_settings

from conftest import FAST_PARAMS, make_workspace
from test_cli import invoke
from tinyimages import CLASSES, image, read_rows, write_manifest, write_rows



def _import(ws, csv, **kwargs):
    settings = load_settings(ws)
    return settings, import_dataset(settings, load_params(settings.params_path), "manifest", str(csv), **kwargs)


def test_grayscale_manifest_keeps_one_channel_and_real_subjects(tmp_path):
    csv = write_manifest(tmp_path / "src")
    settings, info = _import(make_workspace(tmp_path / "ws"), csv)
    version = DatasetVersion(settings.data_dir / "faces")
    assert info.name == "faces" and version.image_shape == (12, 12, 1) and version.class_names == list(CLASSES)
    rows = version.manifest.sort_values("sample_id")
    assert rows.sample_id.tolist() == list(range(36))  # row order
    assert rows.subject_id.tolist() == [f"person-{i // 3}" for i in range(36)]
    assert rows.label.tolist() == [i % 3 for i in range(36)]
    stored = version.load(sample_ids=[7]).images[0]
    assert np.array_equal(stored[..., 0], image(7, 1, rgb=False))  # the file's pixels, bit for bit
    assert version.meta["source"]["subjects"].startswith("given by the source")

    # Subjects reach the ledger only as salted pseudonyms, as synthetic ones do.
    from forgetflow.requests.intake import submit

    submit(settings, {"kind": "subjects", "ids": ["person-4"], "reason": "test", "requested_by": "pytest"}, announce="none")
    ledger = (settings.workspace / "data" / "requests" / "ledger.jsonl").read_text()
    assert "person-4" not in ledger and "hmac-sha256:" in ledger


def test_mixed_grayscale_and_rgb_manifest_is_stored_as_rgb(tmp_path):
    raw = load_source("manifest", write_manifest(tmp_path / "src", rgb_every=4))
    assert raw.images.shape == (36, 12, 12, 3)
    assert np.array_equal(raw.images[0], image(0, 0, rgb=True))
    gray = raw.images[1]
    assert all(np.array_equal(gray[..., c], image(1, 1, rgb=False)) for c in range(3))  # repeated, lossless
    assert raw.description["channels"].startswith("RGB")


def test_imagefolder_keeps_grayscale_and_reads_subjects_csv(tmp_path):
    """The importer used torchvision's loader, which converts every file to RGB."""
    from PIL import Image

    folder = tmp_path / "pets"
    rows = []
    for label, name in enumerate(("cat", "dog")):
        (folder / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(image(10 * label + i, label, rgb=False), "L").save(folder / name / f"{i}.png")
            rows.append({"path": f"{name}/{i}.png", "subject_id": f"owner-{i % 2}"})
    raw = load_source("imagefolder", folder)
    assert raw.images.shape == (10, 12, 12, 1) and raw.subjects is None
    write_rows(folder / "subjects.csv", rows[::-1])  # any row order
    raw = load_source("imagefolder", folder)
    assert raw.images.shape == (10, 12, 12, 1) and raw.subjects.tolist() == [f"owner-{i % 2}" for i in range(5)] * 2

    bad = rows[1:] + [{"path": "cat/1.png", "subject_id": "x"}, {"path": "cat/9.png", "subject_id": "y"}, {"path": "dog/0.png", "subject_id": ""}]
    write_rows(folder / "subjects.csv", [r for r in bad if r["path"] != "dog/0.png" or not r["subject_id"]])
    with pytest.raises(DataSourceError) as caught:
        load_source("imagefolder", folder)
    message = caught.value.message
    assert "line 10: duplicate path cat/1.png (first on line 2)" in message
    assert "line 11: cat/9.png is not an image" in message and "line 12: subject_id is empty" in message
    assert "1 image(s) have no row: cat/0.png" in message


def test_sample_ids_are_stable_across_reimports_of_the_same_manifest(tmp_path):
    csv = write_manifest(tmp_path / "src")
    settings, first = _import(make_workspace(tmp_path / "ws"), csv)
    before = DatasetVersion(settings.data_dir / "faces").manifest.copy()
    _, again = _import(settings.workspace, csv)
    assert again.md5 == first.md5
    assert DatasetVersion(settings.data_dir / "faces").manifest.equals(before)
    # Rows appended at the end: the earlier samples keep their IDs and content.
    write_manifest(tmp_path / "src", n=39)
    _, grown = _import(settings.workspace, csv)
    after = DatasetVersion(settings.data_dir / "faces").manifest.set_index("sample_id")
    assert grown.n_samples == 39
    assert after.loc[before.sample_id, "content_hash"].tolist() == before.content_hash.tolist()


def test_named_splits_are_kept_and_the_rest_assigned(tmp_path):
    named = {0: "test", 3: "test", 1: "val", 2: "train"}
    settings, info = _import(make_workspace(tmp_path / "ws"), write_manifest(tmp_path / "src", splits=named))
    split = DatasetVersion(settings.data_dir / "faces").manifest.set_index("sample_id")["split"]
    assert all(split[i] == s for i, s in named.items())
    # A test and a val row are named: the empty rows are all train (nothing more is drawn).
    assert info.splits == {"test": 2, "train": 33, "val": 1}


BAD_ROWS = {
    "missing file": ({"path": "imgs/none.png", "label": "cat", "subject_id": "p"}, "line 38: file not found: imgs/none.png"),
    "unknown label": ({"path": "imgs/extra.png", "label": "horse", "subject_id": "p"}, "line 38: unknown label 'horse' (classes: cat, dog, owl)"),
    "empty subject": ({"path": "imgs/extra.png", "label": "dog", "subject_id": ""}, "line 38: subject_id is empty"),
    "duplicate path": ({"path": "imgs/004.png", "label": "dog", "subject_id": "p"}, "line 38: duplicate path imgs/004.png (first on line 6)"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_named_by_its_line_and_nothing_is_written(tmp_path, case):
    from PIL import Image

    src = tmp_path / "src"
    csv = write_manifest(src)
    Image.fromarray(image(99, 0, rgb=False), "L").save(src / "imgs" / "extra.png")
    (src / "classes.txt").write_text("cat\ndog\nowl\n")  # labels must be these names (or their indices)
    row, expected = BAD_ROWS[case]
    write_rows(csv, read_rows(csv) + [row])
    ws = tmp_path / "ws"
    code, out = invoke("data", "import", "manifest", str(csv), "-w", str(ws))
    assert code == 2 and expected in out and "1 bad row" in out and "nothing was imported" in out
    assert not ws.exists() or list(ws.iterdir()) == []  # no params.yaml, no data/, no .dvc


def test_every_bad_row_is_reported_at_once(tmp_path):
    src = tmp_path / "src"
    csv = write_manifest(src)
    (src / "classes.txt").write_text("cat\ndog\nowl\n")
    (src / "imgs" / "junk.png").write_text("not an image")
    rows = read_rows(csv)
    rows[2]["subject_id"] = ""
    rows[5]["label"] = "7"  # an index outside the three classes
    rows += [dict(rows[0]), {"path": "imgs/gone.png", "label": "1", "subject_id": "q"}, {"path": "imgs/junk.png", "label": "owl", "subject_id": "q"}]
    write_rows(csv, rows)
    with pytest.raises(DataSourceError) as caught:
        load_source("manifest", csv)
    lines = [line.split(":", 1)[0].strip() for line in caught.value.message.splitlines()[1:]]
    assert lines == ["line 4", "line 7", "line 38", "line 39", "line 40"]
    assert "junk.png is not an image PIL can read" in caught.value.message


def test_two_rows_with_the_same_pixels_are_refused(tmp_path):
    """Erasure finds a forgotten image by its SHA-256: a copy under another sample would be hit too."""
    import shutil

    csv = write_manifest(tmp_path / "src")
    shutil.copy(tmp_path / "src" / "imgs" / "000.png", tmp_path / "src" / "imgs" / "copy.png")
    write_rows(csv, read_rows(csv) + [{"path": "imgs/copy.png", "label": "cat", "subject_id": "someone"}])
    with pytest.raises(DataSourceError, match=r"line 38: the same image as line 2"):
        load_source("manifest", csv)


def test_different_sizes_are_an_error_unless_data_resize_asks(tmp_path):
    from PIL import Image

    csv = write_manifest(tmp_path / "src")
    Image.fromarray(np.zeros((10, 14), np.uint8), "L").save(tmp_path / "src" / "imgs" / "005.png")
    ws = make_workspace(tmp_path / "ws")
    code, out = invoke("data", "import", "manifest", str(csv), "-w", str(ws))
    assert code == 2 and "different shapes" in out and "line 7 (005.png) is 10x14" in out and "data.resize" in out
    assert not (ws / "data").exists()
    make_workspace(ws, data={**FAST_PARAMS["data"], "resize": [12, 12]})
    settings, info = _import(ws, csv)
    assert info.image_shape == [12, 12, 1] and DatasetVersion(settings.data_dir / "faces").meta["source"]["resize"] == [12, 12]


def test_the_default_dataset_is_the_only_one_and_several_are_listed(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    csv = write_manifest(tmp_path / "src")
    assert invoke("data", "import", "manifest", str(csv), "-w", str(ws))[0] == 0
    code, out = invoke("data", "show", "-w", str(ws))
    assert code == 0 and "faces" in out and "cat, dog, owl" in out
    assert invoke("data", "import", "manifest", str(csv), "--name", "faces-copy", "-w", str(ws))[0] == 0
    code, out = invoke("data", "verify", "-w", str(ws))
    assert code == 2 and "several datasets: faces, faces-copy" in out
    assert invoke("data", "verify", "faces-copy", "-w", str(ws))[0] == 0


def test_a_reimport_cannot_bring_back_erased_images(tmp_path):
    csv = write_manifest(tmp_path / "src")
    settings, _ = _import(make_workspace(tmp_path / "ws"), csv)
    erased = DatasetVersion(settings.data_dir / "faces").manifest.set_index("sample_id").loc[5, "content_hash"]
    tombstone = settings.state_dir / "erasure" / "batch-test.json"
    tombstone.parent.mkdir(parents=True)
    tombstone.write_text(json.dumps({"batch_id": "batch-test", "dataset": "faces", "content_hashes": {"r1": [erased]}}))
    with pytest.raises(DataSourceError, match="1 of the images to import were erased"):
        _import(settings.workspace, csv)
