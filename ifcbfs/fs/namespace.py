"""The tree ifcbfs shows (SPEC section 7): inodes, names, attributes and content. Plain Python.

Folders and bins are read lazily: a source folder when it is first looked into, a bin (header
and ADC, never pixels) when its folder is first looked into. Inode numbers are a hash of the
path in the tree, so they are the same after a remount of the same source with the same options.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

from ..core.bin import HDR_JSON, Bin, Entry
from ..core.errors import BinError
from ..core.settle import settled
from ..core.source import BinFiles, DataRoot, Folder, SourceUnreadable, depth_first
from ..service import RateLimitedLog, log_bad_bin
from .cache import ByteCache

log = logging.getLogger("ifcbfs")

ROOT_INO = 1
DIR, BIN, FILE = "dir", "bin", "file"
BLOCK_SIZE = 1 << 17  # st_blksize: most images fit one read
INLINE_LIMIT = 1 << 16  # images smaller than this are produced on the event loop (see is_cheap)


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


class Listing(NamedTuple):
    """What a folder of the tree holds, as read from the source."""

    mtime_ns: int
    dirs: dict[str, tuple[str, int]]  # name -> (its source folder, its mtime)
    bins: dict[str, BinFiles]  # name -> its raw files


class Node:
    """One inode: a source folder (DIR), a bin folder (BIN) or a file in a bin folder (FILE)."""

    __slots__ = ("ino", "parent", "name", "kind", "path", "size", "mtime_ns", "children",
                 "source", "files", "bin", "entry", "adapter", "_listing")

    def __init__(self, ino: int, parent: "Node | None", name: str, kind: str, path: str, mtime_ns: int):
        self.ino, self.parent, self.name, self.kind, self.path = ino, parent, name, kind, path
        self.mtime_ns = mtime_ns
        self.size = 0
        self.children: dict[str, Node] | None = None  # None until loaded
        self.source: str | None = None  # DIR: the source folder it mirrors
        self.files: BinFiles | None = None  # BIN: its raw files
        self.bin: Bin | None = None  # BIN: its loaded model; FILE: the bin model it was listed from
        self.entry: Entry | None = None  # FILE
        self.adapter = None  # free for the FUSE adapter (its prebuilt attributes)
        self._listing: tuple | None = None  # (children dict, its nodes as a tuple)

    @property
    def is_dir(self) -> bool:
        return self.kind != FILE

    @property
    def mode(self) -> int:
        return stat.S_IFDIR | 0o555 if self.is_dir else stat.S_IFREG | 0o444

    @property
    def blocks(self) -> int:
        return -(-self.size // 512)


def inode_of(path: str) -> int:
    """A stable inode number for a path in the tree (never 0 or the root's 1)."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return (int.from_bytes(digest, "little") & (2**63 - 1)) | 2


class Namespace:
    """The tree over one data root."""

    def __init__(self, root: DataRoot, options: Options = Options()):
        self.source = root
        self.options = options
        self.cache = ByteCache(options.cache_size)
        self.decodes = 0  # PNGs produced: tests and benchmarks check that listing makes none
        self._lock = threading.RLock()  # held only to publish, never while reading the source
        self._refreshing = threading.Lock()  # one refresh at a time; requests never take it
        self._flat: dict[str, Folder] = {}  # flat layout: the source folders the root was built from
        self._said = RateLimitedLog()  # bins found twice (flat layout), each said once
        self.bins_listed = self.bins_loaded = 0
        top = Node(ROOT_INO, None, "", DIR, "", _mtime(root.root))
        top.source = ""
        self.nodes: dict[int, Node] = {ROOT_INO: top}
        self.root = top

    # --- the questions FUSE asks -------------------------------------------------------
    def node(self, ino: int) -> Node:
        node = self.nodes.get(ino)
        if node is None:
            raise FsError(errno.ENOENT, f"no inode {ino}")
        return node

    def lookup(self, parent: int, name: str) -> Node:
        child = self.children(parent).get(name)
        if child is None:
            raise FsError(errno.ENOENT)
        return child

    def children(self, ino: int) -> dict[str, Node]:
        """The children of a folder by name, in name order; loads the folder when needed."""
        node = self.node(ino)
        if node.kind == FILE:
            raise FsError(errno.ENOTDIR)
        children = node.children
        return children if children is not None else self.load(node)

    def listing(self, ino: int) -> tuple[Node, ...]:
        """The children of a folder in name order, as a tuple (readdir asks for it in slices)."""
        children = self.children(ino)
        node = self.nodes[ino]
        cached = node._listing
        if cached is None or cached[0] is not children:
            cached = node._listing = (children, tuple(children.values()))
        return cached[1]

    def status(self) -> str:
        """Bins listed (in a listing so far) and loaded (header and ADC read), counted as the
        tree changes: the service status line asks every few seconds, in constant time."""
        return f"{self.bins_listed} bins listed, {self.bins_loaded} loaded"

    def is_loaded(self, ino: int) -> bool:
        node = self.nodes.get(ino)
        return node is None or node.kind == FILE or node.children is not None

    def is_cheap(self, node: Node) -> bool:
        """True when producing a file costs less than handing it to a worker thread (~100 us):
        `hdr.json`, or an image of one ROI under INLINE_LIMIT bytes (most images)."""
        if node.entry is None:
            return False
        image = node.entry.image
        if image is None:
            return node.name == HDR_JSON
        return node.size < INLINE_LIMIT and len(image.parts) == 1

    def read(self, ino: int) -> bytes:
        """The whole content of the file that inode `ino` is now."""
        return self.content(self.node(ino))

    def content(self, node: Node) -> bytes:
        """The whole content of a file, from the cache or produced now (decoding its pixels).

        A file node reads from the bin snapshot it was listed from, and the cache is keyed by
        the node (a refresh makes new nodes), so bytes always match the size that was listed.
        """
        if node.kind != FILE:
            raise FsError(errno.EISDIR)
        data = self.cache.get(node)
        if data is not None:
            return data
        try:
            data = node.bin.read(node.name)
        except SourceUnreadable as err:
            raise FsError(err.errno, f"{node.path}: {err}") from None
        except BinError as err:  # ImageMissing among them: gone since it was listed
            raise FsError(errno.EIO, f"{node.path}: {err}") from None
        if node.entry.image is not None:
            self.decodes += 1
        self.cache.put(node, data)
        return data

    # --- loading: read the source with no lock held, then publish under the lock ------------
    def load(self, node: Node) -> dict[str, Node]:
        """Load a folder's children (once; a refresh may replace them) and return them.

        The source is read with no lock held: a slow or hung source, or a link back into the
        mount, must never hold up another request. Only publishing takes the lock, and only if
        nothing was published meanwhile and the node still describes what was read."""
        while True:
            children = node.children
            if children is not None:
                return children
            files, flat = node.files, self._is_flat_root(node)
            if node.kind == BIN:
                read = self._read_bin(node.path, files)
            elif flat:
                folders, read = self._read_flat(None)
            else:
                read = self._read_dir(node.source)
            with self._lock:
                if self.nodes.get(node.ino) is not node:
                    raise FsError(errno.ENOENT, f"{node.path}: gone from the source")
                if node.children is None and node.files is files:
                    if node.kind == BIN:
                        self._publish_bin(node, read)
                    else:
                        if flat:
                            self._flat = folders
                        self._merge(node, read, [])

    def _is_flat_root(self, node: Node) -> bool:
        return node is self.root and self.options.layout == "flat"

    def _register(self, node: Node) -> None:
        self.nodes[node.ino] = node
        if node.kind == BIN:
            self.bins_listed += 1

    def _add(self, parent: Node, name: str, kind: str, mtime_ns: int) -> Node:
        path = f"{parent.path}/{name}" if parent.path else name
        ino = inode_of(path)
        while ino in self.nodes and self.nodes[ino].path != path:  # a 64-bit collision: never seen
            ino = (ino + 1) & (2**63 - 1) | 2
        node = Node(ino, parent, name, kind, path, mtime_ns)
        self._register(node)
        return node

    def _read_dir(self, folder: str) -> Listing:
        """One source folder as the tree shows it (reads the source; call with no lock held)."""
        try:
            found = self.source.scan(folder)
        except SourceUnreadable as err:
            raise FsError(err.errno, str(err)) from None
        dirs = {}
        for name in found.folders:
            sub = _join(folder, name)
            dirs[name] = (sub, _mtime(self.source.abspath(sub)))
        return Listing(found.mtime_ns, dirs, found.bins)

    def _read_flat(self, known: dict[str, Folder] | None) -> tuple[dict[str, Folder], Listing]:
        """Every bin of the source, for the root of the flat layout, and the source folders
        they were found in. Without `known` (those folders as last read) the whole source is
        walked; with it, only folders whose mtime changed are read again (and new sub-folders
        walked), as the mirror layout re-reads only changed folders."""
        if known is None:
            folders = {found.path: found for found in self.source.folders()}
        else:
            folders, gone = {}, []
            for path in sorted(known, key=depth_first):
                old = known[path]
                if any(path.startswith(g + "/") or not g for g in gone):
                    continue  # below a folder that is gone
                if _mtime(self.source.abspath(path)) == old.mtime_ns:
                    folders[path] = old
                    continue
                try:
                    new = folders[path] = self.source.scan(path)
                except SourceUnreadable:
                    gone.append(path)
                    continue
                gone += [_join(path, sub) for sub in old.folders if sub not in new.folders]
                for sub in new.folders:
                    if sub not in old.folders:
                        folders.update((f.path, f) for f in self.source.folders(_join(path, sub)))
        bins: dict[str, BinFiles] = {}
        for path in sorted(folders, key=depth_first):
            for name, files in folders[path].bins.items():
                if name not in bins:
                    bins[name] = files
                elif self._said.first_time(f"{name} in {path}"):
                    kept = bins[name].folder or "."
                    log.warning("bin %s is in both %s and %s: showing the one in %s", name, kept, path or ".", kept)
        root = folders.get("")
        return folders, Listing(root.mtime_ns if root else 0, {}, bins)

    def _merge(self, node: Node, listing: Listing, changes: list) -> None:
        """Make a folder's children what `listing` says (under the lock). Children still there
        keep their node; a bin not loaded yet takes its new files; the rest is forgotten."""
        kept = {}
        for name, child in (node.children or {}).items():
            files = listing.bins.get(name)
            if child.kind == DIR and name in listing.dirs or files and child.kind == BIN and files.folder == child.files.folder:
                kept[name] = child
            else:  # gone, or now something else (in the flat layout: the same bin id elsewhere)
                self.forget(child)
                changes.append(("entry", node.ino, name))
        fresh = {}
        for name, (sub, mtime_ns) in listing.dirs.items():
            child = kept.get(name)
            if child is None:
                child = self._add(node, name, DIR, mtime_ns)
                child.source = sub
            fresh[name] = child
        for name, files in listing.bins.items():
            child = kept.get(name)
            if child is None:
                child = self._add(node, name, BIN, files.mtime_ns)
                child.files = files
            elif child.children is None and child.files != files:
                child.files, child.mtime_ns, child.adapter = files, files.mtime_ns, None
                changes.append(("inode", child.ino))
            fresh[name] = child
        node.children = dict(sorted(fresh.items()))  # published whole: readers never see it half built
        node.mtime_ns, node.adapter = listing.mtime_ns, None
        changes.append(("inode", node.ino))

    def _read_bin(self, path: str, files: BinFiles) -> Bin:
        """A bin's model: header and ADC parsed (reads the source; call with no lock held).
        What is wrong with it is logged, once per bin however often it is read."""
        try:
            model = Bin.load(files, settled(files, time.time()))
        except SourceUnreadable as err:
            raise FsError(err.errno, str(err)) from None
        if model.problems:
            log_bad_bin(log, path, "damaged: " + "; ".join(model.problems))
        return model

    def _publish_bin(self, node: Node, model: Bin | None) -> dict[str, Node]:
        """Give a bin folder the files of `model` (under the lock); returns the children it had."""
        old = node.children
        children = {}
        for entry in model.entries if model else ():
            child = self._add(node, entry.name, FILE, node.files.mtime_ns)
            child.entry, child.size, child.bin = entry, entry.size, model
            children[entry.name] = child
        node.children, node.bin = children, model
        if old is None:
            self.bins_loaded += 1
        return old or {}

    # --- noticing change in the source ------------------------------------------------
    def refresh(self) -> list[tuple]:
        """Re-check every loaded folder and bin against the source; apply what changed.

        Returns what the kernel must forget: ("inode", ino) and ("entry", parent_ino, name).
        The source is read with no lock held (see `load`); one refresh runs at a time.
        """
        changes: list[tuple] = []
        with self._refreshing:
            with self._lock:
                loaded = [n for n in self.nodes.values() if n.children is not None]
            for node in loaded:
                if self.nodes.get(node.ino) is not node:
                    continue  # dropped by an earlier change in this pass
                if node.kind == BIN:
                    self._refresh_bin(node, changes)
                elif self._is_flat_root(node):
                    self._refresh_flat(node, changes)
                else:
                    self._refresh_dir(node, changes)
        return changes

    def _refresh_flat(self, node: Node, changes: list) -> None:
        known = self._flat
        folders, listing = self._read_flat(known)
        if folders.keys() == known.keys() and all(folders[p] is known[p] for p in known):
            return  # no source folder changed
        with self._lock:
            if self.nodes.get(node.ino) is node:
                self._flat = folders
                self._merge(node, listing, changes)

    def _refresh_dir(self, node: Node, changes: list) -> None:
        if _mtime(self.source.abspath(node.source)) == node.mtime_ns:
            return
        try:
            listing = self._read_dir(node.source)
        except FsError:
            listing = Listing(node.mtime_ns, {}, {})  # unreadable now: empty, and checked again
        with self._lock:
            if self.nodes.get(node.ino) is node:
                self._merge(node, listing, changes)

    def _refresh_bin(self, node: Node, changes: list) -> None:
        files = self.source.stat_bin(node.files)
        if files == node.files and (node.bin is None or node.bin.settled or not settled(files, time.time())):
            return  # unchanged, and (if it was loaded while growing) not settled yet
        if not any((files.hdr, files.adc, files.roi)):
            return  # gone: its folder's refresh removes it
        try:
            model = self._read_bin(node.path, files)
        except FsError:
            model = None
        with self._lock:
            if self.nodes.get(node.ino) is not node:
                return
            node.files, node.mtime_ns, node.adapter = files, files.mtime_ns, None
            old = self._publish_bin(node, model)
            for name, child in old.items():
                self.cache.discard(child)
                if name in node.children:
                    changes.append(("inode", child.ino))
                else:
                    self.forget(child)
                    changes.append(("entry", node.ino, name))
            changes.append(("inode", node.ino))

    def load_bin(self, path: str, files: BinFiles) -> Node:
        """The loaded folder node of one bin at `path` in the tree, built on its own (export
        uses it to work bin by bin in other processes); `forget` it when done."""
        node = Node(inode_of(path), self.root, path.rpartition("/")[2], BIN, path, files.mtime_ns)
        node.files = files
        with self._lock:
            self._register(node)
        try:
            self.load(node)
        except BaseException:
            self.forget(node)
            raise
        return node

    def forget(self, node: Node) -> None:
        """Drop a node and everything below it from the tree and the cache."""
        if self.nodes.get(node.ino) is node:
            del self.nodes[node.ino]
            if node.kind == BIN:
                self.bins_listed -= 1
                self.bins_loaded -= node.children is not None
        self.cache.discard(node)
        for child in (node.children or {}).values():
            self.forget(child)

    def drop_caches(self) -> None:
        """Forget decoded content (SIGHUP); the tree is re-checked by `refresh`."""
        self.cache.clear()


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0
