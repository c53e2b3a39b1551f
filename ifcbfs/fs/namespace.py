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
from dataclasses import dataclass

from ..core.bin import HDR_JSON, Bin, Entry
from ..core.errors import BinError
from ..core.source import BinFiles, DataRoot, SourceUnreadable
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
        self.bin: Bin | None = None  # FILE: the bin model it was listed from
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
        self._lock = threading.RLock()
        top = Node(ROOT_INO, None, "", DIR, "", root.stamp(""))
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

    def bins_seen(self) -> int:
        """How many bins the tree has come across so far (for the service status line)."""
        return sum(1 for node in list(self.nodes.values()) if node.kind == BIN)

    def is_loaded(self, ino: int) -> bool:
        node = self.nodes.get(ino)
        return node is None or node.kind == FILE or node.children is not None

    def is_cheap(self, node: Node) -> bool:
        """True when producing a file costs less than handing it to a worker thread (~100 us):
        `hdr.json`, or an image of one ROI under INLINE_LIMIT bytes (most images) whose bytes
        the source holds (a local file; for a remote one, bytes it has already fetched)."""
        if node.entry is None:
            return False
        image = node.entry.image
        if image is None:
            return node.name == HDR_JSON
        if node.size >= INLINE_LIMIT or len(image.parts) != 1:
            return False
        files, part = node.bin.files, image.parts[0]
        return files.roi is not None and files.source.holds(files.roi, part.start, part.width * part.height)

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

    # --- loading --------------------------------------------------------------------
    def load(self, node: Node) -> dict[str, Node]:
        """Load a folder's children (once; a refresh may unload them) and return them."""
        with self._lock:
            if node.children is None:
                if node.kind == BIN:
                    self._load_bin(node)
                elif node is self.root and self.options.layout == "flat":
                    self._load_flat(node)
                else:
                    self._load_dir(node)
            return node.children

    def _add(self, parent: Node, name: str, kind: str, mtime_ns: int) -> Node:
        path = f"{parent.path}/{name}" if parent.path else name
        ino = inode_of(path)
        while ino in self.nodes and self.nodes[ino].path != path:  # a 64-bit collision: never seen
            ino = (ino + 1) & (2**63 - 1) | 2
        node = Node(ino, parent, name, kind, path, mtime_ns)
        self.nodes[ino] = node
        return node

    def _bin_node(self, parent: Node, files: BinFiles) -> Node:
        node = self._add(parent, str(files.bin_id), BIN, files.mtime_ns)
        node.files = files
        return node

    def _load_dir(self, node: Node) -> None:
        node.children = self._scan_dir(node)

    def _scan_dir(self, node: Node) -> dict[str, Node]:
        try:
            folder = self.source.scan(node.source)
        except SourceUnreadable as err:
            raise FsError(err.errno, str(err)) from None
        children = {}
        for name in folder.folders:
            sub = f"{node.source}/{name}" if node.source else name
            child = self._add(node, name, DIR, self.source.stamp(sub))
            child.source = sub
            children[name] = child
        for name, files in folder.bins.items():
            children[name] = self._bin_node(node, files)
        node.mtime_ns, node.adapter = folder.mtime_ns, None
        return dict(sorted(children.items()))

    def _load_flat(self, node: Node) -> None:
        children: dict[str, Node] = {}
        for files in self.source.walk():
            name = str(files.bin_id)
            if name in children:
                kept = children[name].files.folder or "."
                log.warning("bin %s is in both %s and %s: showing the one in %s", name, kept, files.folder or ".", kept)
                continue
            children[name] = self._bin_node(node, files)
        node.children = dict(sorted(children.items()))

    def _load_bin(self, node: Node) -> None:
        try:
            model = Bin.load(node.files)
        except SourceUnreadable as err:
            raise FsError(err.errno, str(err)) from None
        if model.skipped_lines:
            log.info("%s: %d ADC lines do not parse and are skipped", node.files.bin_id, model.skipped_lines)
        children = {}
        mtime_ns = node.files.mtime_ns
        for entry in model.entries:
            child = self._add(node, entry.name, FILE, mtime_ns)
            child.entry, child.size, child.bin = entry, entry.size, model
            children[entry.name] = child
        node.children = children

    # --- noticing change in the source ------------------------------------------------
    def refresh(self) -> list[tuple]:
        """Re-check every loaded folder and bin against the source; apply what changed.

        Returns what the kernel must forget: ("inode", ino) and ("entry", parent_ino, name).
        """
        changes: list[tuple] = []
        with self._lock:
            for node in [n for n in self.nodes.values() if n.children is not None]:
                if node.ino not in self.nodes:
                    continue  # dropped by an earlier change in this pass
                if node.kind == BIN:
                    self._refresh_bin(node, changes)
                elif node is not self.root or self.options.layout == "mirror":
                    self._refresh_dir(node, changes)
        return changes

    def _refresh_dir(self, node: Node, changes: list) -> None:
        stamp = self.source.stamp(node.source)
        if stamp and stamp == node.mtime_ns:
            return
        old = node.children
        try:
            fresh = self._scan_dir(node)
        except FsError as err:
            if err.errno == errno.EIO:
                return  # the source did not answer (an object store's outage): try again later
            fresh = {}
        for name, child in old.items():
            new = fresh.get(name)
            if new is None or new.kind != child.kind:
                self.forget(child)
                changes.append(("entry", node.ino, name))
            else:
                fresh[name] = child  # keep the node; a loaded bin is re-checked by _refresh_bin
                if child.kind == BIN and child.children is None and new.files != child.files:
                    child.files, child.mtime_ns, child.adapter = new.files, new.mtime_ns, None
                    changes.append(("inode", child.ino))
                self.nodes[child.ino] = child
        node.children = fresh  # published whole: readers never see it half built
        changes.append(("inode", node.ino))

    def _refresh_bin(self, node: Node, changes: list) -> None:
        files = self.source.stat_bin(node.files)
        if files == node.files:
            return
        if not any((files.hdr, files.adc, files.roi)):
            return  # gone: its folder's refresh removes it
        old = node.children
        node.files, node.mtime_ns, node.adapter = files, files.mtime_ns, None
        node.children = None
        try:
            self._load_bin(node)
        except FsError:
            node.children = {}
        for name, child in old.items():
            self.cache.discard(child)
            new = node.children.get(name)
            if new is None:
                self.forget(child)
                changes.append(("entry", node.ino, name))
            else:
                changes.append(("inode", child.ino))
        changes.append(("inode", node.ino))

    def load_bin(self, path: str, files: BinFiles) -> Node:
        """The loaded folder node of one bin at `path` in the tree, built on its own (export
        uses it to work bin by bin in other processes); `forget` it when done."""
        node = Node(inode_of(path), self.root, path.rpartition("/")[2], BIN, path, files.mtime_ns)
        node.files = files
        self.nodes[node.ino] = node
        try:
            self.load(node)
        except BaseException:
            self.forget(node)
            raise
        return node

    def forget(self, node: Node) -> None:
        """Drop a node and everything below it from the tree and the cache."""
        self.nodes.pop(node.ino, None)
        self.cache.discard(node)
        for child in (node.children or {}).values():
            self.forget(child)

    def drop_caches(self) -> None:
        """Forget decoded content (SIGHUP); the tree is re-checked by `refresh`."""
        self.cache.clear()

