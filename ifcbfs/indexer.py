"""`ifcbfs index SOURCE [-o OPT[,OPT...]]`: build the persistent index before the first mount.

Lists every bin the mount would show (so the first `find` or `ls -lR` of a mount is as fast as a
remount), with a progress bar on a terminal. Safe to run while the source is mounted.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys

from .core.source import root_problem
from .fs.namespace import BIN, DIR, FsError, Namespace, Options
from .index import Index, default_path
from .progress import Bar

log = logging.getLogger("ifcbfs")

USAGE = """\
usage: ifcbfs index SOURCE [-o OPT[,OPT...]]

List every bin under SOURCE once and keep what listing needs in the index that
'ifcbfs SOURCE MOUNTPOINT' uses, so the mount lists without parsing.
  -o stitch=on|off|qc, mosaic[=WxH@S], zip, include_skipped, index=PATH,
     since=DATE, until=DATE, instrument=N[:N...]: as for the mount (the index is
     only used by mounts with the same stitch, mosaic and zip options; the
     filters choose which bins are listed)
"""


def main(argv: list[str]) -> int:
    from .cli import UsageError, parse_args

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    try:
        cfg = parse_args([argv[0], "/", *argv[1:]])  # one option parser: the mount's
    except UsageError as err:
        print(f"ifcbfs index: {err}", file=sys.stderr)
        return err.status
    problem = root_problem(cfg.source, cfg.source_options())
    if problem:
        print(f"ifcbfs index: {problem}", file=sys.stderr)
        return 1
    if cfg.index == "off":
        print("ifcbfs index: index=off: nothing to build", file=sys.stderr)
        return 2
    logging.basicConfig(format="ifcbfs index: %(message)s", level=logging.WARNING)
    index = Index(cfg.index or default_path(cfg.source, cfg.options.signature), cfg.options.signature, wait=True)
    if not index.usable:
        return 1
    try:
        root = cfg.data_root()
        return build(Namespace(root, _quiet(cfg.options), index), index)
    except KeyboardInterrupt:
        index.close()
        print("\nifcbfs index: interrupted; what was listed so far is kept", file=sys.stderr)
        return 130


def _quiet(options: Options) -> Options:
    """The mount's options (those that shape a bin folder among them), keeping nothing in memory."""
    return dataclasses.replace(options, cache_size=0, bin_cache=0)


def build(ns: Namespace, index: Index, stream=None) -> int:
    """List every bin of the tree into the index; 0, or 1 when some could not be read."""
    bins, errors = [], 0
    folders = [ns.root]
    while folders:
        folder = folders.pop()
        try:
            children = ns.children(folder.ino)
        except FsError as err:
            log.warning("%s: %s", folder.path or ".", err)
            errors += 1
            continue
        bins.extend(c for c in children.values() if c.kind == BIN)
        folders.extend(c for c in children.values() if c.kind == DIR)
    bar = Bar(len(bins), stream)
    for done, node in enumerate(bins, 1):
        try:
            ns.model(node)
        except FsError as err:
            bar.clear()
            log.warning("%s: %s", node.path, err)
            errors += 1
        bar.show(done, f"{done}/{len(bins)} bins, {done / bar.elapsed():.0f} bins/s")
    index.close()
    bar.clear()
    print(f"indexed {len(bins)} bins ({ns.parses} parsed, {len(bins) - ns.parses - errors} already indexed), "
          f"{errors} errors, in {bar.elapsed():.1f} s: {index.path}", file=bar.stream)
    return 1 if errors else 0
