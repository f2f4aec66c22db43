"""A user's own data with real subjects: a manifest CSV, or an image folder's `subjects.csv`.

Manifest columns (header row required; other columns are ignored):
    path        the image file, relative to the CSV's folder or absolute; any format PIL reads
    label       a class name, or a class index
    subject_id  the data subject (person) the image belongs to
    split       optional: train, val or test; empty -> assigned as for other sources
Classes: `classes.txt` next to the CSV (one name per line, in the model's output order) when
present, and every label must be one of its names or indices; otherwise integer labels are class
indices (classes "0".."max") and names are sorted (torchvision ImageFolder's order).

Every row is checked before anything is written, and every bad row is reported with its line
number (a missing or unreadable file, an unknown or empty label, an empty subject, a duplicate
path or a duplicate image, an unknown split). Sample IDs follow the row order, so re-importing the same manifest gives
the same IDs, and rows appended at the end leave the earlier IDs as they were.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgetflow.data.images import duplicates, read_image, stack_images
from forgetflow.errors import DataSourceError

REQUIRED_COLUMNS = ("path", "label", "subject_id")
SPLITS = ("train", "val", "test")
CLASSES_FILE = "classes.txt"
SUBJECTS_FILE = "subjects.csv"
SHOWN_PROBLEMS = 20
MAX_CLASSES = 100_000


@dataclass
class _Row:
    line: int
    path: Path
    label: str
    subject: str
    split: str


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, row) for every data row; the header must name the required columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in required if c not in columns]
            if missing:
                raise DataSourceError(
                    f"{path.name} has no column {', '.join(missing)} (its header: {', '.join(columns) or 'empty'})",
                    f"the first row must name the columns: {', '.join(required)}",
                )
            reader.fieldnames = columns
            rows = []
            for row in reader:
                rows.append((reader.line_num, {k: (v or "").strip() if isinstance(v, str) else "" for k, v in row.items() if k is not None}))
            return rows
    except UnicodeDecodeError as exc:
        raise DataSourceError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})", "save the CSV as UTF-8") from exc
    except csv.Error as exc:
        raise DataSourceError(f"{path} is not a readable CSV ({exc})", "check its quoting") from exc


def _raise_problems(what: Path, problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:SHOWN_PROBLEMS]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    raise DataSourceError(
        f"{what} has {len(problems)} bad row{'s' if len(problems) != 1 else ''}; nothing was imported:\n  " + "\n  ".join(shown) + more,
        "correct these rows and import again",
    )


def _classes(folder: Path, labels: list[str]) -> list[str]:
    listed = folder / CLASSES_FILE
    if listed.is_file():
        names = [line.strip() for line in listed.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates or not names:
            raise DataSourceError(f"{listed} {'names ' + ', '.join(duplicates) + ' twice' if duplicates else 'is empty'}", "list each class once, in the model's output order")
        return names
    given = [label for label in labels if label]
    if given and all(_is_index(label) for label in given):
        largest = max(int(label) for label in given)
        if largest >= MAX_CLASSES:
            raise DataSourceError(f"label {largest} is not a plausible class index (at most {MAX_CLASSES - 1})", f"use class names, or list the classes in {CLASSES_FILE} next to the manifest")
        return [str(i) for i in range(largest + 1)]
    return sorted(set(given))


def _is_index(label: str) -> bool:
    return re.fullmatch(r"[0-9]{1,9}", label) is not None


def _label_index(label: str, classes: list[str]) -> int | None:
    if label in classes:
        return classes.index(label)
    if _is_index(label) and int(label) < len(classes):
        return int(label)
    return None


def load_manifest(csv_path: str | Path, *, resize: tuple[int, int] | None = None):
    """Read and check a manifest; return a RawDataset with its subjects (and splits where given)."""
    from forgetflow.data.sources import RawDataset

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataSourceError(f"manifest {csv_path} not found", "pass the CSV file: forgetflow data import manifest FILE.csv")
    folder = csv_path.resolve().parent
    raw_rows = _read_csv(csv_path, REQUIRED_COLUMNS)
    if not raw_rows:
        raise DataSourceError(f"{csv_path} lists no images", "add one row per image: path,label,subject_id[,split]")
    classes = _classes(folder, [row["label"] for _, row in raw_rows])
    problems: list[str] = []
    rows: list[_Row] = []
    first_line: dict[Path, int] = {}
    for line, row in raw_rows:
        found = []
        path = Path(row["path"]) if row["path"] else None
        if path is None:
            found.append("path is empty")
        else:
            path = (folder / path).resolve() if not path.is_absolute() else path.resolve()
            if path in first_line:
                found.append(f"duplicate path {row['path']} (first on line {first_line[path]})")
            else:
                first_line[path] = line
                if not path.is_file():
                    found.append(f"file not found: {row['path']}")
        if not row["label"]:
            found.append("label is empty")
        elif _label_index(row["label"], classes) is None:
            found.append(f"unknown label {row['label']!r} (classes: {', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})")
        if not row["subject_id"]:
            found.append("subject_id is empty")
        split = row.get("split", "")
        if split and split not in SPLITS:
            found.append(f"split {split!r} is not train, val or test")
        if found:
            problems.append(f"line {line}: " + "; ".join(found))
        else:
            rows.append(_Row(line, path, row["label"], row["subject_id"], split))
    arrays = []
    for row in rows:  # read every image, also when other rows are bad: all problems in one report
        try:
            arrays.append(read_image(row.path, resize))
        except Exception as exc:  # PIL raises OSError, ValueError, DecompressionBombError, ...
            problems.append(f"line {row.line}: {row.path.name} is not an image PIL can read ({type(exc).__name__})")
    problems.sort(key=lambda text: int(text.split(":", 1)[0].removeprefix("line ")))
    _raise_problems(csv_path, problems)
    images, channels = stack_images(arrays, [f"line {row.line} ({row.path.name})" for row in rows], what=csv_path.name)
    _raise_problems(csv_path, [f"line {rows[j].line}: the same image as line {rows[i].line} (identical pixels: keep one row)" for i, j in duplicates(images)])
    splits = np.array([row.split for row in rows], dtype=object)
    return RawDataset(
        name=csv_path.stem,
        images=images,
        labels=np.array([_label_index(row.label, classes) for row in rows], dtype=np.int64),
        class_names=classes,
        official_split=None,
        description={"source": "manifest", "manifest": csv_path.name, "channels": channels, "resize": list(resize) if resize else None},
        subjects=np.array([row.subject for row in rows], dtype=object),
        given_split=splits if splits.astype(bool).any() else None,
    )


def load_subjects_csv(folder: Path, relpaths: list[str]) -> np.ndarray | None:
    """The subject of every image of an image folder from `DIR/subjects.csv` (path,subject_id;
    paths relative to DIR, e.g. cat/001.png), or None when there is no such file."""
    listing = folder / SUBJECTS_FILE
    if not listing.is_file():
        return None
    known = {Path(p).as_posix(): i for i, p in enumerate(relpaths)}
    subjects: list[str | None] = [None] * len(relpaths)
    first_line: dict[str, int] = {}
    problems = []
    for line, row in _read_csv(listing, ("path", "subject_id")):
        found = []
        key = Path(row["path"]).as_posix() if row["path"] else ""
        if not key:
            found.append("path is empty")
        elif key in first_line:
            found.append(f"duplicate path {row['path']} (first on line {first_line[key]})")
        elif key not in known:
            found.append(f"{row['path']} is not an image of {folder.name}/<class>/")
        if not row["subject_id"]:
            found.append("subject_id is empty")
        if key and key not in first_line:
            first_line[key] = line
        if found:
            problems.append(f"line {line}: " + "; ".join(found))
        else:
            subjects[known[key]] = row["subject_id"]
    missing = [p for p, s in zip(relpaths, subjects) if s is None and Path(p).as_posix() not in first_line]
    if missing:
        problems.append(f"{len(missing)} image(s) have no row: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
    _raise_problems(listing, problems)
    return np.array(subjects, dtype=object)
