"""The source interface, and finding bins under a data root one folder at a time.

`Source` is the seam for backends: every byte ifcbfs reads from raw data (folder listings, file
identity, whole reads of `.hdr`/`.adc`, ranged reads of `.roi`) goes through one, so a backend is
one class (`local.LocalSource` for a folder tree; an object store is another). `DataRoot` finds
bins through a source; everything above it (the bin model, the namespace, export) asks it.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Iterator

from .binfilter import BinFilter
from .errors import BinError
from .ids import BinId, parse_bin_id, IdentifierError

log = logging.getLogger("ifcbfs")

EXTENSIONS = ("hdr", "adc", "roi")
SKIPPED = frozenset({"skip", "beads"})


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One raw file as it was seen. `path` locates it in its source (absolute on disk, the key in
    an object store); `ident` tells versions apart beside size and mtime (inode, or ETag)."""

    path: str
    size: int
    mtime_ns: int
    ident: int | str = 0


@dataclass(frozen=True, slots=True)
class Listing:
    """One source folder: a stamp that changes when its entries do (0 where the backend has
    none), its sub-folder names and its regular files, both in name order."""

    stamp: int
    folders: tuple[str, ...]
    files: tuple[SourceFile, ...]


class SourceUnreadable(BinError):
    """A source folder or file exists but cannot be read (permissions, I/O)."""

    def __init__(self, message: str, errno: int):
        super().__init__(message)
        self.errno = errno


HELD_ONLY: ContextVar[bool] = ContextVar("held_only", default=False)  # see NotHeld


class NotHeld(Exception):
    """A remote read that would wait on the network, asked for where only bytes already held may
    be read (HELD_ONLY is set: an event loop that judged the read cheap with `holds`, after which
    another thread dropped them). The caller reads again in a worker thread."""


class Source(ABC):
    """Where raw files live. Folder paths are relative to the source root, '/'-separated."""

    location: str  # for messages: a path or a URL
    remote = False  # True when reads wait on a network (see holds)
    reads_ahead = True  # a walk's next bin may be read before it is asked for (False: only what is asked)

    @abstractmethod
    def problem(self) -> str | None:
        """Why this source cannot be served, in one line; None when it can."""

    @abstractmethod
    def listdir(self, folder: str) -> Listing:
        """One folder's sub-folders and files; raises SourceUnreadable."""

    @abstractmethod
    def stat(self, path: str) -> SourceFile | None:
        """The regular file at `path` (relative) as it is now, or None."""

    @abstractmethod
    def read(self, f: SourceFile) -> bytes:
        """The first `f.size` bytes of a file (never what was appended since); SourceUnreadable."""

    @abstractmethod
    def read_range(self, f: SourceFile, start: int, length: int) -> bytes:
        """Exactly `length` bytes at `start`: ImageMissing when the file ends first."""

    def stamp(self, folder: str) -> int:
        """A cheap check of whether a folder changed (0: cannot tell, list it again)."""
        return 0

    def holds(self, f: SourceFile, start: int, length: int) -> bool:
        """True when reading these bytes waits on nothing slower than a disk (a local file, or a
        remote one's bytes already in memory): then they may be read on an event loop."""
        return not self.remote

    def sibling(self, name: str) -> "Source | None":
        """The source of a folder beside this one (`adcmod`), if there is one."""
        return None


@dataclass(frozen=True, slots=True)
class ProductFile:
    """A product file found for a bin (SPEC section 9) in a product root: the root's name (the
    classifier of its class files), the product's kind and version (core.products), the file as
    seen, and the source that reads it."""

    root: str
    kind: str
    version: int | None
    file: SourceFile
    source: Source | None = field(default=None, compare=False, repr=False)

    def identity(self) -> tuple:
        """What tells this file apart from another version of it (for index records)."""
        f = self.file
        return (self.root, self.kind, self.version, f.path, f.size, f.mtime_ns, f.ident)


class ProductFinder(ABC):
    """Where a data root finds each bin's product files (an index of the product trees)."""

    version: int = 0  # changes whenever any bin's product files do

    @abstractmethod
    def find(self, bin_ids: list[str]) -> dict[str, tuple[ProductFile, ...]]:
        """The product files of each bin that has some, in a stable order."""


@dataclass(frozen=True, slots=True)
class BinFiles:
    """The raw files of one bin (any may be missing), as seen when its folder was read, and the
    product files found for it (with `-o products`)."""

    bin_id: BinId
    folder: str  # relative to the data root, '' for the root itself
    hdr: SourceFile | None
    adc: SourceFile | None
    roi: SourceFile | None
    source: Source | None = field(default=None, compare=False, repr=False)
    products: tuple[ProductFile, ...] = ()

    @property
    def mtime_ns(self) -> int:
        """The newest mtime of the bin's files: the mtime of everything derived from them."""
        return max((f.mtime_ns for f in (self.hdr, self.adc, self.roi) if f), default=0)


@dataclass(frozen=True, slots=True)
class Folder:
    """What one source folder holds: sub-folders that lead to bins, and bins."""

    path: str
    mtime_ns: int
    folders: tuple[str, ...]
    bins: dict[str, BinFiles]


