"""ifcbfs with one fault injected, to test what a failure leaves behind:

    python tests/faults.py FAULT SOURCE MOUNTPOINT [ifcbfs arguments]

FAULT is `serve-loop` (the serving loop raises soon after the mount serves), `refresh`
(every re-check of the source raises) or `no-syslog` (as on a machine without /dev/log).
Nothing in ifcbfs itself knows about these faults.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio  # noqa: E402

from ifcbfs import cli, service  # noqa: E402
from ifcbfs.fs import namespace, ops  # noqa: E402


async def _failing_watch(operations, interval):
    await trio.sleep(0.3)
    raise RuntimeError("injected failure in the serving loop")


def _failing_refresh(self):
    raise RuntimeError("injected failure in a refresh")


FAULTS = {
    "serve-loop": lambda: setattr(ops, "watch", _failing_watch),
    "refresh": lambda: setattr(namespace.Namespace, "refresh", _failing_refresh),
    "no-syslog": lambda: setattr(service, "SYSLOG_SOCKET", "/nonexistent/dev/log"),
}

if __name__ == "__main__":
    FAULTS[sys.argv[1]]()
    sys.exit(cli.main(sys.argv[2:]))
