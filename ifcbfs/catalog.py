"""The catalog: what archive-wide questions need, kept in SQLite beside the index's bin records.

- **Product files** (SPEC section 9): every file of the product trees that `core.products` names,
  with its bin, kind, version and identity, and each product folder's stamp and sub-folders, so a
  bin's products are one query (`find`) and a tree is re-checked folder by folder.
- **The tree's bins**: each bin's path in the tree, its raw files' identity, and its `bins.csv` row.
- **Class members** (SPEC section 12): per classifier and bin, the targets under each label, so a
  `by-class` folder lists from here without reading a class file.

It lives in the index file (the index drops its tables when the options change) or, without an
index, in memory. One connection, one lock: each call is a short query or one transaction.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from array import array
from typing import Iterable, Iterator, NamedTuple

from .core.products import ProductName
from .index import transaction
from .core.source import ProductFile, ProductFinder, Source, SourceFile

log = logging.getLogger("ifcbfs")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS product_folders (root TEXT, folder BLOB, stamp INTEGER, subfolders BLOB,
    PRIMARY KEY (root, folder));
CREATE TABLE IF NOT EXISTS product_files (root TEXT, folder BLOB, name BLOB, bin TEXT, kind TEXT, version INTEGER,
    path BLOB, size INTEGER, mtime INTEGER, ident, PRIMARY KEY (root, folder, name));
CREATE INDEX IF NOT EXISTS product_files_bin ON product_files (bin);
CREATE TABLE IF NOT EXISTS tree_folders (folder BLOB PRIMARY KEY, stamp INTEGER, subfolders BLOB);
CREATE TABLE IF NOT EXISTS tree_bins (path BLOB PRIMARY KEY, bin TEXT, folder BLOB, ident TEXT, mtime INTEGER,
    row BLOB);
CREATE INDEX IF NOT EXISTS tree_bins_bin ON tree_bins (bin);
CREATE INDEX IF NOT EXISTS tree_bins_folder ON tree_bins (folder);
CREATE TABLE IF NOT EXISTS class_sources (classifier TEXT, bin TEXT, ident TEXT, path BLOB,
    PRIMARY KEY (classifier, bin));
CREATE INDEX IF NOT EXISTS class_sources_path ON class_sources (path);
CREATE TABLE IF NOT EXISTS class_members (classifier TEXT, label TEXT, year INTEGER, bin TEXT, path BLOB,
    mtime INTEGER, targets BLOB, PRIMARY KEY (classifier, label, year, bin));
CREATE INDEX IF NOT EXISTS class_members_bin ON class_members (classifier, bin);
"""
_CHUNK = 500  # bin ids per query (SQLite allows 999 parameters)


class ProductRoot(NamedTuple):
    """A product tree: its name (the classifier of its class files) and the source it is read from."""

    name: str
    source: Source


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _s(data: bytes) -> str:
    return bytes(data).decode("utf-8", "surrogateescape")


def _names(data: bytes | None) -> list[str]:
    return [_s(n) for n in bytes(data).split(b"\0")] if data else []


def _below(folder: str) -> tuple[bytes, bytes]:
    """The key range of the folders strictly below `folder` (`a/` .. `a0`: '0' follows '/')."""
    prefix = _b(folder + "/") if folder else b""
    return prefix, prefix[:-1] + b"0" if folder else b"\xff"


