"""`ifcbfs-export SOURCE DEST`: write the tree the mount would show, without FUSE.

The tree comes from the same `Namespace` the mount serves, so DEST holds the same paths, names,
sizes, bytes and mtimes. The main process walks the folders (no bin is loaded there) and picks
the bins; a pool of processes loads each bin and writes its files. A file whose size and mtime
already match at DEST is left alone, so a second run only writes what changed in SOURCE.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import stat
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace

from . import __version__
from .core.records import STITCH_MODES
from .core.binfilter import BinFilter, parse_date, parse_instruments
from .core.local import within
from .core.mosaic import parse_mosaic
from .core import s3
from .core.source import DataRoot, open_source, root_problem
from .progress import Bar
from .options import UsageError as OptionError, product_roots, products_problem
from .crawler import Crawler, attach
from .fs.namespace import BIN, DIR, LINK, ROOT_INO, VFILE, FsError, Namespace, Node, Options

PROG = "ifcbfs-export"
TMP_SUFFIX = ".ifcbfs-tmp"


class UsageError(Exception):
    """Bad command line or paths: printed as one line, exit status 2 (options) or 1 (paths)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see {PROG} --help)", 2)


def _argument(parse):
    """A core parser as an argparse type: its ValueError becomes argparse's one-line error."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__
    return convert


def _products(text: str) -> tuple:
    try:
        return product_roots(text)
    except OptionError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Write the tree `ifcbfs SOURCE MOUNTPOINT` would show into DEST "
                "(PNG images, hdr.json, adc.csv) without mounting. Files already up to date are skipped.")
    p.add_argument("source", metavar="SOURCE", help="data root holding raw .hdr/.adc/.roi files (never written): "
                   "a folder, or s3://BUCKET[/PREFIX] (credentials from the standard AWS chain)")
    p.add_argument("dest", metavar="DEST", help="folder to write into (created if missing)")
    p.add_argument("--layout", choices=("mirror", "flat"), default="mirror",
                   help="mirror the source folders (default) or put every bin folder at the top")
    p.add_argument("--stitch", choices=STITCH_MODES, default="on",
                   help="I-style pairs: stitched (on, default), every ROI as cut (off), or stitched plus a "
                   "stitching/ folder with each stitch's raw composite and gap mask (qc)")
    p.add_argument("--mosaic", metavar="WxH@S", nargs="?", const="", type=_argument(parse_mosaic),
                   help="add mosaic/ to each bin folder: pages of W x H pixels (default 800x600) holding "
                   "every image scaled by S percent (default 33), and coordinates.csv")
    p.add_argument("--zip", action="store_true", help="add BIN.zip to each bin folder: the bin as the IFCB dashboard zips it")
    p.add_argument("--include-skipped", action="store_true", help="also export the 'skip' and 'beads' folders")
    p.add_argument("--products", metavar="DIR[:DIR...]", type=_products, default=(),
                   help="product trees whose files are written into each bin folder (NAME=DIR names one), "
                   "as -o products= does for the mount")
    p.add_argument("--blobs", action="store_true", help="with --products: blobs/ in each bin folder with a blobs zip")
    p.add_argument("--classes", action="store_true",
                   help="by-class/CLASSIFIER/LABEL/YYYY/ with relative symbolic links to the images")
    p.add_argument("--bins-csv", action="store_true", help="bins.csv: one row per exported bin")
    p.add_argument("--bins", metavar="GLOB", action="append", default=[],
                   help="only bins whose id matches this pattern (fnmatch; may be repeated)")
    p.add_argument("--since", metavar="DATE", type=_argument(parse_date),
                   help="only bins sampled at or after DATE (UTC: 2024-06-01 or 2024-06-01T12:00:00Z)")
    p.add_argument("--until", metavar="DATE", type=_argument(parse_date), help="only bins sampled before DATE (UTC)")
    p.add_argument("--instrument", metavar="N[:N...]", type=_argument(parse_instruments), action="append", default=[],
                   help="only bins of these instruments (may be repeated)")
    p.add_argument("--endpoint", metavar="URL", type=_argument(s3.check_endpoint),
                   help="s3:// only: the S3-compatible service (default: AWS, or $AWS_ENDPOINT_URL)")
    p.add_argument("--region", metavar="NAME", type=_argument(s3.check_region),
                   help="s3:// only: its region (default: the AWS configuration's)")
    p.add_argument("-j", "--jobs", metavar="N", type=_jobs, default=len(os.sched_getaffinity(0)) or 1,
                   help="processes writing bins (default: the cores this process may use)")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p


def source_options(args) -> dict:
    """What open_source needs besides SOURCE; --endpoint and --region are for s3:// only."""
    if not s3.is_url(args.source):
        if args.endpoint or args.region:
            raise UsageError("--endpoint and --region apply to s3://BUCKET[/PREFIX] sources only", 2)
        return {}
    try:
        s3.parse_url(args.source)
    except ValueError as err:
        raise UsageError(str(err), 2) from None
    return {"endpoint": args.endpoint, "region": args.region, "threads": 1}


