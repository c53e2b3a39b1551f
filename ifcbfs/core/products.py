"""Product file names beside a bin (SPEC sections 9 and 12): what a file is, and its shown name.

Processing pipelines write per-bin products into trees of their own; a product is known by its
file name alone, so a tree can be indexed without opening a file. The manual annotation files
of section 12 are named by the bin id alone:

- ifcb-analysis `{bin}.mat` (`classlist`, `class2use_manual`), and
- ClassiPyR / iRfcb `{bin}.csv`: a header row with `file_name` and `class_name` (other columns,
  such as iRfcb's `class_name_auto` and `score`, are ignored), then one row per image with its
  file name `{bin}_{NNNNN}.png`; written by R's `write.csv`, so values may be quoted.
"""
from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from .ids import IdentifierError, parse_bin_id

FEATURES = "features"
MULTIBLOB = "multiblob"
CLASS_H5 = "class_h5"
CLASS_MAT = "class_mat"
BLOBS = "blobs"
MANUAL_MAT = "manual_mat"
MANUAL_CSV = "manual_csv"
CLASS_KINDS = frozenset({CLASS_H5, CLASS_MAT})
CLASS_SCORES_CSV = "class_scores.csv"
CLASSES_CSV = "classes.csv"
BLOBS_FOLDER = "blobs"
# `{bin}_class.h5` carries no version in its name: it is the dashboard's version 3 layout
UNVERSIONED_CLASS_H5 = 3

_NAME = re.compile(
    r"(?P<bin>.+?)(?:"
    r"_(?P<fea>fea|features)_v(?P<fv>\d+)\.csv"
    r"|_multiblob_v(?P<mv>\d+)\.csv"
    r"|_class(?:_v(?P<hv>\d+))?\.h5"
    r"|_class_v(?P<cv>\d+)\.mat"
    r"|_blobs_v(?P<bv>\d+)\.zip"
    r"|(?P<manual>\.mat|\.csv)"
    r")",
    re.ASCII,
)
_MAX_VERSION_DIGITS = 6


class ProductName(NamedTuple):
    """What a product file name says: its bin, kind (one of the constants above) and version.

    `version` is None for the manual annotation files, which have none."""

    bin_id: str
    kind: str
    version: int | None

    @property
    def shown(self) -> tuple[str, ...]:
        """The names this product is shown under in the bin folder (`blobs` is a folder)."""
        if self.kind in (FEATURES, MULTIBLOB):
            return (f"{self.kind}_v{self.version}.csv",)
        if self.kind in CLASS_KINDS:
            return (CLASS_SCORES_CSV, CLASSES_CSV)
        if self.kind == BLOBS:
            return (BLOBS_FOLDER,)
        return ()  # manual annotations appear only in the by-class view


def product_kind(filename: str) -> ProductName | None:
    """The product a file name names (SPEC section 9 table, and section 12 manual files), or None.

    The part before the suffix must be a valid bin id, so `notes.csv` or `x_class.h5` are not
    products. Versions are decimal digits (`v02` is version 2)."""
    m = _NAME.fullmatch(filename) if isinstance(filename, str) else None
    if not m:
        return None
    bin_id = m.group("bin")
    try:
        parse_bin_id(bin_id)
    except IdentifierError:
        return None
    if m.group("manual"):
        return ProductName(bin_id, MANUAL_MAT if m.group("manual") == ".mat" else MANUAL_CSV, None)
    for group, kind in (("fv", FEATURES), ("mv", MULTIBLOB), ("hv", CLASS_H5), ("cv", CLASS_MAT),
                        ("bv", BLOBS)):
        digits = m.group(group)
        if digits is not None:
            if len(digits) > _MAX_VERSION_DIGITS:
                return None
            return ProductName(bin_id, kind, int(digits))
    return ProductName(bin_id, CLASS_H5, UNVERSIONED_CLASS_H5)  # `{bin}_class.h5`


# --- labels as folder names ----------------------------------------------------------------
_NAME_MAX = 255  # bytes in one file name on Linux file systems
_ESCAPE = re.compile(r"[%/\x00-\x1f\x7f]")


def safe_label(label: str) -> str:
    """A class label as one folder name: exact for ordinary labels, and two labels never collide.

    The rule (percent-encoding, as in URLs, of only what a folder name cannot hold):
    `%` becomes `%25`, `/` becomes `%2F`, NUL and the other control characters (U+0000 to
    U+001F, U+007F) become `%XX`, and a leading `.` becomes `%2E` (so `.`, `..` and hidden
    names cannot occur). The empty label becomes `%` (no escaped label is a lone `%`). A name
    longer than 255 bytes in UTF-8 is cut to 246 bytes and ends in `~` and 8 hex digits of its
    SHA-256, which keeps long labels apart."""
    if not isinstance(label, str):
        raise TypeError(f"a label is a string, not {type(label).__name__}")
    name = _ESCAPE.sub(lambda m: f"%{ord(m.group()):02X}", label)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if not name:
        return "%"
    data = name.encode("utf-8", "surrogatepass")
    if len(data) > _NAME_MAX:
        digest = hashlib.sha256(data).hexdigest()[:8]
        name = data[:_NAME_MAX - 9].decode("utf-8", "ignore") + "~" + digest
    return name


# --- features ----------------------------------------------------------------------------
FEATURE_ROI_COLUMNS = ("roi_number", "roiNumber")


def features_problem(head: bytes) -> str | None:
    """Why a features CSV is not of the usual layout, in one line, or None when it is.

    `head` is the file's start (its first line is enough). Features are shown with their bytes
    unchanged either way; this only says what to log, for example for syke-pic files, whose ROI
    column is `roi`."""
    end = head.find(b"\n")
    first = head[:end if end >= 0 else len(head)].rstrip(b"\r").decode("utf-8-sig", "replace")
    if not first.strip():
        return "features file has no header row"
    column = first.split(",", 1)[0].strip().strip('"')
    if column not in FEATURE_ROI_COLUMNS:
        return f"features file's first column is {column[:40]!r}, not roi_number (shown unchanged)"
    return None
