"""Running product readers in a child process, so that damaged bytes cannot take the mount down.

libhdf5 (through h5py) and scipy's MATLAB reader are C code. On some damaged files they loop
for ever (a corrupted variable-length string in an `.h5`) or crash the process (a corrupted
`.mat`), and no Python `except` catches either. `Isolated` calls a reader in a child process
that it keeps for the next call; a call that crashes the child or runs past its time limit
becomes one `ProductError`, and the next call starts a fresh child.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from typing import Any, Callable

from .errors import ProductError, one_line

DEFAULT_TIMEOUT = 60.0  # seconds; real class files read in well under one
DEFAULT_MEMORY = 4 << 30  # bytes of address space for the child


def _serve(conn: Any, memory: int | None) -> None:
    """The child: call each (function, args) received, and send back (True, value) or (False, error)."""
    for knob in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(knob, "1")  # before numpy loads: one thread, small reservations
    if memory:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    while True:
        try:
            func, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any] = (True, func(*args))
        except Exception as err:  # the reader's own error, passed to the caller unchanged
            reply = (False, err)
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            conn.send((False, ProductError(f"reader result cannot be passed back ({err})")))


class Isolated:
    """One child process that runs readers; `call` is thread-safe and runs one reader at a time.

    The child is started on first use with the `spawn` method (never `fork`: the caller may run
    threads, and a forked child of a threaded process can deadlock)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, memory: int | None = DEFAULT_MEMORY):
        self.timeout = timeout
        self.memory = memory
        self._lock = threading.Lock()
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None

    def call(self, func: Callable[..., Any], *args: Any, what: str = "product") -> Any:
        """`func(*args)` in the child. `func` must be importable by name (a module-level function).

        Returns its value or raises its ProductError; any other exception (MemoryError under
        the child's memory limit, say), a crash, or a run past `timeout` seconds raises
        ProductError naming `what`, and after a crash or a timeout the child is replaced."""
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._start()
            try:
                self._conn.send((func, args))
                if not self._conn.poll(self.timeout):
                    self._stop()
                    raise ProductError(f"{what}: reading took longer than {self.timeout:g} s; left out")
                ok, value = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                code = self._stop()
                cause = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                raise ProductError(f"{what}: the reader crashed on it ({cause}); left out") from None
        if ok:
            return value
        if isinstance(value, ProductError):
            raise value
        raise ProductError(f"{what}: {type(value).__name__}: {one_line(value)}")  # MemoryError and the like

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child, self.memory), daemon=True,
                                       name="ifcbfs-product-reader")
        self._proc.start()
        child.close()
        self._conn = parent

    def _stop(self) -> int | None:
        """End the child (it may be stuck in C code, so it is killed) and return its exit code."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        if proc.is_alive():
            proc.kill()
        proc.join()
        return proc.exitcode

    def close(self) -> None:
        """End the child process, if one is running."""
        with self._lock:
            self._stop()

    def __enter__(self) -> "Isolated":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (for tests and status)."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None
