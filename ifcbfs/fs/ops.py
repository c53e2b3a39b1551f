"""pyfuse3 Operations over the namespace: translation, errno mapping, threads. Nothing else."""
from __future__ import annotations

import errno
import functools
import logging
import os

import pyfuse3
import trio

from ..service import log_bad_bin
from .namespace import BLOCK_SIZE, CODE_MASK, FILE, ROOT_INO, FsError, Namespace, Node

log = logging.getLogger("ifcbfs")
TIMEOUT = 3600.0  # entry/attr cache time: the watcher invalidates what changes
DECODES_XATTR = b"user.ifcbfs.decodes"
OPENED_LIMIT = 100_000
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
        self._pinned: dict[int, Node] = {}  # hdr.json/adc.csv handles: the version each open reads
        self._handles = 1 << 63  # their fh numbers, above every inode number

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

    def attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        """A node's attributes, made anew each time (none is kept per file)."""
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.ino
        attr.entry_timeout = attr.attr_timeout = TIMEOUT
        attr.st_mode = self.ns.mode(node)
        attr.st_nlink = 1
        attr.st_uid, attr.st_gid = self.uid, self.gid
        attr.st_size = node.size
        attr.st_blksize = BLOCK_SIZE
        attr.st_blocks = node.blocks
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = node.mtime_ns
        return attr

    def _entry(self, node: Node) -> pyfuse3.EntryAttributes:
        """Attributes for a reply that gives the kernel a reference to the node (lookup)."""
        self.ns.looked_up(node)
        return self.attributes(node)

    async def _loaded(self, ino: int) -> dict:
        if not self.ns.is_loaded(ino):
            return await trio.to_thread.run_sync(self.ns.children, ino, limiter=self.limiter)
        return self.ns.children(ino)

    async def _node(self, ino: int) -> Node:
        """The node of an inode; a file of a bin that is not in memory is loaded in a thread."""
        if not self.ns.is_loaded(ino):
            return await trio.to_thread.run_sync(self.ns.node, ino, limiter=self.limiter)
        return self.ns.node(ino)

    @_guard
    async def lookup(self, parent_inode, name, ctx=None):
        if name == b".":
            return self._entry(self.ns.node(parent_inode))
        if name == b"..":
            node = self.ns.node(parent_inode)
            return self._entry(node.parent or node)
        child = (await self._loaded(parent_inode)).get(os.fsdecode(name))
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._entry(child)

    async def forget(self, inode_list):
        for inode, count in inode_list:
            self.ns.forget(inode, count)

    @_guard
    async def getattr(self, inode, ctx=None):
        return self.attributes(await self._node(inode))

    @_guard
    async def opendir(self, inode, ctx):
        if not (await self._node(inode)).is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        await self._loaded(inode)
        return inode

    @_guard
    async def readdir(self, fh, start_id, token):
        await self._loaded(fh)
        children = self.ns.listing(fh)
        for index in range(start_id, len(children)):
            child = children[index]
            if not pyfuse3.readdir_reply(token, os.fsencode(child.name), self.attributes(child), index + 1):
                break
            self.ns.looked_up(child)  # a readdirplus entry is a reference, like a lookup

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
        if self.ns.is_ranged(node):  # (the zip) only the bytes asked for, never the whole file
            return await trio.to_thread.run_sync(self.ns.read_range, node, off, size, limiter=self.limiter)
        data = self.ns.cached(node)
        if data is None:
            if self.ns.is_cheap(node):  # cheaper than the hop to a worker thread and back
                data = self.ns.content(node)
            else:
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

    @_guard
    async def getxattr(self, inode, name, ctx):
        if inode == ROOT_INO and name == DECODES_XATTR:
            return str(self.ns.decodes).encode()
        await self._node(inode)
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    @_guard
    async def listxattr(self, inode, ctx):
        await self._node(inode)
        return [DECODES_XATTR] if inode == ROOT_INO else []


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