def open_source(spec: str, exclude: tuple[str, ...] = (), options: dict | None = None) -> Source:
    """The source a command line names: a folder path, or `s3://BUCKET[/PREFIX]` with `options`
    for the object store (endpoint, region, threads; see s3.S3Source)."""
    from . import s3

    if s3.is_url(spec):
        return s3.S3Source(spec, **(options or {}))
    from .local import LocalSource

    return LocalSource(spec, exclude)


class DataRoot:
    """A tree of raw IFCB files in a source: which folders lead to bins, and which files make a bin.
    With a `bin_filter`, only the bins it matches exist, and only the folders that lead to them."""

    def __init__(self, root: "str | Source", include_skipped: bool = False, exclude: str | None = None,
                 bin_filter: BinFilter = BinFilter()):
        """`exclude`: a folder never entered (the mountpoint: reading it from the daemon that
        serves it would wait on itself), when `root` is a path."""
        self.source = open_source(root, (exclude,) if exclude else ()) if isinstance(root, str) else root
        self.root = self.source.location
        self.include_skipped = include_skipped
        self.bin_filter = bin_filter
        self.adcmod = self.source.sibling("adcmod")
        self.products: ProductFinder | None = None  # set to show products beside each bin

    def _wanted(self, name: str) -> bool:
        return not name.startswith(".") and (self.include_skipped or name not in SKIPPED)

    def scan(self, folder: str = "", known: frozenset[str] = frozenset()) -> Folder:
        """Read one folder: its bins, and the sub-folders that lead to bins (not recursive);
        sub-folders in `known` were seen to lead to bins before and are not looked into again."""
        listing = self.source.listdir(folder)
        names: dict[str, dict[str, SourceFile]] = {}
        for f in listing.files:
            stem, dot, ext = _name(f.path).rpartition(".")
            if dot and ext in EXTENSIONS:
                names.setdefault(stem, {})[ext] = f
        bins, stems = {}, set()
        for stem, files in names.items():
            try:
                bin_id = parse_bin_id(stem)
            except IdentifierError:
                continue
            stems.add(stem)
            if not self.bin_filter.matches(bin_id):
                continue
            adc = self._adcmod(folder, stem) or files.get("adc")
            bins[stem] = BinFiles(bin_id, folder, files.get("hdr"), adc, files.get("roi"), self.source)
        if self.products is not None and bins:
            found = self.products.find(list(bins))
            for stem, products in found.items():
                bins[stem] = replace(bins[stem], products=products)
        subfolders = tuple(d for d in listing.folders
                           if self._wanted(d) and d not in stems
                           and (d in known or self.leads_to_bins(_join(folder, d))))
        return Folder(folder, listing.stamp, subfolders, bins)

    def _adcmod(self, folder: str, stem: str) -> SourceFile | None:
        if not self.adcmod:
            return None
        day = _name(folder) if folder else _name(self.root)
        return self.adcmod.stat(f"{day}/{stem}.adc.mod")

    def leads_to_bins(self, folder: str) -> bool:
        """True when a bin (one the filter matches) lies somewhere below `folder`; stops at the
        first one found."""
        try:
            listing = self.source.listdir(folder)
        except SourceUnreadable:
            return True  # show it: listing it will say why it cannot be read
        for f in listing.files:
            stem, dot, ext = _name(f.path).rpartition(".")
            if dot and ext in EXTENSIONS:
                try:
                    if self.bin_filter.matches(parse_bin_id(stem)):
                        return True
                except IdentifierError:
                    pass
        return any(self.leads_to_bins(_join(folder, d)) for d in listing.folders if self._wanted(d))

    def folders(self, folder: str = "") -> Iterator[Folder]:
        """`folder` and every folder below it that leads to bins, depth first in name order,
        lazily; unreadable folders are logged and passed over."""
        try:
            found = self.scan(folder)
        except SourceUnreadable as err:
            log.warning("%s", err)
            return
        yield found
        for sub in found.folders:
            yield from self.folders(_join(folder, sub))

    def walk(self, folder: str = "") -> Iterator[BinFiles]:
        """Every bin below `folder`, depth first in name order, lazily."""
        for found in self.folders(folder):
            yield from found.bins.values()

    def stat_bin(self, files: BinFiles) -> BinFiles:
        """The same bin's files as they are now (for noticing growth or change)."""
        base = _join(files.folder, str(files.bin_id))
        current = {ext: self.source.stat(f"{base}.{ext}") for ext in EXTENSIONS}
        adc = self._adcmod(files.folder, str(files.bin_id)) or current["adc"]
        return BinFiles(files.bin_id, files.folder, current["hdr"], adc, current["roi"], self.source,
                        self.products_of(str(files.bin_id)))

    def products_of(self, bin_id: str) -> tuple[ProductFile, ...]:
        """The product files found for one bin now (none without a product finder)."""
        return self.products.find([bin_id]).get(bin_id, ()) if self.products is not None else ()

    def stamp(self, folder: str) -> int:
        """The folder's change stamp (see Source.stamp)."""
        return self.source.stamp(folder)


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _name(path: str) -> str:
    return path.rpartition("/")[2]


def root_problem(spec: str, options: dict | None = None) -> str | None:
    """Why the source a command line names cannot serve as a data root, in one line; else None."""
    return open_source(spec, options=options).problem()
