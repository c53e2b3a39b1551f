"""pyfuse3 Operations over the namespace: translation, errno mapping, threads. Nothing else."""
from __future__ import annotations

import errno
import functools
import logging
import os
from stat import S_ISDIR

import pyfuse3
import trio

from ..logonce import log_bad_bin
from ..service import trim_memory
from .namespace import (BLOCK_SIZE, CODE_MASK, FILE, FOLDER_BLOCK_SIZE, ROOT_INO, STATS_INO, STATS_NAME, FsError,
                        Namespace, Node)

log = logging.getLogger("ifcbfs")
TIMEOUT = 3600.0  # entry/attr cache time: the watcher invalidates what changes
STATS = os.fsencode(STATS_NAME)
OPENED_LIMIT = 100_000
TRIM_EVERY = 4  # bins parsed between two trims of the C heap (each ~0.3 ms; a parse ~10 ms)
READ_AHEAD = 1  # bins of a folder loaded ahead of a walk, while it looks at the one it opened
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT


def _guard(handler):
    """Turn FsError into its errno and any unexpected exception into EIO plus one log line."""
    name = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self, *args):
        if self.debug:
            log.debug("%s%r", name, args[:-1] if args and isinstance(args[-1], pyfuse3.RequestContext) else args)
        try:
            return await handler(self, *args)
        except pyfuse3.FUSEError:
            raise
        except FsError as err:
            if err.errno not in (errno.ENOENT, errno.ENODATA):
                log_bad_bin(log, self.describe(args, folder=True), f"{name}: {err}")
            raise pyfuse3.FUSEError(err.errno) from None
        except Exception as err:  # the daemon must survive anything a bin can do
            log_bad_bin(log, self.describe(args, folder=True), f"{name} {self.describe(args)} failed: {type(err).__name__}: {err}")
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _read_only(name):
    async def refuse(self, *args):
        raise pyfuse3.FUSEError(errno.EROFS)

    refuse.__name__ = name
    return refuse


