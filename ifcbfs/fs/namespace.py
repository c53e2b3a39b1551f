"""The tree ifcbfs shows (SPEC section 7): inodes, names, attributes and content. Plain Python.

Folders and bins are read lazily: a source folder when it is first looked into, a bin (header
and ADC, never pixels) when its folder is first looked into. Only folders and bins are kept as
nodes. What a bin folder holds comes from its model (`core.bin.Bin`), which is kept in an LRU
under a byte budget; the nodes of its files are made on demand. Inode numbers are a hash of the
folder or bin path with the low bits clear, and a file's inode is its bin's plus the file's code,
so any inode decodes to (bin, file) and a forgotten or evicted file answers again the same.

Views (`fs.views`: `by-class/`, `bins.csv`) sit at the root beside the source's folders. Their
folders (VDIR), files (VFILE) and symbolic links (LINK) come from the view's own model, and
are kept like folders: while the kernel holds them or their folder is loaded (fs.viewnodes).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from itertools import repeat
from operator import or_

from ..core.bin import Bin
from ..core.records import Entry
from ..core.errors import BinError
from ..core.settle import settled
from ..core.source import HELD_ONLY, BinFiles, DataRoot, NotHeld, SourceUnreadable
from ..logonce import RateLimitedLog, log_bad_bin
from .cache import ByteCache
from .nodes import (BIN, CODE_BITS, CODE_MASK, DIR, FILE, INLINE_LIMIT, KEPT, LINK, LISTINGS_KEPT, LIVE_SECONDS,
                    ROOT_INO, SUB, VDIR, VFILE, FsError, Node, Options, Rows, inode_of)
from .nodes import (BLOCK_SIZE, FOLDER_BLOCK_SIZE, RETRY_SECONDS, STATS_INO,  # noqa: F401 (the tree's names,
                    STATS_NAME, SWEEP_SECONDS)  # for its users)
from .refresh import Refresh, stamp_of_all
from .viewnodes import ViewNodes

log = logging.getLogger("ifcbfs")


class Namespace(Refresh, ViewNodes):
    """The tree over one data root."""

    def __init__(self, root: DataRoot, options: Options = Options(), index=None, views=()):
        self.source = root
        self.options = options
        self.index = index
        self.views = tuple(views)  # shown at the root (fs.views), unless a source name takes theirs
        self._view_tops: tuple = ()  # what the views showed at the root when last published
        self._products_version = root.products.version if root.products is not None else 0
        self.cache = ByteCache(options.cache_size)
        self.decodes = 0  # files (or zip ranges) produced from pixels: listing must make none
        self.bins_listed = 0  # bins in a folder listing so far
        self.bins_loaded = 0  # bins whose folder has been read at least once
        self.parses = 0  # bins parsed from the source (not taken from the index)
        self._lock = threading.RLock()  # held only to publish, never while reading the source
        self._refreshing = threading.Lock()  # one refresh at a time; requests never take it
        self._said = RateLimitedLog()  # bins found twice (flat layout), each said once
        top = Node(ROOT_INO, None, "", DIR, "", root.stamp(""))
        top.source = ""
        self.nodes: dict[int, Node] = {ROOT_INO: top}  # folders and bins
        self.root = top
        self._models: OrderedDict[int, Node] = OrderedDict()  # bins with a model, least recent first
        self._models_size = 0
        self._listings: OrderedDict[int, tuple] = OrderedDict()  # ino -> (model, nodes)
        self._rows: OrderedDict[int, tuple] = OrderedDict()  # ino -> (model, rows for readdir)
        self._orders: OrderedDict[int, tuple] = OrderedDict()  # folder ino -> (children, {ino: position})
        self._loading: dict[Node, threading.Event] = {}  # bins a thread is loading now
        self.file_mode = (stat.S_IFREG | 0o666) & ~options.umask  # the st_mode of every file of a bin
        self._live: set[Node] = set()  # bins re-checked at every refresh
        self._again: dict[Node, float] = {}  # bins kept without a product file that may read now: since when
        self._flat_folders: list[str] = []  # flat layout: the source folders its root was read from
        self._flat_stamp = 0
        self._swept = time.monotonic()  # when every stamp-less folder was last re-listed

    # --- the questions FUSE asks -------------------------------------------------------
    def node(self, ino: int) -> Node:
        node = self.nodes.get(ino)
        if node is not None:
            return node
        bin_node = self.nodes.get(ino & ~CODE_MASK)
        if bin_node is not None and bin_node.kind == BIN:
            found = self._inside(bin_node, ino & CODE_MASK)
            if found is not None:
                return found
        raise FsError(errno.ENOENT, f"no inode {ino}")

    def lookup(self, parent: int, name: str) -> Node:
        """The child `name` of a folder; in a bin folder, made from its model alone."""
        node = self.node(parent)
        if node.kind == BIN or node.kind == SUB:
            child = self._member(node, name)
        else:
            child = self.children(parent).get(name)
        if child is None:
            raise FsError(errno.ENOENT)
        return child

    def _member(self, parent: Node, name: str) -> Node | None:
        """The file or sub-folder `name` of a bin folder or of a sub-folder of it."""
        bin_node = parent.bin
        model = self.model(bin_node)
        entry = model.by_name.get(name if parent.kind == BIN else f"{parent.name}/{name}")
        if entry is not None:
            return self._file(bin_node, parent, model, entry)
        if parent.kind == BIN and name in model.folders():
            return self._sub(bin_node, model, name)
        return None

    def children(self, ino: int) -> dict[str, Node]:
        """The children of a folder by name, in name order; loads the folder when needed."""
        node = self.node(ino)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        if node.kind in (DIR, VDIR):
            children = node.children
            if children is not None:
                return children
            return self._load_dir(node) if node.kind == DIR else self._load_view(node)
        return {child.name: child for child in self.listing(ino)}

    def listing(self, ino: int) -> tuple[Node, ...]:
        """The children of a folder in name order, as a tuple (readdir asks for it in slices)."""
        return self._per_version(ino, self._listings, self._nodes_of)

    def rows(self, ino: int) -> "Rows":
        """A folder's children for readdir, in name order, as columns (no node per file)."""
        return self._per_version(ino, self._rows, self._rows_of)

    def _per_version(self, ino: int, kept: OrderedDict, make):
        """make(node, version) for a folder, made once per version of the folder (its children, or
        its bin's model) and kept for the last few folders; loads the folder when needed."""
        node = self.node(ino)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        version = self.children(ino) if node.kind in (DIR, VDIR) else self.model(node.bin)
        with self._lock:  # (read-ahead threads make them too)
            found = kept.get(ino)
            if found is not None and found[0] is version:
                kept.move_to_end(ino)
                return found[1]
        made = make(node, version)
        with self._lock:
            kept[ino] = (version, made)
            while len(kept) > LISTINGS_KEPT:
                kept.popitem(last=False)
        return made

    def _nodes_of(self, node: Node, version) -> tuple[Node, ...]:
        return tuple(version.values()) if node.kind in (DIR, VDIR) else tuple(self._members(node, version))

    def _rows_of(self, node: Node, version) -> "Rows":
        listing = version.listing() if node.kind == BIN else None
        if listing is not None and listing.flat and not version.mtimes:  # files alike but for name and size
            return Rows(listing.name_list(), list(map(or_, repeat(node.ino), listing.codes)), listing.sizes,
                        None, None, None, node)
        children = self.listing(node.ino)
        return Rows([os.fsencode(c.name) for c in children], [c.ino for c in children],
                    [c.size for c in children], [self.mode(c) for c in children],
                    [c.mtime_ns for c in children], [c if c.kind in KEPT else c.bin for c in children], None)

    def mode(self, node: Node) -> int:
        """The st_mode shown for a node: its type and permissions less the `umask` option."""
        return node.mode & ~self.options.umask

    def is_loaded(self, ino: int) -> bool:
        """True when answering about `ino` reads nothing from the source."""
        node = self.nodes.get(ino) or self.nodes.get(ino & ~CODE_MASK)
        if node is None or node.kind in (VFILE, LINK):
            return True  # unknown (the answer, ENOENT, costs nothing), or made whole when listed
        return node.model is not None if node.kind == BIN else node.children is not None

    def is_cheap(self, node: Node) -> bool:
        """True when producing a file costs less than handing it to a worker thread (~100 us)."""
        return node.entry is not None and node.model is not None and node.model.is_cheap(node.entry, INLINE_LIMIT)

    def read(self, ino: int) -> bytes:
        """The whole content of the file that inode `ino` is now."""
        return self.content(self.node(ino))

    def cached(self, node: Node) -> bytes | None:
        """A file's content if it is in the cache (nothing is read or produced)."""
        return self.cache.get((node.ino, node.model))

    def content(self, node: Node) -> bytes:
        """The whole content of a file, from the cache or produced now (decoding its pixels).

        A file node reads from the bin model it was listed from, and the cache is keyed by that
        model, so bytes always match the size that was listed.
        """
        if node.kind == VFILE:
            return self._view_content(node)
        if node.kind != FILE:
            raise FsError(errno.EISDIR)
        key = (node.ino, node.model)
        data = self.cache.get(key)
        if data is not None:
            return data
        data = self._produce(node, node.model.read, node.entry)
        if not node.model.is_ranged(node.entry):  # (a ranged record may be larger than the cache)
            self.cache.put(key, data)
        return data

    def held_content(self, node: Node) -> bytes | None:
        """The content of a file `is_cheap` found cheap, produced without waiting on a network;
        None when that would wait (a remote source dropped its bytes since): produce it in a
        worker thread then."""
        held = HELD_ONLY.set(True)
        try:
            return self.content(node)
        except NotHeld:
            return None
        finally:
            HELD_ONLY.reset(held)

    def is_ranged(self, node: Node) -> bool:
        """True for a file read by range (`read_range`): never produced or cached whole."""
        return node.entry is not None and node.model is not None and node.model.is_ranged(node.entry)

    def read_range(self, node: Node, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) of a file, from the bin model it was listed from."""
        if node.kind != FILE:
            raise FsError(errno.EISDIR)
        return self._produce(node, node.model.read_range, node.entry, offset, length)

    def pieces(self, node: Node, size: int = 1 << 22):
        """The content of a file in pieces of at most `size` bytes (a ranged one is never whole)."""
        if not self.is_ranged(node):
            yield self.content(node)
            return
        for offset in range(0, node.size, size):
            yield self.read_range(node, offset, size)

    def _produce(self, node: Node, produce, *args) -> bytes:
        """Call the model to produce bytes of a file, with errors as errnos; count decodes."""
        try:
            data = produce(*args)
        except SourceUnreadable as err:
            raise FsError(err.errno, f"{node.path}: {err}") from None
        except BinError as err:  # ImageMissing among them: gone since it was listed
            raise FsError(errno.EIO, f"{node.path}: {err}") from None
        if node.model.decodes(node.entry):
            self.decodes += 1
        return data

    # --- the kernel's references ---------------------------------------------------------
    def looked_up(self, node: Node) -> None:
        """The kernel took a reference to `node` (a lookup or a readdirplus entry)."""
        held = node if node.kind in KEPT and node.kind != BIN else node.bin
        held.lookups += 1

    def forget(self, ino: int, count: int) -> None:
        """The kernel dropped `count` references to `ino`. A bin nobody holds leaves memory, and
        so does what a folder nobody holds has listed (the kernel forgets children first)."""
        held = self.nodes.get(ino) or self.nodes.get(ino & ~CODE_MASK)
        if held is None:
            return
        held.lookups = max(0, held.lookups - count)
        if held.lookups:
            return
        with self._lock:
            if held.kind == BIN:
                self._unload(held)
                held = held.parent
            while held is not None and held is not self.root and held.lookups == 0 \
                    and held.children is not None and not self._held_below(held):
                for child in held.children.values():
                    self._drop(child)
                held.children = None
                self._listings.pop(held.ino, None)
                self._rows.pop(held.ino, None)
                self._orders.pop(held.ino, None)
                held = held.parent

    def _held_below(self, node: Node) -> bool:
        return any(child.lookups or (child.kind in (DIR, VDIR) and child.children and self._held_below(child))
                   for child in (node.children or {}).values())

    # --- loading --------------------------------------------------------------------
    def model(self, bin_node: Node) -> Bin:
        """The bin's model: kept, from the index, or parsed now (outside the tree's lock). A
        bin being loaded by another thread (a read-ahead) is waited for, not loaded twice."""
        model = bin_node.model
        if model is not None:
            with self._lock:
                if bin_node.ino in self._models:
                    self._models.move_to_end(bin_node.ino)
            return model
        with self._lock:
            if bin_node.model is not None:  # (loaded by another thread since)
                return bin_node.model
            loading = self._loading.get(bin_node)
            if loading is None:
                self._loading[bin_node] = threading.Event()
        if loading is not None:
            loading.wait()
            if bin_node.model is not None:
                return bin_node.model
            return self._load_now(bin_node)  # (it failed there, or changed since: load it here)
        try:
            return self._load_now(bin_node)
        finally:
            with self._lock:
                self._loading.pop(bin_node).set()

    def _load_now(self, bin_node: Node) -> Bin:
        files = bin_node.files
        model = self.bin_model(bin_node.path, files)
        with self._lock:
            if bin_node.files is files and bin_node.model is None and self.nodes.get(bin_node.ino) is bin_node:
                self._keep(bin_node, model)  # (not a bin a refresh has dropped meanwhile)
            return bin_node.model or model

    def bins_next(self, folder: Node, count: int) -> list[Node]:
        """Up to `count` bins a walk that has just opened `folder` opens next, in name order, that
        are neither in memory nor being loaded (for read-ahead): after a bin, the bins after it
        in its folder; in a folder of bins, its first ones."""
        if folder.kind == BIN:
            parent = folder.parent
            if parent is None or parent.children is None:
                return []
            at = self._per_version(parent.ino, self._orders, self._order_of).get(folder.ino)
            if at is None:
                return []
            nodes, start = self.listing(parent.ino), at + 1
        elif folder.kind == DIR and folder.children is not None:
            nodes, start = self.listing(folder.ino), 0
        else:
            return []
        return [n for n in nodes[start:start + count] if n.kind == BIN and n.model is None and n not in self._loading]

    def _order_of(self, node: Node, version) -> dict[int, int]:
        return {child.ino: at for at, child in enumerate(self.listing(node.ino))}

    def bin_model(self, path: str, files: BinFiles) -> Bin:
        """A bin's model from the index, or parsed (reads the source: call with no lock held).
        What is wrong with it is logged, once per bin however often it is read."""
        final = settled(files, time.time())
        model = self.index.get(path, files) if self.index is not None else None
        if model is not None and (model.settled or not final):
            self._said_products(path, model)
            return model
        self.parses += 1
        try:
            model = Bin.load(files, self.options.stitch, self.options.mosaic, self.options.zip, final,
                             self.options.blobs)
        except SourceUnreadable as err:
            raise FsError(err.errno, str(err)) from None
        if model.problems:
            log_bad_bin(log, path, "damaged: " + "; ".join(model.problems))
        self._said_products(path, model)
        if self.index is not None and model.product_missing is None and not model.product_again:
            self.index.put(path, files, model)  # (installing h5py must show them; a passing failure is tried again)
        return model

    def _said_products(self, path: str, model: Bin) -> None:
        """Log what the bin's products lack: once per bin, and a missing package once in all."""
        if model.product_problems:
            log_bad_bin(log, f"{path} products", "; ".join(model.product_problems))
        if model.product_missing:
            log_bad_bin(log, *model.product_missing.split(": ", 1))

    def _keep(self, bin_node: Node, model: Bin) -> None:
        if not bin_node.listed:
            bin_node.listed = True
            self.bins_loaded += 1
        bin_node.model = model
        self._models[bin_node.ino] = bin_node
        self._models_size += model.footprint
        if time.time_ns() - bin_node.files.mtime_ns < LIVE_SECONDS * 10**9:
            self._live.add(bin_node)
        if model.product_again:  # a refresh loads it again (see nodes.RETRY_SECONDS)
            self._again[bin_node] = time.monotonic()
            self._live.add(bin_node)
        else:
            self._again.pop(bin_node, None)
        while self._models_size > self.options.bin_cache and len(self._models) > 1:
            _, oldest = self._models.popitem(last=False)
            self._again.pop(oldest, None)
            self._models_size -= oldest.model.footprint
            oldest.model = None

    def _unload(self, bin_node: Node) -> None:
        self._again.pop(bin_node, None)
        if self._models.pop(bin_node.ino, None) is not None:
            self._models_size -= bin_node.model.footprint
        bin_node.model = None

    def _members(self, parent: Node, model: Bin) -> list[Node]:
        """The nodes of a bin folder (or of a sub-folder of it), in name order."""
        bin_node = parent.bin
        prefix = "" if parent.kind == BIN else parent.name + "/"
        nodes, subs = [], set()
        for entry in model.entries:
            if not entry.name.startswith(prefix):
                continue
            rest = entry.name[len(prefix):]
            sub, slash, _ = rest.partition("/")
            if slash:
                if sub not in subs:
                    subs.add(sub)
                    nodes.append(self._sub(bin_node, model, sub))
            else:
                nodes.append(self._file(bin_node, parent, model, entry))
        return sorted(nodes, key=lambda n: n.name)

    def _inside(self, bin_node: Node, code: int) -> Node | None:
        """The file or sub-folder with `code` in a bin folder (loading the bin if needed)."""
        try:
            model = self.model(bin_node)
        except FsError:
            return None
        entry = model.by_code.get(code)
        if entry is not None:
            head, slash, _ = entry.name.rpartition("/")
            parent = self._sub(bin_node, model, head) if slash else bin_node
            return self._file(bin_node, parent, model, entry)
        sub = model.folder_of_code(code)
        return self._sub(bin_node, model, sub) if sub is not None else None

    def _file(self, bin_node: Node, parent: Node, model: Bin, entry: Entry) -> Node:
        node = Node(bin_node.ino | entry.code, parent, entry.name.rpartition("/")[2], FILE,
                    f"{bin_node.path}/{entry.name}", model.mtime_of(entry) or bin_node.mtime_ns)
        node.model, node.entry, node.size = model, entry, entry.size
        return node

    def _sub(self, bin_node: Node, model: Bin, name: str) -> Node:
        node = Node(bin_node.ino | model.folder_code(name), bin_node, name, SUB,
                    f"{bin_node.path}/{name}", bin_node.mtime_ns)
        node.model = model
        return node

    def _add(self, parent: Node, name: str, kind: str, mtime_ns: int) -> Node:
        path = f"{parent.path}/{name}" if parent.path else name
        ino = inode_of(path)
        while ino in self.nodes and self.nodes[ino].path != path:  # a 64-bit collision: never seen
            ino = (ino + (1 << CODE_BITS)) & (2**63 - 1)
        old = self.nodes.get(ino)
        if old is not None and old.kind == kind:
            return old  # a re-read folder keeps its nodes (and what the kernel holds of them)
        node = Node(ino, parent, name, kind, path, mtime_ns)
        self.nodes[ino] = node
        return node

    def _bin_node(self, parent: Node, files: BinFiles) -> Node:
        node = self._add(parent, str(files.bin_id), BIN, files.mtime_ns)
        if node.files is None:
            node.files = files
            self.bins_listed += 1
        return node

    def _read_dir(self, node: Node) -> tuple[int, dict[str, int], list[tuple[str, BinFiles]]]:
        """What a folder holds in the source: (its stamp, sub-folder stamps, bins). The flat root
        holds every bin; its stamp then sums every source folder's, so any change shows."""
        if node is self.root and self.options.layout == "flat":
            found, stamps = [], []
            for folder in self.source.folders():
                stamps.append((folder.path, folder.mtime_ns))
                found.extend(folder.bins.items())
            self._flat_folders = [path for path, _ in stamps]
            return stamp_of_all(stamps), {}, found
        known = frozenset(name for name, child in (node.children or {}).items() if child.kind == DIR)
        folder = self.source.scan(node.source, known)
        subs = {name: self.source.stamp(f"{node.source}/{name}" if node.source else name) for name in folder.folders}
        return folder.mtime_ns, subs, list(folder.bins.items())

    def _load_dir(self, node: Node) -> dict[str, Node]:
        try:
            stamp, folders, found = self._read_dir(node)
        except SourceUnreadable as err:
            raise FsError(err.errno, str(err)) from None
        tops = self._tops() if node is self.root else ()
        with self._lock:
            if node.children is None:
                self._set_stamp(node, stamp)
                node.children = self._publish_dir(node, folders, found, tops)
                node.changed = time.monotonic()
            return node.children

    def _stamp_of(self, node: Node) -> int:
        """The folder's change stamp now (the flat root's covers every source folder)."""
        if node is self.root and self.options.layout == "flat":
            return stamp_of_all([(f, self.source.stamp(f)) for f in self._flat_folders])
        return self.source.stamp(node.source)

    def _set_stamp(self, node: Node, stamp: int) -> None:
        if node is self.root and self.options.layout == "flat":
            self._flat_stamp = stamp
        elif stamp:
            node.mtime_ns = stamp

    def _publish_dir(self, node: Node, folders: dict[str, int], found, tops: tuple = ()) -> dict[str, Node]:
        children: dict[str, Node] = {}
        for name, stamp in folders.items():
            sub = f"{node.source}/{name}" if node.source else name
            child = self._add(node, name, DIR, stamp)
            child.source = sub
            children[name] = child
        for name, files in found:
            if name in children:
                kept = children[name].files.folder or "."
                if self._said.first_time(f"{name} {files.folder}"):
                    log.warning("bin %s is in both %s and %s: showing the one in %s", name, kept, files.folder or ".", kept)
                continue
            children[name] = self._bin_node(node, files)
        if node is self.root:
            self._with_views(children, tops)
        return dict(sorted(children.items()))

    def stats(self) -> bytes:
        """The stats file: the daemon's counters as JSON (decodes: PNGs produced; parses: bins
        parsed rather than taken from the index)."""
        index = self.index
        counters = {
            "decodes": self.decodes, "parses": self.parses, "bins_listed": self.bins_listed,
            "index_hits": index.hits if index is not None else 0,
            "index_misses": index.misses if index is not None else 0,
            "index_queue": index.queued() if index is not None else 0,
            "bins_in_memory": len(self._models), "bin_cache_bytes": self._models_size,
            "cache_bytes": self.cache.used,
        }
        return (json.dumps(counters, indent=1) + "\n").encode()

    def status(self) -> str:
        """Bins listed (in a folder listing so far) and loaded (header and ADC read), counted as
        the tree changes: the service status line asks every few seconds, in constant time."""
        indexed = f", {self.index.records} in the index" if self.index is not None else ""
        return f"{self.bins_listed} bins listed, {self.bins_loaded} loaded{indexed}"

    def _drop(self, node: Node) -> None:
        """Take a folder or bin (and everything below it) out of the tree."""
        if self.nodes.get(node.ino) is node:  # (not a new node of another kind at its name)
            del self.nodes[node.ino]
        if node.kind == BIN:
            self._unload(node)
            self._live.discard(node)
            self.bins_listed -= 1
            self.bins_loaded -= node.listed
        for child in (node.children or {}).values():
            self._drop(child)

    # --- export -------------------------------------------------------------------------
    def load_bin(self, path: str, files: BinFiles) -> Node:
        """The node of one bin at `path` in the tree, loaded on its own (export uses it to work
        bin by bin in other processes); `release` it when done."""
        node = Node(inode_of(path), self.root, path.rpartition("/")[2], BIN, path, files.mtime_ns)
        node.files = files
        self.nodes[node.ino] = node
        self.bins_listed += 1  # (release takes it back off)
        try:
            self.model(node)
        except BaseException:
            self.release(node)
            raise
        return node

    def release(self, node: Node) -> None:
        """Drop a bin loaded by `load_bin`, and its produced files."""
        with self._lock:
            self._drop(node)

    def drop_caches(self) -> None:
        """Forget decoded content (SIGHUP); the tree is re-checked by `refresh`."""
        self.cache.clear()