def check_paths(source: str, dest: str, options: dict | None = None) -> None:
    """Refuse, with one clear line, a SOURCE that cannot be read or a DEST that cannot be written."""
    problem = root_problem(source, options)
    if problem:
        raise UsageError(problem)
    if not s3.is_url(source) and within(dest, source):
        raise UsageError(f"destination {dest} is inside the source {source}: choose a folder outside it")
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create destination {dest}: {err.strerror}") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise UsageError(f"destination {dest} cannot be written (permission denied)")


def bin_filter(args) -> BinFilter:
    """The bins --since, --until, --instrument and --bins select (as the mount's filter options)."""
    try:
        return BinFilter(args.since, args.until, frozenset().union(*args.instrument), tuple(args.bins))
    except ValueError as err:
        raise UsageError(f"{err} (see {PROG} --help)", 2) from None


def select_bins(ns: Namespace, report) -> tuple[list[Node], list[Node], int]:
    """Walk the tree (the filter's bins only) without loading bins: (folders on the way to a bin,
    the bins, errors)."""
    folders, bins, errors = [], [], 0

    def visit(node: Node) -> bool:
        nonlocal errors
        try:
            children = ns.children(node.ino)
        except FsError as err:
            report.log(f"{node.path or '.'}: {err}")
            errors += 1
            return False
        picked = [c for c in children.values() if c.kind == BIN]
        bins.extend(picked)
        used = [c for c in children.values() if c.kind == DIR and visit(c)] or picked
        if used:
            folders.append(node)
        return bool(used)

    visit(ns.root)
    return folders, bins, errors


# --- the worker side -------------------------------------------------------------------------
_worker: dict = {}


def _init_worker(source: str, source_opts: dict, include_skipped: bool, options: Options, stop) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    quiet = logging.getLogger("ifcbfs")  # problems come back in the result: one line per bin
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    root = DataRoot(open_source(source, options=source_opts), include_skipped)
    _worker.update(ns=Namespace(root, options), stop=stop)


def export_bin(path: str, files, folder: str) -> tuple:
    """Write one bin's files into `folder`: (written, unchanged, errors, images, message, finished)."""
    ns, stop = _worker["ns"], _worker["stop"]
    written = unchanged = images = 0
    problems: list[str] = []
    if stop.is_set():
        return 0, 0, 0, 0, None, False
    node = None
    try:
        if not ns.source.source.remote and within(folder, ns.source.root):
            raise OSError(f"{folder} leads into the source: not written")
        node = ns.load_bin(path, replace(files, source=ns.source.source))  # this process's connections
        for child, dest in _files_of(ns, node, folder):
            if stop.is_set():
                return written, unchanged, len(problems), images, _summary(path, problems), False
            st = _present(dest)
            if st is not None and st.st_size == child.size and st.st_mtime_ns == child.mtime_ns:
                unchanged += 1
                continue
            try:
                _write(dest, ns.pieces(child), child.mtime_ns)
            except (FsError, OSError) as err:
                problems.append(str(err))
                continue
            written += 1
            images += child.name.endswith(".png")
    except (FsError, OSError) as err:
        problems.append(str(err))
    except Exception as err:  # a bin must never stop the export
        problems.append(f"{type(err).__name__}: {err}")
    finally:
        if node is not None:
            ns.release(node)
    return written, unchanged, len(problems), images, _summary(path, problems), True


