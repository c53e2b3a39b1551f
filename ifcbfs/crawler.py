"""Keeping the catalog up to date: the product trees, and (for the views) the tree's bins.

A pass walks each product tree and, with `-o classes` or `-o bins_csv`, the data root, folder by
folder. A folder whose stamp is what the catalog holds is not listed again (its sub-folders are
still visited); folders holding files changed in the last hour are listed at every pass, as the
namespace does for live bins. The first pass of a process lists every folder. The mount runs
passes in a thread of their own, every `poll` seconds; while the first one runs, the views show
what is indexed so far.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .catalog import Catalog
from .core import beside
from .core.adc import parse_adc
from .core.errors import BinError
from .core.ids import parse_bin_id
from .core.products import CLASS_KINDS, MANUAL_CSV, MANUAL_MAT, product_kind, safe_label
from .core.source import BinFiles, SourceUnreadable
from .fs.namespace import LIVE_SECONDS, RETRY_SECONDS, FsError, Namespace
from .fs.views import bins_row
from .logonce import log_bad_bin

log = logging.getLogger("ifcbfs")

CLASSIFIER_KINDS = (*sorted(CLASS_KINDS), MANUAL_MAT, MANUAL_CSV)


def raw_identity(files: BinFiles) -> str:
    """The identity of a bin's raw files (what its bins.csv row and images depend on)."""
    return repr(tuple((f.path, f.size, f.mtime_ns, f.ident) if f else None for f in (files.hdr, files.adc, files.roi)))


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _parts(folder: str) -> tuple[str, ...]:
    return tuple(folder.split("/")) if folder else ()


