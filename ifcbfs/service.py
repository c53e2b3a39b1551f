"""Running as a service: systemd readiness notification, logging, diagnostics.

Standard library only.  Everything here is safe to call when not started by
systemd: :func:`notify` then simply reports ``False``.
"""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import os
import signal
import socket
import sys
import threading
import traceback

log = logging.getLogger(__name__)

SYSLOG_SOCKET = "/dev/log"


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``) to systemd as one sd_notify datagram.

    Returns True when the message was sent, False when not running under a
    service manager (no ``NOTIFY_SOCKET``) or on any error.  Never raises.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or not fields:
        return False
    if address.startswith("@"):
        target = "\0" + address[1:]  # abstract namespace socket
    elif address.startswith("/"):
        target = address
    else:
        log.debug("unsupported NOTIFY_SOCKET %r", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode("utf-8", "replace"), target)
    except Exception as exc:  # a notification must never take the filesystem down
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True


def _one_line(text: str) -> str:
    """Keep a STATUS= value on one line (a newline would start a new field)."""
    return " ".join(str(text).splitlines())


def ready(status: str) -> bool:
    """Tell systemd the mount is up (``Type=notify`` units become active)."""
    return notify("READY=1", "STATUS=" + _one_line(status))


def stopping() -> bool:
    """Tell systemd the filesystem is shutting down."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """Update the free-form status line shown by ``systemctl status``."""
    return notify("STATUS=" + _one_line(text))


def log_file(given: str, foreground: bool, mountpoint: str) -> str | None:
    """The file logs go to: `given` (``-o log=FILE``), else, in the background without
    syslog, a file of the mountpoint's in ``$XDG_STATE_HOME/ifcbfs``; None for stderr/syslog.

    (In the background stderr is /dev/null once the mount serves: logs must go somewhere.)"""
    if given:
        return given
    if foreground or os.path.exists(SYSLOG_SOCKET):
        return None
    state = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # unset, or relative (which the XDG spec says to ignore)
        state = os.path.join(os.path.expanduser("~"), ".local", "state")
    name = os.path.abspath(mountpoint).strip("/").replace("/", "-") or "root"
    return os.path.join(state, "ifcbfs", name + ".log")


def log_file_problem(path: str) -> str | None:
    """Why log lines cannot be appended to `path` (its folder is made if missing); None if they can."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as err:
        return f"cannot be written ({err.strerror})"  # said after the file's name
    return None


def setup_logging(foreground: bool, debug: bool, logfile: str | None = None):
    """Configure the root logger for the command-line program; returns where SIGUSR1 stack
    dumps should go (see :func:`enable_stack_dumps`).

    With ``logfile``, append to it, each line with its time. Otherwise, in the foreground,
    log to stderr as ``ifcbfs: LEVEL message`` (under systemd, journald adds the timestamp
    and unit), and in the background to syslog through ``/dev/log`` when it exists, else to
    stderr.  ``debug`` selects DEBUG, otherwise INFO.  Calling it again replaces the handlers.
    """
    handler: logging.Handler | None = None
    if logfile:
        handler = logging.FileHandler(logfile, encoding="utf-8")
        fmt = "%(asctime)s ifcbfs[%(process)d]: %(levelname)s %(message)s"
    elif foreground:
        fmt = "ifcbfs: %(levelname)s %(message)s"
    else:
        fmt = "ifcbfs[%(process)d]: %(levelname)s %(message)s"
        if os.path.exists(SYSLOG_SOCKET):
            try:
                handler = logging.handlers.SysLogHandler(
                    address=SYSLOG_SOCKET,
                    facility=logging.handlers.SysLogHandler.LOG_DAEMON,
                )
            except OSError:
                handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    return None if isinstance(handler, logging.handlers.SysLogHandler) else handler.stream


def _libc():
    import ctypes

    return ctypes.CDLL(None)


def trim_memory() -> None:
    """Give the C heap's free pages back to the system (glibc), where a long listing leaves them
    scattered; nothing elsewhere."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


def one_malloc_arena() -> bool:
    """Have every thread allocate from one malloc arena (glibc; elsewhere nothing changes).

    Worker threads parse bins of a few hundred KB each; with an arena per thread, the pieces
    each arena keeps make the daemon's memory creep up over a long listing. One arena keeps it
    flat. False when the C library has no such setting."""
    try:
        return bool(_libc().mallopt(-8, 1))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def enable_stack_dumps(file, signum: int = signal.SIGUSR1) -> None:
    """Dump every thread's stack on ``signum`` (``kill -USR1 PID``) to ``file``, or, when
    ``file`` is None (logging to syslog, which has no file), as log lines.

    For diagnosing a hung mount without stopping it.  faulthandler writes even when every
    Python thread is stuck; the log lines need the main thread to run.
    """
    if file is not None:
        faulthandler.register(signum, file=file, all_threads=True)
    else:
        signal.signal(signum, _log_stacks)


def _log_stacks(signum, frame) -> None:
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, stack in sys._current_frames().items():
        log.warning("stack of thread %s (SIGUSR1):\n%s", names.get(ident, ident), "".join(traceback.format_stack(stack)))