def _summary(path: str, problems: list[str]) -> str | None:
    many = f"{len(problems)} files not exported, the first" if len(problems) > 1 else "not exported"
    return f"{path}: {many}: {problems[0]}" if problems else None


def _files_of(ns: Namespace, node: Node, folder: str):
    """(file node, its path at DEST) for every file of a bin folder and of the folders inside it
    (`stitching/`), each folder created first and given its mtime once its files are written."""
    os.makedirs(folder, exist_ok=True)
    _clear_temporaries(folder)
    for child in ns.listing(node.ino):
        if child.is_dir:
            yield from _files_of(ns, child, os.path.join(folder, child.name))
        else:
            yield child, os.path.join(folder, child.name)
    os.utime(folder, ns=(node.mtime_ns, node.mtime_ns))


def _clear_temporaries(folder: str) -> None:
    """Remove the temporaries a killed run left in a folder."""
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX):
                os.unlink(entry.path)


def _present(path: str) -> os.stat_result | None:
    """The stat of a regular file already at `path`, else None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _write(path: str, pieces, mtime_ns: int) -> None:
    """Write the pieces under a temporary name in the same folder, set the mtime, then rename
    into place."""
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as fh:
            for piece in pieces:
                fh.write(piece)
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_view(ns: Namespace, node: Node, path: str) -> tuple:
    """Write a view (`by-class/` with its links, `bins.csv`) as the mount shows it:
    (written, unchanged, errors, 0, message, 0)."""
    written = unchanged = 0
    problems: list[str] = []
    try:
        if node.kind == VFILE:
            st = _present(path)
            if st is not None and st.st_size == node.size and st.st_mtime_ns == node.mtime_ns:
                unchanged += 1
            else:
                _write(path, ns.pieces(node), node.mtime_ns)
                written += 1
        elif node.kind == LINK:
            if os.path.islink(path) and os.readlink(path) == node.target:
                unchanged += 1
            else:
                tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}{TMP_SUFFIX}")
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                os.symlink(node.target, tmp)
                os.replace(tmp, path)
                written += 1
            os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
        else:
            os.makedirs(path, exist_ok=True)
            for child in ns.listing(node.ino):
                w, u, errors, _, message, _ = write_view(ns, child, os.path.join(path, child.name))
                written, unchanged = written + w, unchanged + u
                problems += [message] * errors
            os.utime(path, ns=(node.mtime_ns, node.mtime_ns))
    except (FsError, OSError) as err:
        problems.append(f"{node.path}: not exported: {err}")
    return written, unchanged, len(problems), 0, problems[0] if problems else None, 0


# --- the main process ------------------------------------------------------------------------
class Report:
    """Counts, the progress bar and log lines that do not break it."""

    def __init__(self, total: int, stream=None):
        self.bar = Bar(total, stream)
        self.stream = self.bar.stream
        self.bins = self.written = self.unchanged = self.errors = self.images = 0

    def add(self, written, unchanged, errors, images, message, finished) -> None:
        self.written, self.unchanged, self.errors = self.written + written, self.unchanged + unchanged, self.errors + errors
        self.images, self.bins = self.images + images, self.bins + finished
        if message:
            self.log(message)

    def log(self, message: str) -> None:
        self.bar.clear()
        print(f"{PROG}: {message}", file=self.stream, flush=True)

    def progress(self) -> None:
        self.bar.show(self.bins, f"{self.written + self.unchanged} files, {self.bins}/{self.bar.total} bins, "
                      f"{self.images / self.bar.elapsed():.0f} images/s")

    def done(self) -> None:
        self.bar.clear()
        elapsed = self.bar.elapsed()
        print(f"exported {self.bins} bins: {self.written} files written, {self.unchanged} unchanged, "
              f"{self.errors} errors in {elapsed:.1f} s ({self.images / elapsed:.0f} images/s)",
              file=self.stream, flush=True)


def run(args) -> int:
    """Export; returns the exit status (0, 1 when any file was not exported, 130 when interrupted)."""
    source = args.source if s3.is_url(args.source) else os.path.abspath(args.source)
    dest, source_opts = os.path.abspath(args.dest), source_options(args)
    selected = bin_filter(args)
    check_paths(source, dest, source_opts)
    problem = products_problem(args.products)
    if problem:
        raise UsageError(problem)
    options = Options(layout=args.layout, cache_size=0, stitch=args.stitch, mosaic=args.mosaic, zip=args.zip,
                      products=args.products, blobs=args.blobs, classes=args.classes, bins_csv=args.bins_csv)
    root = DataRoot(open_source(source, options=source_opts), args.include_skipped, bin_filter=selected)
    catalog, views = attach(root, options, None, (dest,))
    ns = Namespace(root, options, None, views)
    report = Report(0)
    if catalog is not None:  # the product trees, and what the views show, before any bin
        crawler = Crawler(ns, catalog)
        crawler.walk_tree(crawler.walk_products(report.bar.text), report.bar.text)
    folders, bins, report.errors = select_bins(ns, report)
    report.bar.total = len(bins)
    target = lambda node: os.path.join(dest, *node.path.split("/")) if node.path else dest  # noqa: E731
    ctx = multiprocessing.get_context()
    stop = ctx.Event()
    jobs = max(1, min(args.jobs, len(bins)))
    pending: dict[Future, str] = {}
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(source, source_opts, args.include_skipped, options, stop)) as pool:
        try:
            for b in bins:
                pending[pool.submit(export_bin, b.path, b.files, target(b))] = b.path
            while pending:
                done, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in done:
                    report.add(*_outcome(future, pending.pop(future)))
                report.progress()
        except KeyboardInterrupt:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # workers end their current file
            try:
                stop.set()
                for future, path in pending.items():
                    if not future.cancel():
                        report.add(*_outcome(future, path))
            finally:
                signal.signal(signal.SIGINT, previous)
            report.bar.clear()
            print(f"interrupted: {report.written} files written, {report.bar.total - report.bins} of "
                  f"{report.bar.total} bins left", file=report.stream, flush=True)
            return 130
    for node in ns.listing(ROOT_INO):
        if node.view is not None:
            report.add(*write_view(ns, node, os.path.join(dest, node.name)))
    for node in sorted(folders, key=lambda n: n.path.count("/") + bool(n.path), reverse=True):
        try:  # deepest first: setting a folder's mtime does not change its parent's
            os.utime(target(node), ns=(node.mtime_ns, node.mtime_ns))
        except FileNotFoundError:
            pass  # it only holds bins that could not be read
    report.done()
    return 1 if report.errors else 0


def _outcome(future: Future, path: str) -> tuple:
    """A worker's result; a worker that died (out of memory, killed) counts as one error."""
    try:
        return future.result()
    except Exception as err:
        return 0, 0, 1, 0, f"{path}: not exported: {type(err).__name__}: {err}", True


def main(argv: list[str] | None = None) -> int:
    """Entry point of `ifcbfs-export` and `python -m ifcbfs.export`."""
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING)
    try:
        args = make_parser().parse_args(sys.argv[1:] if argv is None else argv)
        return run(args)
    except UsageError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return err.status
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("interrupted: 0 files written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