class Catalog(ProductFinder):
    """The catalog of one mount. Reads never raise: a failing database logs once and answers empty."""

    def __init__(self, path: str | None, roots: Iterable[ProductRoot] = ()):
        self.roots = {r.name: r for r in roots}
        self._order = {name: i for i, name in enumerate(self.roots)}
        self.version = 0  # product files (ProductFinder)
        self.class_version = 0  # class members
        self.rows_version = 0  # the tree's bins
        self.covered = False  # the tree has been walked once: bins.csv is complete
        self._lock = threading.RLock()
        self._failed = False
        try:
            self._db = self._open(path or ":memory:")
        except sqlite3.Error as err:
            log.warning("catalog in %s cannot be used (%s): keeping it in memory", path, err)
            self._db = self._open(":memory:")

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a crash may lose the last writes: it is a cache
        db.executescript(_SCHEMA)
        return db

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            if not self._failed:
                self._failed = True
                log.warning("catalog: reading failed (%s): views show what they can", err)
            return []

    def _write(self, statements: list[tuple[str, tuple | list]]) -> bool:
        """Run statements in one transaction (a list of args runs one statement for each)."""
        try:
            with self._lock, transaction(self._db):
                for sql, args in statements:
                    if isinstance(args, list):
                        self._db.executemany(sql, args)
                    else:
                        self._db.execute(sql, args)
            return True
        except sqlite3.Error as err:
            if not self._failed:
                self._failed = True
                log.warning("catalog: writing failed (%s): views may lag", err)
            return False

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- product files ---------------------------------------------------------------------
    def find(self, bin_ids: list[str]) -> dict[str, tuple[ProductFile, ...]]:
        found: dict[str, list[ProductFile]] = {}
        for start in range(0, len(bin_ids), _CHUNK):
            chunk = bin_ids[start:start + _CHUNK]
            rows = self._query(f"SELECT bin, root, kind, version, path, size, mtime, ident FROM product_files "
                               f"WHERE bin IN ({','.join('?' * len(chunk))})", tuple(chunk))
            for bin_id, root, kind, version, path, size, mtime, ident in rows:
                if root in self.roots:
                    found.setdefault(bin_id, []).append(ProductFile(root, kind, version, SourceFile(
                        _s(path), size, mtime, ident), self.roots[root].source))
        return {b: tuple(sorted(ps, key=lambda p: (self._order[p.root], _b(p.file.path)))) for b, ps in found.items()}

    def product_folder(self, root: str, folder: str) -> tuple[int, list[str]] | None:
        """A product folder's stamp and sub-folders when it was last listed, or None."""
        rows = self._query("SELECT stamp, subfolders FROM product_folders WHERE root = ? AND folder = ?", (root, _b(folder)))
        return (rows[0][0], _names(rows[0][1])) if rows else None

    def put_product_folder(self, root: str, folder: str, stamp: int, subfolders: list[str],
                           files: list[tuple[str, ProductName, SourceFile]]) -> set[str]:
        """Record one listed product folder; returns the bins whose product files changed."""
        key = _b(folder)
        old = {_s(name): (bin_id, (_s(path), size, mtime, ident)) for name, bin_id, path, size, mtime, ident in self._query(
            "SELECT name, bin, path, size, mtime, ident FROM product_files WHERE root = ? AND folder = ?", (root, key))}
        new = {name: (p.bin_id, (f.path, f.size, f.mtime_ns, f.ident)) for name, p, f in files}
        changed = {old[n][0] for n in old if old[n] != new.get(n)} | {new[n][0] for n in new if new[n] != old.get(n)}
        writes = [("INSERT OR REPLACE INTO product_folders VALUES (?, ?, ?, ?)",
                   (root, key, stamp, b"\0".join(map(_b, subfolders))))]
        if changed:
            writes += [("DELETE FROM product_files WHERE root = ? AND folder = ? AND name = ?",
                        [(root, key, _b(n)) for n in old if n not in new]),
                       ("INSERT OR REPLACE INTO product_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(root, key, _b(name), p.bin_id, p.kind, p.version, _b(f.path), f.size, f.mtime_ns, f.ident)
                         for name, p, f in files if new[name] != old.get(name)])]
        if self._write(writes) and changed:
            self.version += 1
        return changed

    def drop_product_folder(self, root: str, folder: str) -> set[str]:
        """Forget a product folder that is gone, and all below it; returns the bins it touched."""
        low, high = _below(folder)
        where = "root = ? AND (folder = ? OR (folder >= ? AND folder < ?))"
        args = (root, _b(folder), low, high)
        changed = {b for (b,) in self._query(f"SELECT DISTINCT bin FROM product_files WHERE {where}", args)}
        self._write([(f"DELETE FROM product_files WHERE {where}", args), (f"DELETE FROM product_folders WHERE {where}", args)])
        if changed:
            self.version += 1
        return changed

    def product_count(self) -> int:
        rows = self._query("SELECT count(*) FROM product_files")
        return rows[0][0] if rows else 0

    def orphans(self, kinds: tuple[str, ...]) -> list[tuple[str, str]]:
        """(path, bin) of product files of `kinds` whose bin is nowhere in the tree."""
        marks = ",".join("?" * len(kinds))
        return [(_s(p), b) for p, b in self._query(
            f"SELECT path, bin FROM product_files WHERE kind IN ({marks}) AND bin NOT IN (SELECT bin FROM tree_bins) "
            f"ORDER BY path", kinds)]

    # --- the tree's bins -------------------------------------------------------------------
    def tree_folder(self, folder: str) -> tuple[int, list[str]] | None:
        rows = self._query("SELECT stamp, subfolders FROM tree_folders WHERE folder = ?", (_b(folder),))
        return (rows[0][0], _names(rows[0][1])) if rows else None

    def put_tree_folder(self, folder: str, stamp: int, subfolders: Iterable[str]) -> None:
        self._write([("INSERT OR REPLACE INTO tree_folders VALUES (?, ?, ?)",
                      (_b(folder), stamp, b"\0".join(map(_b, subfolders))))])

    def drop_tree_folder(self, folder: str) -> None:
        """Forget a source folder that is gone, its bins, and all below it."""
        low, high = _below(folder)
        where = "(folder = ? OR (folder >= ? AND folder < ?))"
        args = (_b(folder), low, high)
        self.drop_bins([_s(p) for (p,) in self._query(f"SELECT path FROM tree_bins WHERE {where}", args)])
        self._write([(f"DELETE FROM tree_folders WHERE {where}", args)])

    def tree_bins(self, folder: str) -> dict[str, tuple[str, str, bool]]:
        """The bins recorded in one source folder: path -> (bin id, identity of its raw files,
        whether it has its bins.csv row)."""
        return {_s(p): (b, ident, bool(has_row)) for p, b, ident, has_row in
                self._query("SELECT path, bin, ident, length(row) > 0 FROM tree_bins WHERE folder = ?", (_b(folder),))}

    def bin_folder(self, path: str) -> str | None:
        rows = self._query("SELECT folder FROM tree_bins WHERE path = ?", (_b(path),))
        return _s(rows[0][0]) if rows else None

    def locations(self, bin_id: str) -> list[tuple[str, str]]:
        """(path, source folder) of each place the tree has a bin."""
        return [(_s(p), _s(f)) for p, f in self._query("SELECT path, folder FROM tree_bins WHERE bin = ?", (bin_id,))]

    def put_bin(self, path: str, bin_id: str, folder: str, ident: str, mtime_ns: int, row: bytes) -> None:
        if self._write([("INSERT OR REPLACE INTO tree_bins VALUES (?, ?, ?, ?, ?, ?)",
                         (_b(path), bin_id, _b(folder), ident, mtime_ns, row))]):
            self.rows_version += 1

    def drop_bins(self, paths: list[str]) -> None:
        if not paths:
            return
        keys = [(_b(p),) for p in paths]
        if self._write([("DELETE FROM tree_bins WHERE path = ?", keys),
                        ("DELETE FROM class_sources WHERE path = ?", keys),
                        ("DELETE FROM class_members WHERE path = ?", keys)]):
            self.rows_version += 1
            self.class_version += 1

    def bins_count(self) -> int:
        rows = self._query("SELECT count(*) FROM tree_bins")
        return rows[0][0] if rows else 0

    def rows_size(self) -> tuple[int, int]:
        """The total length of the bins.csv rows, and the newest mtime of their bins."""
        rows = self._query("SELECT coalesce(sum(length(row)), 0), coalesce(max(mtime), 0) FROM tree_bins")
        return rows[0] if rows else (0, 0)

    def rows(self) -> Iterator[bytes]:
        """The bins.csv rows in path order."""
        for (row,) in self._query("SELECT row FROM tree_bins ORDER BY path"):
            yield bytes(row)

    # --- class members -------------------------------------------------------------------
    def class_sources(self, bin_id: str) -> dict[str, str]:
        """Per classifier, the identity of what the bin's members were taken from."""
        return dict(self._query("SELECT classifier, ident FROM class_sources WHERE bin = ?", (bin_id,)))

    def put_class(self, classifier: str, bin_id: str, ident: str, year: int, path: str, mtime_ns: int,
                  members: dict[str, list[int]]) -> None:
        """Replace one classifier's members of one bin: targets by (safe) label."""
        rows = [(classifier, label, year, bin_id, _b(path), mtime_ns, array("q", sorted(targets)).tobytes())
                for label, targets in members.items()]
        if self._write([("DELETE FROM class_members WHERE classifier = ? AND bin = ?", (classifier, bin_id)),
                        ("INSERT OR REPLACE INTO class_sources VALUES (?, ?, ?, ?)", (classifier, bin_id, ident, _b(path))),
                        ("INSERT OR REPLACE INTO class_members VALUES (?, ?, ?, ?, ?, ?, ?)", rows)]):
            self.class_version += 1

    def drop_class(self, classifier: str, bin_id: str) -> None:
        if self._write([("DELETE FROM class_members WHERE classifier = ? AND bin = ?", (classifier, bin_id)),
                        ("DELETE FROM class_sources WHERE classifier = ? AND bin = ?", (classifier, bin_id))]):
            self.class_version += 1

    def class_folders(self, parts: list[str]) -> list[tuple[str, int]]:
        """The folder names one level below by-class/{parts...} (classifiers, labels or years),
        each with the newest mtime of the bins below it."""
        column = ("classifier", "label", "year")[len(parts)]
        where = " AND ".join(f"{c} = ?" for c in ("classifier", "label", "year")[:len(parts)]) or "1"
        if len(parts) > 2 and not parts[2].isdigit():
            return []
        args = tuple(int(p) if i == 2 else p for i, p in enumerate(parts))
        return [(str(name), mtime) for name, mtime in self._query(
            f"SELECT {column}, max(mtime) FROM class_members WHERE {where} GROUP BY {column} ORDER BY {column}", args)]

    def class_members(self, classifier: str, label: str, year: int) -> list[tuple[str, str, int, list[int]]]:
        """(bin id, bin path, mtime, targets) of the images under by-class/{classifier}/{label}/{year}."""
        out = []
        for bin_id, path, mtime, targets in self._query(
                "SELECT bin, path, mtime, targets FROM class_members WHERE classifier = ? AND label = ? AND year = ? "
                "ORDER BY bin", (classifier, label, year)):
            numbers = array("q")
            numbers.frombytes(bytes(targets))
            out.append((bin_id, _s(path), mtime, numbers.tolist()))
        return out

    def class_mtime(self) -> int:
        rows = self._query("SELECT coalesce(max(mtime), 0) FROM class_members")
        return rows[0][0] if rows else 0

    def members_count(self) -> int:
        rows = self._query("SELECT count(DISTINCT bin) FROM class_sources")
        return rows[0][0] if rows else 0
