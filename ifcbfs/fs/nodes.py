"""The nodes of the tree and what they are made of: kinds, inode numbers, options, errors.

A folder's or bin's inode is a hash of its path with the low CODE_BITS clear; a file's or
sub-folder's is its bin's plus the code the bin's model gives it (`core.bin`), so every inode
decodes to (bin, file).
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from ..core.bin import Bin
from ..core.records import Entry
from ..core.mosaic import Mosaic
from ..core.source import BinFiles

ROOT_INO = 1
STATS_NAME = ".ifcbfs-stats"  # in the root, found by name only (never listed): the daemon's counters
STATS_INO = ROOT_INO + 1  # no folder, bin or file has it (their inodes are a bin's plus a code)
CODE_BITS = 24  # the low bits of an inode: which file of a bin (0: the bin folder itself)
CODE_MASK = (1 << CODE_BITS) - 1
DIR, BIN, SUB, FILE = "dir", "bin", "sub", "file"
VDIR, VFILE, LINK = "vdir", "vfile", "link"  # a view's folders, files and symbolic links
KEPT = frozenset({DIR, BIN, VDIR, VFILE, LINK})  # kinds kept as nodes (the rest made on demand)
_VIEW_KINDS = {"dir": VDIR, "file": VFILE, "link": LINK}
BLOCK_SIZE = 1 << 17  # st_blksize of a file: most images fit one read
FOLDER_BLOCK_SIZE = 1 << 20  # st_blksize of a folder: readdir(3) sizes its buffer by it (up to 1 MiB),
# and the kernel its requests by that buffer, so a bin folder of 2,000 images is listed in one request, not three
INLINE_LIMIT = 1 << 16  # images smaller than this are produced on the event loop (see is_cheap)
LIVE_SECONDS = 3600  # a bin whose files changed this recently is re-checked at every refresh
RETRY_SECONDS = 60  # a product file that could not be read for a passing reason is read again after this
SWEEP_SECONDS = 600  # a folder without a change stamp (object store) is re-listed at least this often
LISTINGS_KEPT = 8  # bin folder listings kept for readdir, which asks for them in slices


class FsError(Exception):
    """An errno for the FUSE boundary, with the message to log."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message or os.strerror(code))
        self.errno = code


@dataclass(frozen=True, slots=True)
class Options:
    layout: str = "mirror"
    uid: int = 0
    gid: int = 0
    cache_size: int = 256 << 20
    bin_cache: int = 64 << 20  # bytes of loaded bin models kept (an estimate; see Bin.footprint)
    umask: int = 0o022  # permission bits taken away: files 0644 and folders 0755, as an export writes them
    stitch: str = "on"  # one of core.records.STITCH_MODES
    mosaic: Mosaic | None = None  # the page shape of mosaic/ in each bin folder; None: no mosaic
    zip: bool = False  # {bin}.zip in each bin folder
    products: tuple[tuple[str, str], ...] = ()  # product roots: (name, folder), in option order
    blobs: bool = False  # blobs/ in bin folders with a blobs zip
    classes: bool = False  # the by-class/ view
    bins_csv: bool = False  # the bins.csv view

    @property
    def signature(self) -> str:
        """The options that shape what the tree holds (an index and its catalog are valid for
        these only: the layout decides the paths the catalog keeps)."""
        views = (f",mosaic={self.mosaic}" if self.mosaic else "") + (",zip" if self.zip else "")
        products = "".join(f",products={name}={path}" for name, path in self.products)
        return (f"layout={self.layout},stitch={self.stitch}{views}{products}"
                f"{',blobs' if self.blobs and self.products else ''}")


class Rows(NamedTuple):
    """A folder's children for readdir, in name order, as columns. In a bin folder of files only
    (`bin` set), every row is a file of that bin with its mtime, and `modes`, `mtimes`, `held`
    are None; elsewhere `held` is the node a reply's reference counts on (see looked_up)."""

    names: list[bytes]
    inos: Sequence[int]
    sizes: Sequence[int]
    modes: Sequence[int] | None
    mtimes: Sequence[int] | None
    held: "Sequence[Node] | None"
    bin: "Node | None"


class Node:
    """One inode. Folders (DIR) and bins (BIN) are kept in the tree; the files (FILE) and
    sub-folders (SUB) of a bin folder are made on demand from the bin's model."""

    __slots__ = ("ino", "parent", "name", "kind", "path", "size", "mtime_ns", "children",
                 "source", "files", "model", "entry", "lookups", "listed", "changed", "view", "target", "stamp")

    def __init__(self, ino: int, parent: "Node | None", name: str, kind: str, path: str, mtime_ns: int):
        self.ino, self.parent, self.name, self.kind, self.path = ino, parent, name, kind, path
        self.mtime_ns = mtime_ns
        self.size = 0
        self.children: dict[str, Node] | None = None  # DIR, VDIR: None until loaded
        self.source: str | None = None  # DIR: the source folder it mirrors; views: the path in the view
        self.files: BinFiles | None = None  # BIN: its raw files
        self.model: Bin | None = None  # BIN: its model while loaded; FILE, SUB: the one listed from
        self.entry: Entry | None = None  # FILE
        self.lookups = 0  # DIR, BIN: references the kernel holds to it and (BIN) its files
        self.listed = False  # BIN: its folder has been read at least once
        self.changed = 0.0  # DIR: when its listing was read first or last changed (monotonic)
        self.view = None  # VDIR, VFILE, LINK: the view it belongs to
        self.target = ""  # LINK: where it points
        self.stamp = 0  # VDIR: the view's stamp when it was listed

    @property
    def is_dir(self) -> bool:
        return self.kind in (DIR, BIN, SUB, VDIR)

    @property
    def mode(self) -> int:
        """Type and permissions before the mount's umask (writes fail with EROFS all the same)."""
        if self.kind == LINK:
            return stat.S_IFLNK | 0o777
        return stat.S_IFDIR | 0o777 if self.is_dir else stat.S_IFREG | 0o666

    @property
    def blocks(self) -> int:
        return -(-self.size // 512)

    @property
    def bin(self) -> "Node | None":
        """The bin node this node is or belongs to."""
        node = self
        while node is not None and node.kind != BIN:
            node = node.parent if node.kind != DIR else None
        return node


def inode_of(path: str) -> int:
    """A stable inode number for a folder or bin path in the tree (low CODE_BITS clear)."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return (int.from_bytes(digest, "little") & (2**63 - 1) & ~CODE_MASK) or (1 << CODE_BITS)
