"""`ifcbfs index SOURCE [-o OPT[,OPT...]]`: build the persistent index before the first mount.

Lists every bin the mount would show (so the first `find` or `ls -lR` of a mount is as fast as a
remount), with a progress bar on a terminal. Safe to run while the source is mounted.
"""
from __future__ import annotations

import dataclasses
import logging
import sys

from .core.source import root_problem
from .crawler import Crawler, attach
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
  -o products=DIR[:DIR...], blobs: also index the product trees, and each bin's
     product files (used by mounts with the same products and blobs options)
  -o classes, bins_csv: also index what by-class/ and bins.csv show
"""


def main(argv: list[str]) -> int:
    from .options import UsageError, parse_args, products_problem

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    try:
        cfg = parse_args([argv[0], "/", *argv[1:]])  # one option parser: the mount's
    except UsageError as err:
        print(f"ifcbfs index: {err}", file=sys.stderr)
        return err.status
    problem = root_problem(cfg.source, cfg.source_options()) or products_problem(cfg.options.products)
    if problem:
        print(f"ifcbfs index: {problem}", file=sys.stderr)
        return 1
    if cfg.index == "off":
        print("ifcbfs index: index=off: nothing to build", file=sys.stderr)
        return 2
    logging.basicConfig(format="ifcbfs index: %(message)s", level=logging.WARNING)
    index = Index(cfg.index or default_path(cfg.source, cfg.signature), cfg.signature, wait=True)
    if not index.usable:
        return 1
    root = cfg.data_root()
    catalog, views = attach(root, cfg.options, index)
    ns = Namespace(root, _quiet(cfg.options), index, views)
    try:
        return build(ns, index, crawler=Crawler(ns, catalog) if catalog is not None else None)
    except KeyboardInterrupt:
        index.close()
        print("\nifcbfs index: interrupted; what was listed so far is kept", file=sys.stderr)
        return 130


def _quiet(options: Options) -> Options:
    """The mount's options (those that shape a bin folder among them), keeping nothing in memory."""
    return dataclasses.replace(options, cache_size=0, bin_cache=0)


def build(ns: Namespace, index: Index, stream=None, crawler: Crawler | None = None) -> int:
    """List every bin of the tree into the index (and, with a crawler, the product trees and
    what the views show); 0, or 1 when some could not be read."""
    bins, errors = [], 0
    if crawler is not None:
        bar = Bar(0, stream)
        changed = crawler.walk_products(bar.text)
        bar.clear()
        if crawler.catalog.roots:
            print(f"indexed {crawler.catalog.product_count()} product files in {crawler.folders} folders, "
                  f"in {bar.elapsed():.1f} s", file=bar.stream)
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
    bar.clear()
    parsed = ns.parses  # (the views' pass below reads some bins again)
    if crawler is not None and crawler.walks_tree:
        index.flush()  # the models just listed are read back, not parsed again
        views = Bar(0, stream)
        crawler.walk_tree(changed, lambda text: views.text(f"views: {crawler.bins} bins, {text}"))
        views.clear()
        print(f"indexed {crawler.catalog.bins_count()} bins for the views ({crawler.catalog.members_count()} "
              f"with class labels) in {views.elapsed():.1f} s", file=views.stream)
    index.close()
    print(f"indexed {len(bins)} bins ({parsed} parsed, {len(bins) - parsed - errors} already indexed), "
          f"{errors} errors, in {bar.elapsed():.1f} s: {index.path}", file=bar.stream)
    return 1 if errors else 0
