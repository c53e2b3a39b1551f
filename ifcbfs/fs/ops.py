"""pyfuse3 Operations over the namespace: translation, errno mapping, threads. Nothing else."""
from __future__ import annotations

import errno
import functools
import logging
import os

import pyfuse3
import trio

from ..service import log_bad_bin
from .namespace import BLOCK_SIZE, FILE, ROOT_INO, FsError, Namespace, Node

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
        self.debug = debug
        self.limiter = trio.CapacityLimiter(workers)
        self._opened: dict[int, pyfuse3.FileInfo] = {}  # images: fh is the inode, one FileInfo for all opens
        self._pinned: dict[int, Node] = {}  # hdr.json/adc.csv handles: the version each open reads
        self._handles = 1 << 63  # their fh numbers, above every inode number

    def _node_of(self, args) -> Node | None:
        for arg in args:
            if isinstance(arg, int) and arg in self.ns.nodes:
                return self.ns.nodes[arg]
        return None

    def describe(self, args, folder: bool = False) -> str:
        """The path a request is about, for its log line; with `folder`, the bin folder of a
        file (problems are logged once per bin)."""
        node = self._node_of(args)
        if folder and node is not None and node.kind == FILE:
            node = node.parent
        return (node.path or "/") if node else repr(args[:2])

    def attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        attr = node.adapter
        if attr is None:
            attr = pyfuse3.EntryAttributes()
            attr.st_ino = node.ino
            attr.generation = 0
            attr.entry_timeout = attr.attr_timeout = TIMEOUT
            attr.st_mode = node.mode
            attr.st_nlink = 1
            attr.st_uid, attr.st_gid = self.ns.options.uid, self.ns.options.gid
            attr.st_size = node.size
            attr.st_blksize = BLOCK_SIZE
            attr.st_blocks = node.blocks
            attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = node.mtime_ns
            node.adapter = attr
        return attr

    async def _loaded(self, ino: int) -> dict:
        if not self.ns.is_loaded(ino):
            await trio.to_thread.run_sync(self.ns.children, ino, limiter=self.limiter)
        return self.ns.children(ino)

    @_guard
    async def lookup(self, parent_inode, name, ctx=None):
        if name == b".":
            return self.attributes(self.ns.node(parent_inode))
        if name == b"..":
            node = self.ns.node(parent_inode)
            return self.attributes(node.parent or node)
        child = (await self._loaded(parent_inode)).get(os.fsdecode(name))
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.attributes(child)

    @_guard
    async def getattr(self, inode, ctx=None):
        return self.attributes(self.ns.node(inode))

    @_guard
    async def opendir(self, inode, ctx):
        if not self.ns.node(inode).is_dir:
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
        node = self.ns.node(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if len(self._opened) >= OPENED_LIMIT:
            self._opened.clear()  # bounded memory on huge trees; rebuilt as files are opened
        if node.entry.image is None:
            # hdr.json and adc.csv change as a bin grows. Each open reads the version that was
            # current when it opened (a handle of its own), past the page cache, which would
            # zero-fill a page read from an older, shorter version.
            self._handles += 1
            self._pinned[self._handles] = node
            return pyfuse3.FileInfo(fh=self._handles, direct_io=True)
        info = self._opened[inode] = pyfuse3.FileInfo(fh=inode, keep_cache=True)  # images never change
        return info

    @_guard
    async def read(self, fh, off, size):
        node = self._pinned.get(fh) or self.ns.node(fh)  # a pinned text file, or an image by inode
        data = self.ns.cache.get(node)
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
        self.ns.node(inode)

    @_guard
    async def statfs(self, ctx):
        st = pyfuse3.StatvfsData()
        st.f_bsize = st.f_frsize = 512
        st.f_blocks = sum(n.blocks for n in list(self.ns.nodes.values()))
        st.f_bfree = st.f_bavail = 0
        st.f_files = len(self.ns.nodes)
        st.f_ffree = st.f_favail = 0
        st.f_namemax = 255
        return st

    @_guard
    async def getxattr(self, inode, name, ctx):
        if inode == ROOT_INO and name == DECODES_XATTR:
            return str(self.ns.decodes).encode()
        self.ns.node(inode)
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    @_guard
    async def listxattr(self, inode, ctx):
        self.ns.node(inode)
        return [DECODES_XATTR] if inode == ROOT_INO else []


for _name in ("setattr", "mknod", "mkdir", "unlink", "rmdir", "symlink", "rename", "link",
              "create", "write", "setxattr", "removexattr"):
    setattr(Operations, _name, _read_only(_name))


async def apply_changes(ops: Operations) -> None:
    """Re-check the source, apply what changed and make the kernel forget it (in worker threads)."""
    changes = await trio.to_thread.run_sync(ops.ns.refresh, limiter=ops.limiter)
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