class Crawler:
    """Walks the product trees and the data root into a catalog."""

    def __init__(self, ns: Namespace, catalog: Catalog):
        self.ns, self.catalog = ns, catalog
        self.root = ns.source
        self.classes, self.rows = ns.options.classes, ns.options.bins_csv
        self.flat = ns.options.layout == "flat"
        self.passes = 0
        self._full = True
        self.folders = 0  # folders visited in the current pass
        self.bins = 0  # bins looked at in the current pass
        self._live_products: set[tuple[str, str]] = set()  # (root, folder) listed at every pass
        self._live_tree: set[str] = set()
        self._retry: dict[str, float] = {}  # tree folder -> when a file of one of its bins could not be read
        self._again = threading.Event()  # SIGHUP: list every folder at the next pass
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def walks_tree(self) -> bool:
        return self.classes or self.rows

    # --- running ---------------------------------------------------------------------------
    def start(self, poll: float) -> None:
        """Run passes in a thread: one now, then every `poll` seconds (0: only when woken)."""
        self._thread = threading.Thread(target=self._loop, args=(poll,), name="ifcbfs-crawler", daemon=True)
        self._thread.start()

    def _loop(self, poll: float) -> None:
        while not self._stop.is_set():
            try:
                self.run_pass()
            except Exception as err:  # the mount keeps serving; the next pass tries again
                log_bad_bin(log, "catalog", f"indexing failed: {type(err).__name__}: {err}")
            self._wake.wait(poll if poll > 0 else None)
            self._wake.clear()

    def recheck(self) -> None:
        """List every folder again at the next pass, and start it now (SIGHUP)."""
        self._again.set()
        self._wake.set()

    def stop(self) -> None:
        """Stop, and wait (a while) for a pass under way to end: the catalog closes next."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def status(self) -> str:
        """How far indexing has got, for the status line."""
        first = self.passes == 0
        parts = [f"{self.catalog.product_count()} product files"] if self.catalog.roots else []
        if self.walks_tree:
            parts.append(f"{self.catalog.bins_count()} bins in the views")
        if first:
            parts.append(f"indexing ({self.folders} folders, {self.bins} bins so far)")
        return ", ".join(parts)

    def run_pass(self, progress: Callable[[str], None] | None = None) -> None:
        """One pass over the product trees and (for the views) the data root."""
        changed = self.walk_products(progress)
        self.walk_tree(changed, progress)
        self.passes += 1

    def walk_products(self, progress: Callable[[str], None] | None = None) -> set[str]:
        """Bring the product trees up to date; returns the bins whose product files changed."""
        self._full = self.passes == 0 or self._again.is_set()
        self._again.clear()
        self.folders = self.bins = 0
        return self._walk_products(self._full, progress)

    def walk_tree(self, changed: set[str] = frozenset(), progress: Callable[[str], None] | None = None) -> None:
        """Bring the tree's bins and class members up to date (for the views)."""
        if not self.walks_tree:
            return
        self._walk_tree(self._full, progress)
        if not self._full:
            for bin_id in sorted(changed):
                self._rebin(bin_id)
        if self.classes and self.passes == 0:
            shown = getattr(self.root, "bin_filter", None)
            for path, bin_id in self.catalog.orphans(CLASSIFIER_KINDS):
                if shown is None or shown.matches(parse_bin_id(bin_id)):  # (not one the filters leave out)
                    log_bad_bin(log, path, f"no bin {bin_id} in the source: its labels are left out")
        self.catalog.covered = True

    # --- product trees ---------------------------------------------------------------------
    def _walk_products(self, full: bool, progress) -> set[str]:
        changed: set[str] = set()
        now = time.time()
        for name, root in self.catalog.roots.items():
            stack = [""]
            while stack:
                folder = stack.pop()
                self.folders += 1
                stored = self.catalog.product_folder(name, folder)
                stamp = root.source.stamp(folder)
                if not full and stored and stamp and stored[0] == stamp and (name, folder) not in self._live_products:
                    subs = stored[1]
                else:
                    try:
                        listing = root.source.listdir(folder)
                    except SourceUnreadable as err:
                        log_bad_bin(log, f"{root.source.location}/{folder}", f"product folder cannot be read: {err}")
                        continue
                    files = [(f.path.rpartition("/")[2], pn, f) for f in listing.files
                             if (pn := product_kind(f.path.rpartition("/")[2])) is not None]
                    subs = [d for d in listing.folders if not d.startswith(".")]
                    changed |= self.catalog.put_product_folder(name, folder, listing.stamp, subs, files)
                    for gone in set(stored[1] if stored else ()) - set(subs):
                        changed |= self.catalog.drop_product_folder(name, _join(folder, gone))
                    live = any(now - f.mtime_ns / 1e9 < LIVE_SECONDS for _, _, f in files)
                    (self._live_products.add if live else self._live_products.discard)((name, folder))
                    if progress:
                        progress(f"products: {name}/{folder}")
                stack.extend(_join(folder, d) for d in reversed(subs))
        return changed

    # --- the data root -----------------------------------------------------------------------
    def _walk_tree(self, full: bool, progress) -> None:
        stack = [""]
        while stack:
            folder = stack.pop()
            self.folders += 1
            stored = self.catalog.tree_folder(folder)
            stamp = self.root.stamp(folder)
            again = time.monotonic() - self._retry.get(folder, float("inf")) >= RETRY_SECONDS
            if not full and stored and stamp and stored[0] == stamp and folder not in self._live_tree and not again:
                subs = stored[1]
            else:
                try:
                    found = self.root.scan(folder)
                except SourceUnreadable as err:
                    log_bad_bin(log, folder or ".", f"cannot be read: {err}")
                    continue
                self._bins_of(folder, found.bins)
                subs = list(found.folders)
                for gone in set(stored[1] if stored else ()) - set(subs):
                    self.catalog.drop_tree_folder(_join(folder, gone))
                self.catalog.put_tree_folder(folder, found.mtime_ns, subs)
                if progress:
                    progress(f"bins: {folder or '.'}")
            stack.extend(_join(folder, d) for d in reversed(subs))

    def _bins_of(self, folder: str, bins: dict[str, BinFiles]) -> None:
        """Bring one source folder's bins up to date in the catalog."""
        old = self.catalog.tree_bins(folder)
        now, live, seen, read = time.time(), False, set(), True
        for name, files in bins.items():
            path = name if self.flat else _join(folder, name)
            if self.flat and path not in old:
                kept = self.catalog.bin_folder(path)
                if kept is not None and kept != folder and _parts(kept) < _parts(folder):
                    continue  # the flat root shows the first one found (see the namespace)
            seen.add(path)
            self.bins += 1
            ident = raw_identity(files)
            _, known, has_row = old.get(path, (None, None, False))
            if known != ident or (self.rows and not has_row):
                read = self._bin(path, files, ident) and read
            elif self.classes:
                read = self._assign(path, files) and read
            live = live or now - files.mtime_ns / 1e9 < LIVE_SECONDS
        self.catalog.drop_bins([p for p in old if p not in seen])
        (self._live_tree.add if live else self._live_tree.discard)(folder)
        if read:
            self._retry.pop(folder, None)
        else:
            self._retry[folder] = time.monotonic()

    def _bin(self, path: str, files: BinFiles, ident: str) -> bool:
        """The bin's row and class members; False when a file could not be read now."""
        try:
            model = self.ns.bin_model(path, files)
        except FsError as err:  # its files could not be read: tried again (see RETRY_SECONDS)
            log_bad_bin(log, path, str(err))
            return False
        row = bins_row(model.hdr_json, path) if self.rows else b""
        self.catalog.put_bin(path, str(files.bin_id), files.folder, ident, files.mtime_ns, row)
        return self._assign(path, files, model) if self.classes else True

    def _rebin(self, bin_id: str) -> None:
        """A bin whose product files changed: its class members again."""
        if not self.classes:
            return
        for path, folder in self.catalog.locations(bin_id):
            probe = BinFiles(parse_bin_id(bin_id), folder, None, None, None, self.root.source)
            files = self.root.stat_bin(probe)
            if (files.hdr or files.adc or files.roi) and not self._assign(path, files):
                self._retry[folder] = time.monotonic()  # (a success here says nothing of its neighbours)

    # --- class members -------------------------------------------------------------------
    def _assign(self, path: str, files: BinFiles, model=None) -> bool:
        """Each classifier's labels of the bin's images, unless the catalog has them for these
        files. False when a file could not be read now (not recorded: tried again later)."""
        bin_id = str(files.bin_id)
        chosen = beside.classifier_files(files.products)
        stored = self.catalog.class_sources(bin_id)
        raw = raw_identity(files)
        targets, read = None, True
        for classifier, product in chosen.items():
            ident = repr((product.identity(), raw, path))
            if stored.get(classifier) == ident:
                continue
            missing = beside.missing_package(product.kind)
            if missing:
                log_bad_bin(log, *missing.split(": ", 1))
                continue
            try:
                if model is None:
                    model = self.ns.bin_model(path, files)
                if targets is None:
                    adc = parse_adc(files.source.read(files.adc), files.bin_id.schema, final=model.settled) if files.adc else None
                    targets = beside.adc_targets(adc)
                labels, problem = beside.labels_of(product, bin_id, targets)
            except (BinError, FsError) as err:  # ProductError, SourceUnreadable ...
                if isinstance(err, FsError) or beside.passing(err):
                    log_bad_bin(log, product.file.path, f"{err}: its labels are left out for now (tried again in "
                                                        f"{RETRY_SECONDS} s)")
                    if classifier in stored:  # (they were another version's)
                        self.catalog.drop_class(classifier, bin_id)
                    read = False
                    continue
                log_bad_bin(log, product.file.path, f"{err}: its labels are left out")
                labels, problem = {}, None
            if problem:
                log_bad_bin(log, product.file.path, problem)
            self.catalog.put_class(classifier, bin_id, ident, files.bin_id.timestamp.year, path, files.mtime_ns,
                                   self._members(product.file.path, labels, {im.target for im in model.images} if model else set()))
        for classifier in stored.keys() - chosen.keys():
            self.catalog.drop_class(classifier, bin_id)
        return read

    @staticmethod
    def _members(where: str, labels: dict[int, str], images: set[int]) -> dict[str, list[int]]:
        """Targets by folder name (core.products.safe_label), images of the bin only."""
        members: dict[str, list[int]] = {}
        escaped = set()
        for target, label in labels.items():
            if target not in images:
                continue  # the second ROI of a stitched pair, or an ROI with no pixels: no image
            name = safe_label(label)
            if name != label:
                escaped.add(label)
            members.setdefault(name, []).append(target)
        if escaped:
            shown = ", ".join(repr(label) for label in sorted(escaped)[:5])
            log_bad_bin(log, f"{where} labels", f"labels that cannot be folder names are shown escaped: {shown}")
        return members


def attach(root, options, index=None, exclude: tuple[str, ...] = ()):
    """The catalog and views the options ask for: (None, ()) when they ask for none. The
    product trees become the data root's product finder; the catalog lives in the index's file
    (in memory without a usable index)."""
    from .catalog import ProductRoot
    from .core.source import open_source
    from .fs.views import BinsCsv, ByClass

    if not (options.products or options.classes or options.bins_csv):
        return None, ()
    path = index.path if index is not None and index.usable else None
    catalog = Catalog(path, [ProductRoot(name, open_source(folder, exclude)) for name, folder in options.products])
    if options.products:
        root.products = catalog
    views = ((ByClass(catalog),) if options.classes else ()) + ((BinsCsv(catalog),) if options.bins_csv else ())
    return catalog, views
