"""Manual annotation files (SPEC section 12, the classifier `manual`) to {target: label}.

- ifcb-analysis `{bin}.mat`: `classlist` is a matrix with a row per ROI, column 1 its roi
  number and column 2 its manual class as a 1-based index into `class2use_manual` (NaN: not
  annotated). Later columns (the automatic class) are not manual and are not read.
- ClassiPyR / iRfcb `{bin}.csv`: columns `file_name` (`{bin}_{NNNNN}.png`) and `class_name`.
  As ClassiPyR does when it loads one, a trailing `_NNN` (three digits, iRfcb's numbered class
  folders) is taken off the class name. An empty class name or R's `NA` means not annotated.

Rows that cannot be used are left out, and the result says so in one line (`problem`).
"""
from __future__ import annotations

import csv
import io
import re
from typing import NamedTuple

from .errors import ProductError
from .ids import split_target_id, target_id
from .matlab import load_mat, require, strings

_CLASS_SUFFIX = re.compile(r"(.+)_\d{3}", re.ASCII | re.DOTALL)


class Annotations(NamedTuple):
    """Labels by target number, and the log line for the rows left out (None when none were)."""

    labels: dict[int, str]
    problem: str | None


def _summary(what: str, bad: list[str]) -> str | None:
    if not bad:
        return None
    shown = "; ".join(bad[:3]) + ("; ..." if len(bad) > 3 else "")
    return f"{what}: {len(bad)} rows left out ({shown})"


def read_manual_mat(data: bytes) -> Annotations:
    """Read an ifcb-analysis manual `.mat` file's bytes.

    Raises ProductError when it is not of that layout, ProductDependencyMissing without scipy."""
    what = "manual .mat"
    mat = load_mat(data, ("classlist", "class2use_manual"), what)
    np = require("numpy", what)
    if "classlist" not in mat or "class2use_manual" not in mat:
        raise ProductError(f"{what}: another layout (no classlist and class2use_manual)")
    names = strings(mat["class2use_manual"], what)
    classlist = np.asarray(mat["classlist"])
    if classlist.size == 0:
        return Annotations({}, None)
    if classlist.dtype.kind not in "iuf" or classlist.ndim != 2 or classlist.shape[1] < 2:
        raise ProductError(f"{what}: classlist is not a matrix of two or more columns of numbers")
    labels: dict[int, str] = {}
    bad: list[str] = []
    for roi, index in classlist[:, :2].astype(float).tolist():
        if index != index:  # NaN: not annotated
            continue
        if not (roi == roi and roi >= 1 and roi.is_integer()):
            bad.append(f"roi number {roi!r}")
        elif not (index.is_integer() and 1 <= index <= len(names)) or not names[int(index) - 1]:
            bad.append(f"roi {int(roi)}: class index {index:g} of {len(names)}")
        elif int(roi) in labels:
            bad.append(f"roi {int(roi)} repeated")
        else:
            labels[int(roi)] = names[int(index) - 1]
    return Annotations(labels, _summary(what, bad))


def read_manual_csv(data: bytes, bin_id: str) -> Annotations:
    """Read a ClassiPyR / iRfcb annotation CSV's bytes for the bin `bin_id`.

    Rows that name an image of another bin, or no image, are left out. Raises ProductError when
    the header has no `file_name` and `class_name` columns."""
    what = "manual .csv"
    text = data.decode("utf-8-sig", "replace")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise ProductError(f"{what}: not a CSV file ({err})") from None
    header = [h.strip() for h in rows[0]] if rows else []
    if "file_name" not in header or "class_name" not in header:
        raise ProductError(f"{what}: another layout (no file_name and class_name columns)")
    fi, ci = header.index("file_name"), header.index("class_name")
    labels: dict[int, str] = {}
    bad: list[str] = []
    for row in rows[1:]:
        if not any(field.strip() for field in row):
            continue
        if len(row) <= max(fi, ci):
            bad.append(f"short row {','.join(row)[:40]!r}")
            continue
        name, label = row[fi].strip(), row[ci]
        if label.strip() in ("", "NA"):
            continue
        stem = name[:-4] if name.endswith(".png") else name
        split = split_target_id(stem)
        if split is None or split[0] != bin_id or split[1] < 1 or target_id(bin_id, split[1]) != stem:
            bad.append(f"{name[:60]!r} is not an image of {bin_id}")
            continue
        target = split[1]
        if target in labels:
            bad.append(f"{name[:60]!r} repeated")
            continue
        numbered = _CLASS_SUFFIX.fullmatch(label)
        labels[target] = numbered.group(1) if numbered else label
    return Annotations(labels, _summary(what, bad))
