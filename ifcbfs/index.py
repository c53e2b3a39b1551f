"""The persistent index (SPEC section 13): what listing a bin needs, kept in SQLite between mounts.

Each record is a bin's model (entries, sizes, hdr.json, image plan; no pixel) keyed by the bin's
path in the tree and checked against the identity of its source files (path, size, mtime_ns and
inode or ETag of each) before every use: a record whose key no longer matches is never used. The
index can always be deleted. Reads happen in the thread that lists the bin; writes go through a
queue to a writer thread of their own, so writing never blocks a reader (a full queue drops the
record: it is written the next time the bin is listed). Any failure logs one line and leaves
ifcbfs serving exactly what it would serve without an index.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import marshal
import os
import queue
import sqlite3
import threading
import time

from . import __version__
from .core.bin import Bin
from .core.source import BinFiles

log = logging.getLogger("ifcbfs")

FORMAT = 6  # bumped whenever what a record holds changes
QUEUE_SIZE = 4096
BATCH = 256


@contextlib.contextmanager
def transaction(db: sqlite3.Connection):
    """All of a block's statements, or none of them (the connections run in autocommit mode, so
    `with db:` alone would commit statement by statement)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def default_dir() -> str:
    """Where indexes live: systemd's CacheDirectory, else $XDG_CACHE_HOME/ifcbfs, else ~/.cache/ifcbfs."""
    if os.environ.get("CACHE_DIRECTORY"):
        return os.environ["CACHE_DIRECTORY"].split(":")[0]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ifcbfs")


def default_path(location: str, signature: str) -> str:
    """The index file of one source, for the options that shape a bin's files."""
    digest = hashlib.sha256(f"{location}\0{signature}".encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(default_dir(), f"{digest}.sqlite")


def _key(path: str) -> bytes:
    """A bin's path in the tree as the index keeps it (names need not be UTF-8)."""
    return path.encode("utf-8", "surrogateescape")


def identity(files: BinFiles) -> str:
    """The key a record must match: every source file's path, size, mtime and inode (or ETag),
    and those of the product files it used (a changed product file makes it stale)."""
    raw = repr(tuple((f.path, f.size, f.mtime_ns, f.ident) if f else None for f in (files.hdr, files.adc, files.roi)))
    return raw + repr(tuple(p.identity() for p in files.products)) if files.products else raw


class Index:
    """One SQLite index file. `get` and `put` never raise."""

    def __init__(self, path: str, signature: str, wait: bool = False):
        self.path = path
        self.wait = wait  # put() waits for the writer instead of dropping (ifcbfs index)
        self.signature = f"ifcbfs {__version__} format {FORMAT} {signature}"
        self.hits = self.misses = 0
        self.records = 0  # bins the index holds: counted once at open, then as the writer adds
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._db: sqlite3.Connection | None = None
        self._writing = False
        try:
            self._db = self._open()
        except (sqlite3.Error, OSError) as err:
            log.warning("index %s cannot be used (%s): serving without it", path, err)
            return
        self._writing = True
        self._writer = threading.Thread(target=self._write_loop, name="ifcbfs-index", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-256")  # KiB: records are read once per listing, the OS caches the file
        return db

    def _open(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            db = self._connect()
            found = self._signature(db)
        except sqlite3.DatabaseError as err:  # not a database, or damaged: it is only a cache
            log.warning("index %s is damaged (%s): starting it again", self.path, err)
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.unlink(self.path + suffix)
            db = self._connect()
            found = None
        if found == self.signature:
            self.records = db.execute("SELECT count(*) FROM bins").fetchone()[0]
        else:
            with transaction(db):  # every table goes: the catalog's (ifcbfs.catalog) too
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                    db.execute(f'DROP TABLE IF EXISTS "{table}"')
                db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                db.execute("CREATE TABLE bins (path BLOB PRIMARY KEY, ident TEXT NOT NULL, state BLOB NOT NULL)")
                db.execute("INSERT INTO meta VALUES ('signature', ?)", (self.signature,))
        return db

    @staticmethod
    def _signature(db: sqlite3.Connection) -> str | None:
        db.execute("PRAGMA quick_check").fetchall()
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'signature'").fetchone()
        except sqlite3.OperationalError:  # no such table: a new file
            return None
        return row[0] if row else None

    @property
    def usable(self) -> bool:
        return self._db is not None

    def get(self, path: str, files: BinFiles) -> Bin | None:
        """The bin's model from the index, if a record for exactly these source files is there."""
        try:
            with self._lock:
                if self._db is None:  # closed, or given up on
                    return None
                row = self._db.execute("SELECT ident, state FROM bins WHERE path = ?", (_key(path),)).fetchone()
        except sqlite3.Error as err:  # damaged, or gone from under us: never a wrong answer
            self._fail(f"reading it failed ({err})")
            return None
        if row is None or row[0] != identity(files):
            self.misses += 1
            return None
        try:
            model = Bin.from_state(files, marshal.loads(row[1]))
        except Exception:  # a record this version cannot read: parse the bin instead
            self.misses += 1
            return None
        self.hits += 1
        return model

    def put(self, path: str, files: BinFiles, model: Bin) -> None:
        """Queue a bin's model for writing (dropped if the writer is behind or has stopped)."""
        if not self._writing:
            return
        try:
            self._queue.put((path, identity(files), model), block=self.wait)
        except queue.Full:
            pass

    def queued(self) -> int:
        """Records waiting to be written."""
        return self._queue.qsize()

    def _write_loop(self) -> None:
        try:
            db = self._connect()  # its own connection: in WAL mode readers never wait for it
        except sqlite3.Error as err:
            log.warning("index %s cannot be written (%s)", self.path, err)
            self._writing = False
            return
        try:
            while self._writing:
                self._write_batch(db)
        finally:
            db.close()

    def _write_batch(self, db: sqlite3.Connection) -> None:
        batch = [self._queue.get()]
        while len(batch) < BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        taken = len(batch)
        if None in batch:  # close() asks to stop once what came before is written
            batch = [item for item in batch if item is not None]
            self._writing = False
        try:
            rows = [(_key(path), ident, marshal.dumps(model.state(), 4)) for path, ident, model in batch]
            with transaction(db):
                new = sum(db.execute("SELECT 1 FROM bins WHERE path = ?", row[:1]).fetchone() is None for row in rows)
                db.executemany("INSERT OR REPLACE INTO bins VALUES (?, ?, ?)", rows)
            self.records += new
        except Exception as err:  # disk full, read-only, deleted folder: keep serving, stop writing
            log.warning("index %s: writing failed (%s): no more records are written", self.path, err)
            self._writing = False
        for _ in range(taken):
            self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued record is written (or the writer has stopped)."""
        while self._writing and self._queue.unfinished_tasks:
            time.sleep(0.01)

    def _fail(self, why: str) -> None:
        if self._db is not None:
            log.warning("index %s: %s: serving without it", self.path, why)
        self._db, self._writing = None, False

    def close(self) -> None:
        """Write every queued record, then close the index."""
        if self._writing:
            self._queue.put(None)
            self._writer.join()
        if self._db is not None:
            with self._lock:
                self._db.close()
                self._db = None
