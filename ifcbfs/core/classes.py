"""Class score files (`_class.h5`, `_class_vN.h5`, `_class_vN.mat`) to `class_scores.csv` and
`classes.csv` (SPEC section 9), and the class each image is assigned (section 12).

Layouts read, as the IFCB dashboard and its library read them:
- HDF5 version 3 (`{bin}_class.h5`): datasets `output_scores` (ROIs x classes), `class_labels`,
  `roi_numbers`. iRfcb adds `class_name`, the class of each ROI after its thresholds.
- HDF5 version 2 (`{bin}_class_v2.h5`): dataset `scores` with the labels in its attribute
  `class_labels` (or a `class_labels` dataset), and `roi_numbers`.
- MATLAB (`{bin}_class_vN.mat`, ifcb-analysis): `TBscores` (ROIs x classes), `class2useTB`
  (labels, usually with a final `unclassified` that has no column), `roinum`, and optional
  `TBclass_above_threshold` (the class of each ROI after thresholds).

Scores keep the file's own float type, so each is written as the shortest decimal that reads
back to the same value of that type.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Container

from .errors import ProductError, one_line
from .ids import target_id
from .matlab import load_mat, require, strings, text
from .products import CLASS_H5, CLASS_MAT

UNCLASSIFIED = "unclassified"
MAX_CELLS = 1 << 26  # scores read at most: far above real files (10^4 ROIs x 10^3 classes)


@dataclass(frozen=True, eq=False)
class ClassScores:
    """One class file: labels, ROI numbers in file order, scores (ROIs x labels, the file's float
    type) and, where the file has them, each ROI's class after the file's thresholds."""

    labels: tuple[str, ...]
    roi_numbers: tuple[int, ...]
    scores: Any  # numpy array, shape (len(roi_numbers), len(labels))
    above_threshold: tuple[str, ...] | None


def read_class_file(data: bytes, kind: str) -> ClassScores:
    """Read a class file's bytes; `kind` is CLASS_H5 or CLASS_MAT (from `product_kind`).

    Raises ProductError (one line) for anything that is not a consistent class file of the
    layout, and ProductDependencyMissing when h5py or scipy is not installed."""
    if kind == CLASS_H5:
        return _read_h5(data)
    if kind == CLASS_MAT:
        return _read_mat(data)
    raise ValueError(f"{kind!r} is not a class file kind")


def _read_h5(data: bytes) -> ClassScores:
    h5py = require("h5py", "class scores .h5")
    what = "class scores .h5"
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except Exception:
        raise ProductError(f"{what}: not an HDF5 file, or truncated") from None
    try:
        with f:
            name = "output_scores" if "output_scores" in f else "scores" if "scores" in f else None
            if name is None or "roi_numbers" not in f:
                raise ProductError(f"{what}: no output_scores (or scores) and roi_numbers datasets")
            scores = _dataset(f, name, h5py, what)
            rois = _dataset(f, "roi_numbers", h5py, what)
            if "class_labels" in f:
                labels = _dataset(f, "class_labels", h5py, what)
            elif "class_labels" in f[name].attrs:
                labels = f[name].attrs["class_labels"]
            else:
                raise ProductError(f"{what}: no class_labels")
            above = _dataset(f, "class_name", h5py, what) if "class_name" in f else None
    except ProductError:
        raise
    except Exception as err:  # h5py raises OSError, KeyError, TypeError ... on damaged files
        raise ProductError(f"{what}: cannot be read ({type(err).__name__}: {one_line(err)})") from None
    labels = _labels(labels, "class_labels", what)
    if above is not None:
        above = _labels(above, "class_name", what)
    return _checked(labels, rois, scores, above, what)


def _dataset(f: Any, key: str, h5py: Any, what: str) -> Any:
    """The values of dataset `key`, refused when it is a group or absurdly large."""
    ds = f[key]
    if not isinstance(ds, h5py.Dataset) or ds.size is None or ds.size > MAX_CELLS:
        raise ProductError(f"{what}: {key} is not a dataset of a readable size")
    return ds[()]


def _labels(values: Any, key: str, what: str) -> list[str]:
    """HDF5 strings (variable or fixed length, bytes or text) as a list of labels."""
    np = require("numpy", what)
    arr = np.asarray(values)
    if arr.dtype.kind not in "OSU" or not all(isinstance(v, (bytes, str)) for v in arr.reshape(-1)):
        raise ProductError(f"{what}: {key} are not strings")
    return [text(v) for v in arr.reshape(-1)]


_MAT_VARIABLES = ("TBscores", "class2useTB", "roinum", "TBclass_above_threshold")


def _read_mat(data: bytes) -> ClassScores:
    what = "class scores .mat"
    mat = load_mat(data, _MAT_VARIABLES, what)
    missing = [k for k in _MAT_VARIABLES[:3] if k not in mat]
    if missing:
        raise ProductError(f"{what}: another layout (no {', '.join(missing)})")
    labels = strings(mat["class2useTB"], what)
    above = mat.get("TBclass_above_threshold")
    if above is not None:
        above = strings(above, what)
    return _checked(labels, mat["roinum"], mat["TBscores"], above, what)


def _checked(labels: list[str], rois: Any, scores: Any, above: list[str] | None, what: str) -> ClassScores:
    """The parts of a class file as a ClassScores, once they agree with each other."""
    np = require("numpy", what)
    rois = np.asarray(rois)
    scores = np.asarray(scores)
    if rois.dtype.kind not in "iuf" or rois.ndim > 2 or (rois.size and rois.ndim == 2 and 1 not in rois.shape):
        raise ProductError(f"{what}: roi numbers are not a list of numbers")
    rois = rois.reshape(-1)
    n = rois.size
    if scores.dtype.kind not in "fiu" or scores.ndim > 2:
        raise ProductError(f"{what}: scores are not a matrix of numbers ({scores.dtype}, {scores.ndim}-d)")
    if n == 0 and scores.size == 0:
        # MATLAB saves an empty matrix as 0 x 0: the labels say how many columns it has
        scores = scores.reshape(0, len(labels) - (labels[-1:] == [UNCLASSIFIED]))
    elif scores.ndim < 2:
        scores = scores.reshape(1, -1) if n == 1 else scores.reshape(-1, 1)
    if scores.shape[0] != n:
        raise ProductError(f"{what}: {scores.shape[0]} rows of scores for {n} roi numbers")
    columns = scores.shape[1]
    if len(labels) == columns + 1 and labels[-1] == UNCLASSIFIED:
        labels = labels[:-1]  # the final unclassified label has no score column
    if len(labels) != columns:
        raise ProductError(f"{what}: {len(labels)} class labels for {columns} score columns")
    if rois.dtype.kind == "f" and not (np.isfinite(rois).all() and (rois == np.round(rois)).all()):
        raise ProductError(f"{what}: roi numbers that are not whole numbers")
    if n and rois.min() < 1:
        raise ProductError(f"{what}: roi numbers below 1")
    if above is not None and len(above) != n:
        raise ProductError(f"{what}: {len(above)} thresholded classes for {n} roi numbers")
    if not scores.dtype.isnative:
        scores = scores.astype(scores.dtype.newbyteorder("="))
    scores.setflags(write=False)
    return ClassScores(tuple(labels), tuple(int(r) for r in rois), scores,
                       tuple(above) if above is not None else None)


# --- the generated CSVs --------------------------------------------------------------------
def _kept(cs: ClassScores, known_targets: Container[int]) -> list[int]:
    """Row indexes whose roi number is in the ADC, the first row of a repeated number only."""
    seen: set[int] = set()
    rows = []
    for i, roi in enumerate(cs.roi_numbers):
        if roi in known_targets and roi not in seen:
            rows.append(i)
        seen.add(roi)
    return rows


def roi_problem(bin_id: str, cs: ClassScores, known_targets: Container[int]) -> str | None:
    """The log line for the rows the CSVs leave out (roi numbers not in the ADC, or repeated), or None."""
    unknown = sorted({r for r in cs.roi_numbers if r not in known_targets})
    repeated = len(cs.roi_numbers) - len(set(cs.roi_numbers))
    if not unknown and not repeated:
        return None
    parts = []
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        parts.append(f"{len(unknown)} roi numbers not in the ADC ({shown})")
    if repeated:
        parts.append(f"{repeated} repeated roi numbers")
    return f"{bin_id} class scores: {' and '.join(parts)} left out"


def _number(value: Any) -> str:
    """A score as the shortest decimal that reads back to the same value of its own type."""
    return str(value)


def csv_field(value: str) -> str:
    """A CSV field: quoted (with doubled quotes) only when it holds a comma, quote or line break."""
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def class_scores_csv(bin_id: str, cs: ClassScores, known_targets: Container[int]) -> bytes:
    """`class_scores.csv`: `pid,` and the labels, then one row per ROI in file order.

    Rows whose roi number is not in `known_targets` (the ADC's target numbers), and repeats of
    a roi number, are left out: `roi_problem` gives the line to log for them."""
    lines = [",".join(["pid", *map(csv_field, cs.labels)])]
    fast = cs.scores.dtype.kind == "f" and cs.scores.dtype.itemsize == 8
    for i in _kept(cs, known_targets):
        row = cs.scores[i]
        values = map(repr, row.tolist()) if fast else map(_number, row)  # float64: repr is numpy's
        lines.append(target_id(bin_id, cs.roi_numbers[i]) + "," + ",".join(values))
    return ("\n".join(lines) + "\n").encode("utf-8")


def winners(cs: ClassScores) -> list[int | None]:
    """Each ROI's winning column: its highest score, the first on ties; NaN scores never win."""
    np = require("numpy", "class scores")
    s = cs.scores
    if s.shape[0] == 0 or s.shape[1] == 0:
        return [None] * s.shape[0]
    if s.dtype.kind != "f":
        return [int(j) for j in s.argmax(axis=1)]
    nan = np.isnan(s)
    best = np.where(nan, -np.inf, s).argmax(axis=1)
    out: list[int | None] = []
    for i, j in enumerate(best.tolist()):
        if nan[i, j]:  # every score is NaN or -inf, and a NaN came first
            valid = np.flatnonzero(~nan[i])
            out.append(int(valid[0]) if valid.size else None)
        else:
            out.append(j)
    return out


def classes_csv(bin_id: str, cs: ClassScores, known_targets: Container[int]) -> bytes:
    """`classes.csv`: `pid,class,score,class_above_threshold`, one row per ROI in file order.

    The winning class and its score (empty when all scores are NaN), and the file's own class
    after thresholds (empty when it has none). Rows are left out as in `class_scores_csv`."""
    lines = ["pid,class,score,class_above_threshold"]
    best = winners(cs)
    for i in _kept(cs, known_targets):
        j = best[i]
        label, score = ("", "") if j is None else (cs.labels[j], _number(cs.scores[i, j]))
        above = cs.above_threshold[i] if cs.above_threshold is not None else ""
        lines.append(",".join((target_id(bin_id, cs.roi_numbers[i]), csv_field(label), score, csv_field(above))))
    return ("\n".join(lines) + "\n").encode("utf-8")


def assigned_labels(cs: ClassScores, known_targets: Container[int]) -> dict[int, str]:
    """The class each image sits under in the by-class view: the file's class after thresholds
    where it has them, else the winning class. ROIs without a class, not in the ADC or repeated
    are left out."""
    best = winners(cs)
    out = {}
    for i in _kept(cs, known_targets):
        label = cs.above_threshold[i] if cs.above_threshold is not None else (
            cs.labels[best[i]] if best[i] is not None else "")
        if label:
            out[cs.roi_numbers[i]] = label
    return out
