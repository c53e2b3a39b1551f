"""The local-disk source: a folder tree of raw files, read with os calls and nothing else."""
from __future__ import annotations

import errno
import logging
import os
import stat

from .errors import ImageMissing
from .source import Listing, Source, SourceFile, SourceUnreadable

log = logging.getLogger("ifcbfs")


def within(path: str, folder: str) -> bool:
    """True when `path` is `folder` or lies below it, comparing real paths (links resolved)."""
    return _below(os.path.realpath(path), os.path.realpath(folder))


def _below(real: str, folder: str) -> bool:
    """`within` for paths already real: no file system access."""
    return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)


def _unreadable(path: str, err: OSError) -> SourceUnreadable:
    return SourceUnreadable(f"{path}: {err.strerror}", err.errno or errno.EIO)


class LocalSource(Source):
    """Raw files under one folder. Paths given to it are relative to that folder ('' is the root);
    the files it returns carry absolute paths. Symbolic links are followed, except into a loop or
    into an `exclude`d folder (the mountpoint: following it would make the mount read itself)."""

    def __init__(self, root: str, exclude: tuple[str, ...] = ()):
        self.root = os.path.abspath(root)
        self.location = self.root
        self._exclude = tuple(os.path.realpath(p) for p in exclude)
        self._refused: set[str] = set()  # links into an excluded folder, logged once each

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def problem(self) -> str | None:
        path = self.root
        if not os.path.exists(path):
            return f"source {path} does not exist"
        if not os.path.isdir(path):
            return f"source {path} is not a folder"
        if not os.access(path, os.R_OK | os.X_OK):
            return f"source {path} cannot be read (permission denied)"
        return None

    def sibling(self, name: str) -> "LocalSource | None":
        path = os.path.join(os.path.dirname(self.root), name)
        return LocalSource(path, self._exclude) if os.path.isdir(path) else None

    def stamp(self, folder: str) -> int:
        try:
            return os.stat(self._abs(folder)).st_mtime_ns
        except OSError:
            return 0

    def listdir(self, folder: str) -> Listing:
        path = self._abs(folder)
        try:
            stamp = os.stat(path).st_mtime_ns
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            raise _unreadable(path, err) from None
        folders, files = [], []
        chain = None
        real = os.path.realpath(path) if self._exclude else ""
        for entry in entries:
            try:
                link = entry.is_symlink()
                if self._exclude and self._excluded(entry, os.path.realpath(entry.path) if link else os.path.join(real, entry.name)):
                    continue
                if entry.is_file():  # regular files only: a FIFO or device could block a read
                    st = entry.stat()
                    files.append(SourceFile(entry.path, st.st_size, st.st_mtime_ns, st.st_ino))
                elif entry.is_dir():
                    if link:
                        chain = chain if chain is not None else self._real_chain(folder)
                        if any(_below(up, os.path.realpath(entry.path)) for up in chain):
                            continue  # a loop
                    folders.append(entry.name)
            except OSError:
                continue
        return Listing(stamp, tuple(folders), tuple(files))

    def _excluded(self, entry: os.DirEntry, target: str) -> bool:
        """True (and logged once) when `target`, the real path of `entry`, is in an excluded folder."""
        if not any(_below(target, ex) for ex in self._exclude):
            return False
        if entry.path not in self._refused:
            self._refused.add(entry.path)
            log.warning("%s leads into the mountpoint: not followed (the mount would read itself)", entry.path)
        return True

    def _real_chain(self, folder: str) -> list[str]:
        """Real paths of the root and of each folder on the way to `folder`: a link to any of them
        (or above them) is a loop, also when it goes through sibling links (a/l -> b, b/l -> a)."""
        parts = folder.split("/") if folder else []
        return [os.path.realpath(self._abs("/".join(parts[:i]))) for i in range(len(parts) + 1)]

    def stat(self, path: str) -> SourceFile | None:
        full = self._abs(path)
        try:
            st = os.stat(full)
        except OSError:
            return None
        return SourceFile(full, st.st_size, st.st_mtime_ns, st.st_ino) if stat.S_ISREG(st.st_mode) else None

    def read(self, f: SourceFile) -> bytes:
        fd = self._open(f.path)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SourceUnreadable(f"{f.path}: not a regular file", errno.EIO)
            chunks, left = [], f.size
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        except OSError as err:
            raise _unreadable(f.path, err) from None
        finally:
            os.close(fd)

    def read_range(self, f: SourceFile, start: int, length: int) -> bytes:
        fd = self._open(f.path)
        try:
            data = os.pread(fd, length, start)
            while len(data) < length:
                more = os.pread(fd, length - len(data), start + len(data))
                if not more:
                    raise ImageMissing(f"{f.path}: bytes {start}..{start + length} pass the end of the file")
                data += more
            return data
        except OSError as err:
            raise _unreadable(f.path, err) from None
        finally:
            os.close(fd)

    @staticmethod
    def _open(path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block
        except OSError as err:
            raise _unreadable(path, err) from None
