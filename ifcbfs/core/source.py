"""Finding bins under a data root, one folder at a time.

`DataRoot` is the seam for backends: it answers "what is in this folder" and "which files make
this bin"; everything above it (the bin model, the namespace, export) asks it and nothing else.
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from typing import Iterator

from .errors import BinError
from .ids import BinId, parse_bin_id, IdentifierError

log = logging.getLogger("ifcbfs")

EXTENSIONS = ("hdr", "adc", "roi")
SKIPPED = frozenset({"skip", "beads"})


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One raw file as it was seen: its path, size and mtime."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class BinFiles:
    """The raw files of one bin (any may be missing), as seen when its folder was read."""

    bin_id: BinId
    folder: str  # relative to the data root, '' for the root itself
    hdr: SourceFile | None
    adc: SourceFile | None
    roi: SourceFile | None

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


class SourceUnreadable(BinError):
    """A source folder or file exists but cannot be read (permissions, I/O)."""

    def __init__(self, message: str, errno: int):
        super().__init__(message)
        self.errno = errno


def root_problem(path: str) -> str | None:
    """Why `path` cannot serve as a data root, in one line; None when it can."""
    if not os.path.exists(path):
        return f"source {path} does not exist"
    if not os.path.isdir(path):
        return f"source {path} is not a folder"
    if not os.access(path, os.R_OK | os.X_OK):
        return f"source {path} cannot be read (permission denied)"
    return None


def within(path: str, folder: str) -> bool:
    """True when `path` is `folder` or lies below it, comparing real paths (links resolved)."""
    return _below(os.path.realpath(path), os.path.realpath(folder))


def _below(real: str, folder: str) -> bool:
    """`within` for paths already real: no file system access."""
    return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)


def _stat(path: str) -> SourceFile | None:
    """The file at `path` if it is a regular file (never a FIFO or device: opening one can block)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return SourceFile(path, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


class DataRoot:
    """A tree of raw IFCB files on a local filesystem.

    `exclude` is a folder never entered (the mountpoint: reading it from the daemon that serves
    it would wait on itself); a link leading into it is not followed, and logged once."""

    def __init__(self, root: str, include_skipped: bool = False, exclude: str | None = None):
        self.root = os.path.abspath(root)
        self.include_skipped = include_skipped
        self._real_root = os.path.realpath(self.root)
        self.exclude = os.path.realpath(exclude) if exclude else None
        self._refused: set[str] = set()  # links into `exclude` already logged
        adcmod = os.path.join(os.path.dirname(self.root), "adcmod")
        self.adcmod = adcmod if os.path.isdir(adcmod) else None

    def abspath(self, folder: str) -> str:
        return os.path.join(self.root, folder) if folder else self.root

    def _wanted_dir(self, entry: os.DirEntry, folder: str, real_folder: str | None) -> bool:
        if entry.name.startswith(".") or (entry.name in SKIPPED and not self.include_skipped):
            return False
        try:
            if not entry.is_dir():
                return False
            if entry.is_symlink():  # follow links, but never into a loop
                target = os.path.realpath(entry.path)
                if any(real == target or real.startswith(target + os.sep) for real in self._real_chain(folder)):
                    return False
            else:
                target = os.path.join(real_folder, entry.name) if real_folder else ""
        except OSError:
            return False
        return not self._excluded(entry, target)

    def _real_folder(self, folder: str) -> str | None:
        """The real path of a folder, when needed to keep out of `exclude` (None otherwise)."""
        return os.path.realpath(self.abspath(folder)) if self.exclude else None

    def _excluded(self, entry: os.DirEntry, target: str) -> bool:
        """True (and logged once) when `target`, the real path of `entry`, is in `exclude`."""
        if not (self.exclude and target and _below(target, self.exclude)):
            return False
        if entry.path not in self._refused:
            self._refused.add(entry.path)
            log.warning("%s leads into the mountpoint %s: not followed (the mount would read itself)",
                        entry.path, self.exclude)
        return True

    def _real_chain(self, folder: str) -> list[str]:
        """Real paths of the root and of each folder on the way to `folder`: a link to any of them
        (or above them) is a loop, also when it goes through sibling links (a/l -> b, b/l -> a)."""
        parts = folder.split("/") if folder else []
        return [os.path.realpath(self.abspath("/".join(parts[:i]))) for i in range(len(parts) + 1)]

    def _entries(self, folder: str) -> tuple[int, list[os.DirEntry]]:
        path = self.abspath(folder)
        try:
            mtime = os.stat(path).st_mtime_ns
            with os.scandir(path) as it:
                return mtime, sorted(it, key=lambda e: e.name)
        except PermissionError as err:
            raise SourceUnreadable(f"{path}: {err.strerror}", err.errno) from None
        except OSError as err:
            raise SourceUnreadable(f"{path}: {err.strerror}", err.errno) from None

    def scan(self, folder: str = "") -> Folder:
        """Read one folder: its bins, and the sub-folders that lead to bins (not recursive)."""
        mtime, entries = self._entries(folder)
        real_folder = self._real_folder(folder)
        names: dict[str, dict[str, SourceFile]] = {}
        dirs = []
        for entry in entries:
            stem, dot, ext = entry.name.rpartition(".")
            if dot and ext in EXTENSIONS:
                try:
                    if self.exclude and entry.is_symlink() and self._excluded(entry, os.path.realpath(entry.path)):
                        continue
                    if entry.is_file():
                        st = entry.stat()
                        names.setdefault(stem, {})[ext] = SourceFile(entry.path, st.st_size, st.st_mtime_ns)
                except OSError:
                    continue
            elif self._wanted_dir(entry, folder, real_folder):
                dirs.append(entry.name)
        bins = {}
        for stem, files in names.items():
            try:
                bin_id = parse_bin_id(stem)
            except IdentifierError:
                continue
            adc = self._adcmod(folder, stem) or files.get("adc")
            bins[stem] = BinFiles(bin_id, folder, files.get("hdr"), adc, files.get("roi"))
        subfolders = tuple(d for d in dirs if d not in bins and self.leads_to_bins(_join(folder, d)))
        return Folder(folder, mtime, subfolders, bins)

    def _adcmod(self, folder: str, stem: str) -> SourceFile | None:
        if not self.adcmod:
            return None
        day = os.path.basename(self.abspath(folder))
        return _stat(os.path.join(self.adcmod, day, stem + ".adc.mod"))

    def leads_to_bins(self, folder: str, _seen: set | None = None) -> bool:
        """True when a bin lies somewhere below `folder`; stops at the first one found."""
        seen = set() if _seen is None else _seen
        try:
            _, entries = self._entries(folder)
        except SourceUnreadable:
            return True  # show it: listing it will say why it cannot be read
        real = os.path.realpath(self.abspath(folder))
        if real in seen:
            return False
        seen.add(real)
        dirs = []
        for entry in entries:
            stem, dot, ext = entry.name.rpartition(".")
            if dot and ext in EXTENSIONS:
                try:
                    parse_bin_id(stem)
                    return True
                except IdentifierError:
                    pass
            elif self._wanted_dir(entry, folder, real):
                dirs.append(entry.name)
        return any(self.leads_to_bins(_join(folder, d), seen) for d in dirs)

    def walk(self, folder: str = "") -> Iterator[BinFiles]:
        """Every bin below `folder`, depth first in name order, lazily; unreadable folders are logged."""
        for found in self.folders(folder):
            yield from found.bins.values()

    def folders(self, folder: str = "") -> Iterator[Folder]:
        """`folder` and every folder below it that leads to bins, read one by one, depth first
        in name order, lazily; unreadable folders are logged and left out."""
        try:
            found = self.scan(folder)
        except SourceUnreadable as err:
            log.warning("%s", err)
            return
        yield found
        for sub in found.folders:
            yield from self.folders(_join(folder, sub))

    def stat_bin(self, files: BinFiles) -> BinFiles:
        """The same bin's files as they are now (for noticing growth or change)."""
        base = os.path.join(self.abspath(files.folder), str(files.bin_id))
        current = {ext: _stat(f"{base}.{ext}") for ext in EXTENSIONS}
        adc = self._adcmod(files.folder, str(files.bin_id)) or current["adc"]
        return BinFiles(files.bin_id, files.folder, current["hdr"], adc, current["roi"])


def depth_first(folder: str) -> tuple[str, ...]:
    """Sort key that puts folders in the order `DataRoot.folders` reads them."""
    return tuple(folder.split("/")) if folder else ()


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name
