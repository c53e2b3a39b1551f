#!/usr/bin/env python3
"""Minimal in-memory read-only pyfuse3 filesystem: the performance ceiling for ifcbfs.

Usage: python scripts/ceiling_fs.py MANIFEST.json MOUNTPOINT

MANIFEST.json lists the folders and files to serve, with their sizes:

    {"dirs": ["2024", "2024/D20240601", ...],
     "files": [["2024/D20240601/D20240601T000000_IFCB124/X_00001.png", 12345], ...]}

Every file is served with exactly its listed size; its content is a fixed byte
pattern built once and sliced per read, or with --content DIR the bytes of the
file of the same path under DIR, read into memory at start.  Parent folders of listed files are
created even when "dirs" omits them.  Nothing is computed per request beyond a
dict lookup: attributes are built once per inode, entries and attributes are
cached by the kernel for a long time, and files are opened with keep_cache.

The process runs in the foreground, prints "ready" on stdout once mounted and
unmounts cleanly on SIGTERM or SIGINT. After SIGUSR1 it answers open with ENOSYS:
the kernel then stops sending open and release (FUSE's no-open support) and keeps
what it cached. pyfuse3 gives read() only the file handle, which is 0 without an
open, so a filesystem can use this only once every file it serves is cached: this
is to measure what no-open would bring, not to serve a tree.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import stat
import sys

import pyfuse3
import trio

TIMEOUT = 300.0              # entry and attribute cache lifetime, seconds
BLKSIZE = 1 << 20            # st_blksize reported for every entry
MTIME_NS = 1_717_200_000 * 1_000_000_000   # fixed mtime (2024-06-01)
PATTERN = bytes(range(256))


class CeilingFS(pyfuse3.Operations):
    """Serves a static tree described by a manifest; all answers are precomputed."""

    def __init__(self, dirs: list[str], files: list[tuple[str, int]], content: str | None = None):
        super().__init__()
        self.data: dict[int, bytes] = {}  # file inode -> its bytes (with --content)
        self.no_open = False  # set by SIGUSR1
        uid, gid = os.getuid(), os.getgid()
        self.attrs: dict[int, pyfuse3.EntryAttributes] = {}
        self.children: dict[int, list[tuple[bytes, int]]] = {}   # dir inode -> sorted entries
        self.index: dict[int, dict[bytes, int]] = {}              # dir inode -> name -> inode
        self.sizes: dict[int, int] = {}                           # file inode -> size
        self.file_info: dict[int, pyfuse3.FileInfo] = {}

        def make_attr(ino: int, mode: int, size: int, nlink: int) -> pyfuse3.EntryAttributes:
            a = pyfuse3.EntryAttributes()
            a.st_ino = ino
            a.generation = 0
            a.entry_timeout = TIMEOUT
            a.attr_timeout = TIMEOUT
            a.st_mode = mode
            a.st_nlink = nlink
            a.st_uid = uid
            a.st_gid = gid
            a.st_rdev = 0
            a.st_size = size
            a.st_blksize = BLKSIZE
            a.st_blocks = (size + 511) // 512
            a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = MTIME_NS
            return a

        # Folders: every listed one and every ancestor of a listed file.
        dir_paths: set[str] = {""}
        for d in dirs:
            d = d.strip("/")
            while d:
                dir_paths.add(d)
                d = os.path.dirname(d)
        for path, _size in files:
            d = os.path.dirname(path.strip("/"))
            while d:
                dir_paths.add(d)
                d = os.path.dirname(d)

        dir_ino: dict[str, int] = {"": pyfuse3.ROOT_INODE}
        next_ino = pyfuse3.ROOT_INODE + 1
        for d in sorted(dir_paths):
            if d:
                dir_ino[d] = next_ino
                next_ino += 1
        entries: dict[int, list[tuple[bytes, int]]] = {ino: [] for ino in dir_ino.values()}
        subdirs: dict[int, int] = {ino: 0 for ino in dir_ino.values()}
        for d, ino in dir_ino.items():
            if d:
                parent = dir_ino[os.path.dirname(d)]
                entries[parent].append((os.fsencode(os.path.basename(d)), ino))
                subdirs[parent] += 1

        max_size = 0
        for path, size in files:
            path = path.strip("/")
            size = int(size)
            if path in dir_ino:
                raise SystemExit(f"manifest: {path!r} is both a folder and a file")
            ino = next_ino
            next_ino += 1
            entries[dir_ino[os.path.dirname(path)]].append((os.fsencode(os.path.basename(path)), ino))
            self.sizes[ino] = size
            self.attrs[ino] = make_attr(ino, stat.S_IFREG | 0o444, size, 1)
            self.file_info[ino] = pyfuse3.FileInfo(fh=ino, keep_cache=True)
            max_size = max(max_size, size)
            if content is not None:
                with open(os.path.join(content, path), "rb") as f:
                    self.data[ino] = f.read()
                if len(self.data[ino]) != size:
                    raise SystemExit(f"manifest: {path!r} has {len(self.data[ino])} bytes under {content}, not {size}")

        for ino, items in entries.items():
            items.sort()
            index = dict(items)
            if len(index) != len(items):
                raise SystemExit("manifest: duplicate names in one folder")
            self.children[ino] = items
            self.index[ino] = index
            self.attrs[ino] = make_attr(ino, stat.S_IFDIR | 0o555, 4096, 2 + subdirs[ino])

        reps = max_size // len(PATTERN) + 1
        self.content = memoryview(PATTERN * reps)
        self.negative = pyfuse3.EntryAttributes()
        self.negative.st_ino = 0
        self.negative.entry_timeout = TIMEOUT
        self.n_dirs = len(dir_ino)
        self.n_files = len(self.sizes)

    async def lookup(self, parent_inode, name, ctx=None):
        try:
            return self.attrs[self.index[parent_inode][name]]
        except KeyError:
            if parent_inode not in self.index:
                raise pyfuse3.FUSEError(errno.ENOTDIR) from None
            if name == b".":
                return self.attrs[parent_inode]
            return self.negative        # cached negative entry

    async def getattr(self, inode, ctx=None):
        try:
            return self.attrs[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    async def opendir(self, inode, ctx):
        if inode not in self.children:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh, start_id, token):
        items = self.children[fh]
        attrs = self.attrs
        for i in range(start_id, len(items)):
            name, ino = items[i]
            if not pyfuse3.readdir_reply(token, name, attrs[ino], i + 1):
                break

    async def releasedir(self, fh):
        pass

    async def open(self, inode, flags, ctx):
        if self.no_open:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise pyfuse3.FUSEError(errno.EROFS)
        try:
            return self.file_info[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.EISDIR if inode in self.children else errno.ENOENT) from None

    async def read(self, fh, off, size):
        if fh not in self.sizes:  # (no-open: a read that no open preceded)
            raise pyfuse3.FUSEError(errno.EIO)
        if self.data:
            return self.data[fh][off:off + size]
        end = min(off + size, self.sizes[fh])
        if off >= end:
            return b""
        return self.content[off:end]

    async def release(self, fh):
        pass

    async def access(self, inode, mode, ctx):
        return not mode & os.W_OK

    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = sum((n + 4095) // 4096 for n in self.sizes.values())
        s.f_bfree = s.f_bavail = 0
        s.f_files = self.n_dirs + self.n_files
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s


def load_manifest(path: str) -> tuple[list[str], list[tuple[str, int]]]:
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    return list(m.get("dirs", [])), [(str(p), int(n)) for p, n in m.get("files", [])]


async def serve(ops: CeilingFS, max_tasks: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            async def stop_on_signal() -> None:
                async for signum in signals:
                    if signum == signal.SIGUSR1:
                        ops.no_open = True
                        continue
                    pyfuse3.terminate()
                    return

            nursery.start_soon(stop_on_signal)
            print("ready", flush=True)
            await pyfuse3.main(max_tasks=max_tasks)
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Serve the folders and file sizes of MANIFEST.json from memory, read-only, "
                    "as fast as pyfuse3 allows (the ceiling ifcbfs is measured against).")
    p.add_argument("manifest", help='JSON: {"dirs": [path, ...], "files": [[path, size], ...]}')
    p.add_argument("mountpoint")
    p.add_argument("--max-tasks", type=int, default=8, help="pyfuse3 worker tasks (default 8)")
    p.add_argument("--content", metavar="DIR", help="serve the bytes of the files under DIR (same paths)")
    args = p.parse_args(argv)

    dirs, files = load_manifest(args.manifest)
    ops = CeilingFS(dirs, files, args.content)
    options = set(pyfuse3.default_options)
    options |= {"fsname=ceilingfs", "subtype=ceilingfs", "ro", "noatime"}
    pyfuse3.init(ops, args.mountpoint, options)
    try:
        trio.run(serve, ops, args.max_tasks)
    except BaseException:
        pyfuse3.close(unmount=True)
        raise
    pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