class Operations(pyfuse3.Operations):
    """The read-only filesystem: every answer comes from the namespace."""

    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, ns: Namespace, workers: int = 2, debug: bool = False):
        super().__init__()
        self.ns = ns
        self.uid, self.gid = ns.options.uid, ns.options.gid
        self.debug = debug
        self.limiter = trio.CapacityLimiter(workers)
        self.refreshing = trio.CapacityLimiter(1)  # re-checks of the source: never a reader's thread
        self._opened: dict[int, pyfuse3.FileInfo] = {}  # images: fh is the inode, one FileInfo for all opens
        self._pinned: dict[int, Node | bytes] = {}  # hdr.json/adc.csv handles: the version each open
        # reads; stats file handles: the counters when it was opened
        self._handles = 1 << 63  # their fh numbers, above every inode number
        self._trimmed = 0  # ns.parses at the last trim of the C heap
        self._ahead_in, self._ahead_out = trio.open_memory_channel(16)  # bins to load ahead (see read_ahead)
        self._ahead = READ_AHEAD if ns.source.source.reads_ahead else 0  # (s3 readahead=0: only what is asked)

    def _node_of(self, args) -> Node | None:
        """The folder or bin a request is about (a file's bin), without loading anything."""
        for arg in args:
            if isinstance(arg, int):
                node = self._pinned.get(arg) or self.ns.nodes.get(arg)
                if node is None and self.ns.is_loaded(arg):
                    try:
                        node = self.ns.node(arg)
                    except FsError:
                        pass
                node = node or self.ns.nodes.get(arg & ~CODE_MASK)
                if node is not None:
                    return node
        return None

    def describe(self, args, folder: bool = False) -> str:
        """The path a request is about, for its log line; with `folder`, the bin folder of a
        file (problems are logged once per bin)."""
        node = self._node_of(args)
        if node is not None and folder and node.kind == FILE:
            node = node.bin
        return (node.path or "/") if node else repr(args[:2])

    def _template(self) -> pyfuse3.EntryAttributes:
        """Attributes with what every node shares set (owner, timeouts, block size)."""
        attr = pyfuse3.EntryAttributes()
        attr.entry_timeout = attr.attr_timeout = TIMEOUT
        attr.st_nlink = 1
        attr.st_uid, attr.st_gid = self.uid, self.gid
        attr.st_blksize = BLOCK_SIZE
        return attr

    def attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        """A node's attributes, made anew each time (none is kept per file)."""
        attr = self._template()
        attr.st_ino = node.ino
        attr.st_mode = self.ns.mode(node)
        attr.st_size = node.size
        attr.st_blocks = node.blocks
        if node.is_dir:
            attr.st_blksize = FOLDER_BLOCK_SIZE
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = node.mtime_ns
        return attr

    def _stats_attributes(self) -> pyfuse3.EntryAttributes:
        """The stats file: read-only, its size whatever it holds now (reads bypass the page cache)."""
        attr = self._template()
        attr.attr_timeout = 0
        attr.st_ino, attr.st_mode = STATS_INO, self.ns.file_mode & 0o100444
        attr.st_size = len(self.ns.stats())
        return attr

    def _entry(self, node: Node) -> pyfuse3.EntryAttributes:
        """Attributes for a reply that gives the kernel a reference to the node (lookup)."""
        self.ns.looked_up(node)
        return self.attributes(node)

    async def _ask(self, question, ino: int, *args):
        """ns.question(ino, ...): at once when `ino` is in memory, else in a worker thread (it
        reads the source)."""
        if self.ns.is_loaded(ino):
            return question(ino, *args)
        return await trio.to_thread.run_sync(self._load, question, ino, *args, limiter=self.limiter)

    def _load(self, question, ino, *args):
        """question(ino, ...) in a worker thread. Every few bins parsed, the C heap's free pages go
        back to the system: a long listing would otherwise leave the daemon's memory creeping up."""
        try:
            return question(ino, *args)
        finally:
            if self.ns.parses >= self._trimmed + TRIM_EVERY:
                self._trimmed = self.ns.parses
                trim_memory()

    async def _node(self, ino: int) -> Node:
        """The node of an inode; a file of a bin that is not in memory is loaded in a thread."""
        return await self._ask(self.ns.node, ino)

    @_guard
    async def lookup(self, parent_inode, name, ctx=None):
        if name == b".":
            return self._entry(self.ns.node(parent_inode))
        if name == b"..":
            node = self.ns.node(parent_inode)
            return self._entry(node.parent or node)
        if name == STATS and parent_inode == ROOT_INO:
            return self._stats_attributes()
        return self._entry(await self._ask(self.ns.lookup, parent_inode, os.fsdecode(name)))

    async def forget(self, inode_list):
        for inode, count in inode_list:
            self.ns.forget(inode, count)

    @_guard
    async def getattr(self, inode, ctx=None):
        if inode == STATS_INO:
            return self._stats_attributes()
        return self.attributes(await self._node(inode))

    @_guard
    async def opendir(self, inode, ctx):
        node = await self._node(inode)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        await self._ask(self.ns.rows, inode)
        if self._ahead:
            self._read_ahead_of(node)
        return inode

    def _read_ahead_of(self, folder: Node) -> None:
        """Queue the bins a walk that opened `folder` opens next (see read_ahead)."""
        try:
            ahead = self.ns.bins_next(folder, self._ahead)
        except FsError:  # (a refresh dropped the folder meanwhile: nothing to read ahead)
            return
        for bin_node in ahead:
            try:
                self._ahead_in.send_nowait(bin_node)
            except trio.WouldBlock:
                break

    async def read_ahead(self) -> None:
        """Load the bins opendir queues and make their listings, one at a time in a worker thread,
        so that a walk (find, du, rsync, a loader's scan) finds the next bin folder ready while it
        looks at this one: the parse runs beside the walker instead of in its way. Run it in the
        daemon's nursery."""
        async for node in self._ahead_out:
            if node.model is None:
                try:
                    await trio.to_thread.run_sync(self._load, self.ns.rows, node.ino, limiter=self.limiter)
                except Exception:  # the walk itself will ask again, and say what is wrong
                    pass

    @_guard
    async def readdir(self, fh, start_id, token):
        rows = await self._ask(self.ns.rows, fh)
        names, inos, sizes = rows.names, rows.inos, rows.sizes
        attr = self._template()  # one object for every entry: readdir_reply copies it
        reply = pyfuse3.readdir_reply
        bin_node = rows.bin
        if bin_node is not None:  # files of one bin: only inode and size differ
            attr.st_mode = self.ns.file_mode
            attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = bin_node.mtime_ns
            index = start_id
            for index in range(start_id, len(names)):
                size = sizes[index]
                attr.st_ino, attr.st_size, attr.st_blocks = inos[index], size, -(-size // 512)
                if not reply(token, names[index], attr, index + 1):
                    break
            else:
                index = len(names)
            bin_node.lookups += index - start_id  # a readdirplus entry is a reference, like a lookup
            return
        modes, mtimes, held = rows.modes, rows.mtimes, rows.held
        for index in range(start_id, len(names)):
            size = sizes[index]
            attr.st_ino, attr.st_mode, attr.st_size, attr.st_blocks = inos[index], modes[index], size, -(-size // 512)
            attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = mtimes[index]
            attr.st_blksize = FOLDER_BLOCK_SIZE if S_ISDIR(modes[index]) else BLOCK_SIZE
            if not reply(token, names[index], attr, index + 1):
                break
            held[index].lookups += 1

    @_guard
    async def readlink(self, inode, ctx):
        return os.fsencode(self.ns.readlink(inode))

    async def releasedir(self, fh):
        if self.debug:
            log.debug("releasedir(%r)", fh)

    async def open(self, inode, flags, ctx):
        info = self._opened.get(inode)  # the hot path of every warm read: one dict lookup
        if info is None or flags & _WRITE_FLAGS or self.debug:
            info = await self._open(inode, flags)
        return info

    @_guard
    async def _open(self, inode, flags):
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        if inode == STATS_INO:  # each open reads the counters as they were when it opened
            self._handles += 1
            self._pinned[self._handles] = self.ns.stats()
            return pyfuse3.FileInfo(fh=self._handles, direct_io=True)
        node = await self._node(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if node.entry is None:  # a symbolic link (the kernel follows it before opening)
            raise pyfuse3.FUSEError(errno.ELOOP)
        if len(self._opened) >= OPENED_LIMIT:
            self._opened.clear()  # bounded memory on huge trees; rebuilt as files are opened
        if node.entry.grows:
            # hdr.json, adc.csv, the mosaic and the zip change as a bin grows. Each open reads
            # the version that was current when it opened (a handle of its own), past the page
            # cache, which would zero-fill a page read from an older, shorter version.
            self._handles += 1
            self._pinned[self._handles] = node
            return pyfuse3.FileInfo(fh=self._handles, direct_io=True)
        info = self._opened[inode] = pyfuse3.FileInfo(fh=inode, keep_cache=True)  # images never change
        return info

    @_guard
    async def read(self, fh, off, size):
        node = self._pinned.get(fh) or await self._node(fh)  # a pinned text file, or an image by inode
        if isinstance(node, bytes):  # the stats file
            return node[off:off + size]
        if self.ns.is_ranged(node):  # (the zip) only the bytes asked for, never the whole file
            return await trio.to_thread.run_sync(self.ns.read_range, node, off, size, limiter=self.limiter)
        data = self.ns.cached(node)
        if data is None and self.ns.is_cheap(node):  # cheaper than the hop to a worker thread and back
            data = self.ns.held_content(node)
        if data is None:
            data = await trio.to_thread.run_sync(self.ns.content, node, limiter=self.limiter)
        return data[off:off + size]

    async def release(self, fh):
        if self.debug:
            log.debug("release(%r)", fh)
        self._pinned.pop(fh, None)

    @_guard
    async def access(self, inode, mode, ctx):
        if mode & os.W_OK:
            raise pyfuse3.FUSEError(errno.EROFS)
        if inode != STATS_INO:
            await self._node(inode)

    @_guard
    async def statfs(self, ctx):
        """No capacity, as proc and sysfs report it: generated files fill nothing, so df shows
        0 blocks and '-' for use, never 100 % full (and it costs nothing on a huge tree)."""
        st = pyfuse3.StatvfsData()
        st.f_bsize = st.f_frsize = 512
        st.f_blocks = st.f_bfree = st.f_bavail = 0
        st.f_files = st.f_ffree = st.f_favail = 0
        st.f_namemax = 255
        return st

    # No getxattr or listxattr: their ENOSYS tells the kernel never to ask again, where an answer
    # (even "no such attribute") would cost a request per file for every `ls -l`.


for _name in ("setattr", "mknod", "mkdir", "unlink", "rmdir", "symlink", "rename", "link",
              "create", "write", "setxattr", "removexattr"):
    setattr(Operations, _name, _read_only(_name))


async def apply_changes(ops: Operations, everything: bool = False) -> None:
    """Re-check the source (`everything`: every loaded bin too), apply what changed and make
    the kernel forget it (in worker threads)."""
    changes = await trio.to_thread.run_sync(ops.ns.refresh, everything, limiter=ops.refreshing)
    if changes:
        await trio.to_thread.run_sync(invalidate, changes)


async def watch(ops: Operations, interval: float) -> None:
    """Every `interval` seconds, apply changes in the source and make the kernel forget them."""
    while True:
        await trio.sleep(interval)
        try:
            await apply_changes(ops)
        except Exception as err:  # a failed re-check must not end the daemon: try again later
            log_bad_bin(log, "refresh", f"re-checking the source failed: {type(err).__name__}: {err}")


def invalidate(changes: list) -> None:
    """Make the kernel forget changed inodes and removed names (blocking: call from a thread)."""
    for change in changes:
        try:
            if change[0] == "entry":
                pyfuse3.invalidate_entry(change[1], os.fsencode(change[2]))
            else:
                pyfuse3.invalidate_inode(change[1])
        except OSError:
            pass  # the kernel did not know it: nothing to forget
