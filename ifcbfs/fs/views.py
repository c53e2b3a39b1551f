"""Archive-wide views at the root of the tree (SPEC section 12), made from the catalog.

- `by-class/{classifier}/{label}/{YYYY}/{bin}_{NNNNN}.png` (`-o classes`): relative symbolic
  links to the images in the main tree, listed from the catalog's class members.
- `bins.csv` (`-o bins_csv`): one row per bin of the mount, shown once the tree has been
  walked, so its size is exact when it is listed.

A view answers four questions (`View`); the namespace makes its nodes. Nothing here reads a class
file or a bin.
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

from ..catalog import Catalog
from ..core.classes import csv_field
from ..core.ids import target_id

BY_CLASS = "by-class"
BINS_CSV = "bins.csv"
BINS_COLUMNS = ("pid", "sample_time", "instrument", "ml_analyzed", "n_images", "concentration",
                "latitude", "longitude", "depth", "path")
BINS_HEADER = (",".join(BINS_COLUMNS) + "\n").encode()
# header keys (matched without case) that give the position columns, first found wins
POSITION_KEYS = {"latitude": ("latitude", "gpslatitude", "lat"), "longitude": ("longitude", "gpslongitude", "lon"),
                 "depth": ("depth", "sampledepth")}


class ViewItem(NamedTuple):
    """One entry of a view folder: a folder ("dir"), a file ("file") or a symbolic link ("link")."""

    name: str
    kind: str
    size: int = 0
    mtime_ns: int = 0
    target: str = ""


class View:
    """A view: what it shows at the root, a stamp that changes when any of its folders does,
    the items of a folder (by its path inside the view, '' for its top), and a file's bytes."""

    name = ""

    def top(self) -> ViewItem | None:
        raise NotImplementedError

    def stamp(self) -> int:
        raise NotImplementedError

    def items(self, path: str) -> list[ViewItem]:
        return []

    def read(self, path: str) -> bytes:
        raise IsADirectoryError(path)


class ByClass(View):
    """by-class/: classifiers, then labels, then years, then links to the images."""

    name = BY_CLASS

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def top(self) -> ViewItem:
        return ViewItem(BY_CLASS, "dir", 0, self.catalog.class_mtime())

    def stamp(self) -> int:
        return self.catalog.class_version

    def items(self, path: str) -> list[ViewItem]:
        parts = path.split("/") if path else []
        if len(parts) < 3:
            return [ViewItem(name, "dir", 0, mtime) for name, mtime in self.catalog.class_folders(parts)]
        if len(parts) > 3 or not parts[2].isdigit():
            return []
        up = "../" * (len(parts) + 1)  # from by-class/{classifier}/{label}/{YYYY} to the root
        out = []
        for bin_id, bin_path, mtime, targets in self.catalog.class_members(parts[0], parts[1], int(parts[2])):
            for target in targets:
                name = f"{target_id(bin_id, target)}.png"  # the image's name in its bin folder
                link = f"{up}{bin_path}/{name}"
                out.append(ViewItem(name, "link", len(os.fsencode(link)), mtime, link))
        return out


class BinsCsv(View):
    """bins.csv: the catalog's rows under a header, once the whole tree has been walked."""

    name = BINS_CSV

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def top(self) -> ViewItem | None:
        if not self.catalog.covered:
            return None
        size, mtime = self.catalog.rows_size()
        return ViewItem(BINS_CSV, "file", len(BINS_HEADER) + size, mtime)

    def stamp(self) -> int:
        return self.catalog.rows_version

    def read(self, path: str) -> bytes:
        return BINS_HEADER + b"".join(self.catalog.rows())


def bins_row(hdr_json: bytes, path: str) -> bytes:
    """A bin's row of bins.csv, from its hdr.json: numbers as written there, missing ones empty."""
    doc = json.loads(hdr_json)
    header = {str(k).lower(): v for k, v in doc.get("header", {}).items()}
    position = [next((header[k] for k in keys if k in header), None) for keys in POSITION_KEYS.values()]
    values = [doc["bin_id"], doc["timestamp"], doc["instrument"], doc.get("ml_analyzed"), doc.get("n_images"),
              doc.get("concentration"), *position, path]
    return (",".join(_field(v) for v in values) + "\n").encode("utf-8", "surrogateescape")


def _field(value) -> str:
    if value is None:
        return ""
    return csv_field(repr(value) if isinstance(value, float) else str(value))
