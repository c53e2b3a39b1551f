"""`ifcbfs SOURCE MOUNTPOINT [-f] [-d] [-o OPT[,OPT...]]`: the form mount(8), fstab and systemd use."""
from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field

from . import __version__, service
from .core.bin import STITCH_MODES
from .core.binfilter import BinFilter, parse_date, parse_instruments
from .core.local import within
from .core.mosaic import parse_mosaic
from .core import s3
from .core.source import DataRoot, open_source, root_problem
from .fs.namespace import Namespace, Options

log = logging.getLogger("ifcbfs")
REMOTE_WORKERS = 16  # threads for an object store: they mostly wait on the network

USAGE = """\
usage: ifcbfs SOURCE MOUNTPOINT [-f] [-d] [-o OPT[,OPT...]]
       ifcbfs index SOURCE [-o OPT[,OPT...]]    (build the index first: see ifcbfs index --help)
       ifcbfs --help | --version

Show the raw IFCB data under SOURCE (.hdr/.adc/.roi files) at MOUNTPOINT as a read-only
tree of bin folders holding BIN_NNNNN.png images, hdr.json and adc.csv. SOURCE is a folder
or an object store's s3://BUCKET[/PREFIX] (credentials from the standard AWS chain).

  -f              stay in the foreground (default: return once the mount serves files)
  -d              log every request (implies nothing else; combine with -f to see it)
  -o OPTIONS      comma-separated mount options:
     layout=mirror|flat   mirror the source folders (default) or put every bin at the root
     stitch=on|off|qc     I-style pairs: stitched (on, default), every ROI as cut (off), or
                          stitched plus stitching/ with each stitch's raw composite and gap mask (qc)
     mosaic[=WxH@S]       add mosaic/ to each bin folder: pages of W x H pixels (default 800x600)
                          holding every image scaled by S percent (default 33), and coordinates.csv
     zip                  add BIN.zip to each bin folder: the bin as the IFCB dashboard zips it
     since=DATE           only bins sampled at or after DATE (UTC: 2024-06-01, 2024-06-01T12:00:00Z)
     until=DATE           only bins sampled before DATE (UTC)
     instrument=N[:N...]  only bins of these instruments, e.g. instrument=5:124
     products=DIR[:DIR...]  product trees (features, class scores, blobs, manual annotations) whose
                          files are shown in each bin folder; NAME=DIR names a tree (default: its
                          folder name), which is its classifier in by-class/
     blobs                with products: blobs/ in each bin folder that has a blobs zip
     classes              by-class/CLASSIFIER/LABEL/YYYY/: links to the images, one folder per class
     bins_csv             bins.csv at the root: one row per bin (time, volume, concentration, path)
     include_skipped      also show the 'skip' and 'beads' folders
     allow_other          let other users read the mount (modes are enforced)
     uid=N, gid=N         owner shown for every file (default: the mounting user)
     umask=NNN            octal permission bits to hide (default 022: files 0644, folders 0755)
     cache_size=SIZE      bytes of produced files kept in memory, e.g. 256M (default 256M)
     bin_cache=SIZE       bytes of listed bins kept in memory (default 64M); more are read again
                          from the index when asked for
     index=PATH|off       where the index of listed bins is kept between mounts (default: a file
                          under $XDG_CACHE_HOME/ifcbfs); off: keep none
     poll=SECONDS         how often the source is re-checked for new or growing bins (default 2; 0: never)
     workers=N            threads that read and decode images, 1 or more (default: the number
                          of cores; 16 for s3://)
     endpoint=URL         s3:// only: the S3-compatible service (default: AWS, or $AWS_ENDPOINT_URL)
     region=NAME          s3:// only: its region (default: the AWS configuration's)
     readahead=SIZE       s3:// only: bytes fetched ahead of a reader that walks a bin in order,
                          and a walk's next bin listed ahead (default 512K; 0: off, no GET
                          ahead of what a request asks for)
     fsname=NAME          name shown by mount and df (default: SOURCE)
     log=FILE             append log lines and SIGUSR1 stack dumps to FILE (default: stderr with -f,
                          else syslog, else ~/.local/state/ifcbfs/MOUNTPOINT.log)
     nonempty             allow mounting over a folder that is not empty
     recover              clear a dead ifcbfs mount left at MOUNTPOINT (after a crash) first
     ro                   accepted: ifcbfs is always read-only (rw is refused)
Unmount with: fusermount3 -u MOUNTPOINT
"""
SWITCH_INTERVAL = 0.0005  # s: a request waits at most this for the GIL behind a worker thread's parse
_IGNORED = {"ro", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime",
            "relatime", "auto", "noauto", "user", "users", "nouser", "_netdev", "nofail",
            "defaults", "async", "sync"}


class UsageError(Exception):
    """Bad command line or paths: the message is printed as one line, exit status 1 or 2."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


@dataclass
class Config:
    source: str
    mountpoint: str
    foreground: bool = False
    debug: bool = False
    options: Options = field(default_factory=Options)
    allow_other: bool = False
    include_skipped: bool = False
    fsname: str = ""
    nonempty: bool = False
    recover: bool = False
    poll: float = 2.0
    workers: int = 0
    log: str = ""  # the log file; "" for the default (see service.log_file)
    index: str = ""  # the index file; "" for the default place, "off" for none
    bin_filter: BinFilter = field(default_factory=BinFilter)  # which bins the tree shows
    endpoint: str | None = None  # s3:// sources only
    region: str | None = None
    readahead: int | None = None

    @property
    def signature(self) -> str:
        """What an index is kept for: the options that shape the tree and which bins it shows (the
        catalog beside the bins' records lists the bins a view shows)."""
        return ",".join(p for p in (self.options.signature, self.bin_filter.signature,
                                    "include_skipped" if self.include_skipped else "") if p)

    @property
    def threads(self) -> int:
        """Worker threads: the cores for a folder; more for an object store, whose reads wait."""
        if self.workers:
            return self.workers
        return max(REMOTE_WORKERS, os.cpu_count() or 2) if s3.is_url(self.source) else os.cpu_count() or 2

    def source_options(self) -> dict:
        """What open_source needs besides SOURCE (the object store's endpoint, region, threads)."""
        if not s3.is_url(self.source):
            return {}
        options = {"endpoint": self.endpoint, "region": self.region, "threads": self.threads}
        return options if self.readahead is None else {**options, "readahead": self.readahead}

    def data_root(self, exclude: str | None = None) -> DataRoot:
        """The data root SOURCE names, with the filters the options ask for."""
        source = open_source(self.source, (exclude,) if exclude else (), self.source_options())
        return DataRoot(source, self.include_skipped, bin_filter=self.bin_filter)


def parse_size(given: str, key: str = "cache_size") -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = given.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text[-1:] in units and text[-1:] else (text, "")
    try:
        value = int(float(number) * units[unit])
    except (ValueError, KeyError, OverflowError):
        raise UsageError(f"{key}={given!r}: expected bytes, like 268435456 or 256M", 2) from None
    if value < 0:
        raise UsageError(f"{key}={given!r}: must not be negative (0 keeps nothing in memory)", 2)
    return value


def _whole(key: str, value: str, least: int, most: int = 2**32 - 2) -> int:
    """`value` as a whole number from `least` to `most`, or a one-line error naming the option."""
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not least <= number <= most:
        raise UsageError(f"{key}={value!r}: expected a whole number from {least} to {most}", 2)
    return number


def _poll(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (seconds > 0 and math.isfinite(seconds) or seconds == 0):
        raise UsageError(f"poll={value!r}: expected seconds > 0, or 0 to re-check only on SIGHUP", 2)
    return seconds


def _umask(value: str) -> int:
    """`umask=027`: octal, 0 to 777, as for sshfs and ntfs-3g."""
    try:
        number = int(value, 8)
    except ValueError:
        number = -1
    if not 0 <= number <= 0o777:
        raise UsageError(f"umask={value!r}: expected octal permission bits, like 022 or 027", 2)
    return number


def _text(key: str, value: str) -> str:
    if not value:
        raise UsageError(f"{key}= needs a value: {key}=NAME", 2)
    return value


def product_roots(value: str) -> tuple[tuple[str, str], ...]:
    """`products=DIR[:DIR...]`, each DIR possibly `NAME=DIR`: (name, absolute folder) in order.
    A tree's name is its classifier in by-class/: one folder name, unique, and not `manual`."""
    roots: list[tuple[str, str]] = []
    for part in value.split(":"):
        name, sep, path = part.partition("=")
        if not sep:
            name, path = "", part
        if not path:
            raise UsageError(f"products={value!r}: expected DIR[:DIR...] or NAME=DIR", 2)
        path = os.path.abspath(path)
        name = name or os.path.basename(path.rstrip(os.sep)) or "products"
        if "/" in name or name.startswith(".") or name == "manual":
            raise UsageError(f"products: {name!r} cannot name a product tree (its classifier folder in by-class/; "
                             f"'manual' is the manual annotations'): give it another with NAME={path}", 2)
        if any(name == other for other, _ in roots):
            raise UsageError(f"products: two trees are named {name!r}: name them apart with NAME=DIR", 2)
        roots.append((name, path))
    return tuple(roots)


_FLAGS = {"include_skipped", "allow_other", "nonempty", "recover"}
_VALUES = {  # option -> what turns its text into its value (raising UsageError)
    "layout": lambda v: v if v in ("mirror", "flat") else _fail(f"layout={v!r}: expected mirror or flat"),
    "mosaic": lambda v: _parsed(parse_mosaic, v),
    "since": lambda v: _parsed(parse_date, v, "since: "),
    "until": lambda v: _parsed(parse_date, v, "until: "),
    "instrument": lambda v: _parsed(parse_instruments, v, "instrument: "),
    "stitch": lambda v: v if v in STITCH_MODES else _fail(f"stitch={v!r}: expected on, off or qc"),
    "products": product_roots,
    "umask": _umask,
    "uid": lambda v: _whole("uid", v, 0),
    "gid": lambda v: _whole("gid", v, 0),
    "cache_size": parse_size,
    "bin_cache": lambda v: parse_size(v, "bin_cache"),
    "index": lambda v: "off" if v == "off" else os.path.abspath(_text("index", v)),
    "poll": _poll,
    "workers": lambda v: _whole("workers", v, 1, 1024),
    "fsname": lambda v: _text("fsname", v),
    "log": lambda v: os.path.abspath(_text("log", v)),
    "endpoint": lambda v: _parsed(s3.check_endpoint, v),
    "region": lambda v: _parsed(s3.check_region, v),
    "readahead": lambda v: parse_size(v, "readahead"),
}


_VALUE_OPTIONAL = {"mosaic"}  # `mosaic` alone takes the default page
_OPTION_FLAGS = {"zip", "blobs", "classes", "bins_csv"}  # flags that shape the tree (Options), not the mount


def _fail(message: str):
    raise UsageError(message, 2)


def parse_args(argv: list[str]) -> Config:
    """Parse the command line (no filesystem access)."""
    positional, opts = [], []
    foreground = debug = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            raise UsageError(USAGE, 0)
        if arg == "--version":
            raise UsageError(f"ifcbfs {__version__}", 0)
        if arg == "-f":
            foreground = True
        elif arg == "-d":
            debug = True
        elif arg == "-o":
            if not args:
                raise UsageError("-o needs a list of options", 2)
            opts.extend(o for o in args.pop(0).split(",") if o)
        elif arg.startswith("-o") and len(arg) > 2:
            opts.extend(o for o in arg[2:].split(",") if o)
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown argument {arg!r} (see ifcbfs --help)", 2)
        else:
            positional.append(arg)
    if len(positional) != 2:
        raise UsageError("expected SOURCE and MOUNTPOINT (see ifcbfs --help)", 2)
    source = positional[0] if s3.is_url(positional[0]) else os.path.abspath(positional[0])
    cfg = Config(source, os.path.abspath(positional[1]), foreground, debug)
    given: dict[str, tuple[str, object]] = {}  # option -> (its text, its value)
    for opt in opts:
        key, sep, text = opt.partition("=")
        if key == "rw":
            raise UsageError("rw: ifcbfs is read-only; use ro (mount(8) adds rw when the options lack ro)", 2)
        if key in _IGNORED:
            continue
        if key in _FLAGS and not sep:
            setattr(cfg, key, True)
        elif key in _OPTION_FLAGS and not sep:
            given[key] = ("", True)
        elif key in _VALUES and (sep or key in _VALUE_OPTIONAL):
            value = _VALUES[key](text)
            if key in given and given[key][1] != value:
                raise UsageError(f"{key}= is given twice ({given[key][0]} and {text}): give it once", 2)
            given[key] = (text, value)
        elif key in _VALUES:
            raise UsageError(f"{key} needs a value: {key}=... (see ifcbfs --help)", 2)
        elif key in _FLAGS or key in _OPTION_FLAGS:
            raise UsageError(f"{key}={text!r}: {key} takes no value: write {key} alone", 2)
        else:
            raise UsageError(f"unknown option {opt!r} (see ifcbfs --help)", 2)
    values = {key: value for key, (_, value) in given.items()}
    cfg.fsname, cfg.log, cfg.index = values.pop("fsname", ""), values.pop("log", ""), values.pop("index", "")
    cfg.poll, cfg.workers = values.pop("poll", cfg.poll), values.pop("workers", 0)
    cfg.endpoint, cfg.region, cfg.readahead = (values.pop(key, None) for key in ("endpoint", "region", "readahead"))
    if s3.is_url(source):
        _parsed(s3.parse_url, source)
    elif (cfg.endpoint, cfg.region, cfg.readahead) != (None, None, None):
        raise UsageError("endpoint=, region= and readahead= apply to s3://BUCKET[/PREFIX] sources only", 2)
    window = {field: values.pop(key) for key, field in (("since", "since"), ("until", "until"),
                                                        ("instrument", "instruments")) if key in values}
    cfg.bin_filter = _parsed(lambda _: BinFilter(**window), "")
    cfg.options = Options(**{"uid": os.getuid(), "gid": os.getgid(), "cache_size": 256 << 20, **values})
    return cfg


def advice(cfg: Config) -> list[str]:
    """Warnings about options that work but probably do not do what was meant."""
    out = []
    for key, value, own in (("uid", cfg.options.uid, os.getuid()), ("gid", cfg.options.gid, os.getgid())):
        if value != own and not cfg.allow_other:
            out.append(f"{key}={value} without allow_other: files show {key} {value} as owner, but only "
                       f"the mounting user can open them (add allow_other to let others read)")
    for flag in ("blobs", "classes"):
        if getattr(cfg.options, flag) and not cfg.options.products:
            out.append(f"{flag} without products=DIR: there are no product files to show it from")
    return out


def _parsed(parse, value: str, prefix: str = ""):
    """`parse(value)`, its ValueError as a one-line usage error."""
    try:
        return parse(value)
    except ValueError as err:
        raise UsageError(f"{prefix}{err}", 2) from None


def _stale(path: str) -> bool:
    """True for a FUSE mount whose daemon is gone (statvfs always asks the daemon; stat may not)."""
    try:
        os.statvfs(path)
    except OSError as err:
        return err.errno == errno.ENOTCONN
    return False


def nesting_problem(src: str, mnt: str) -> str | None:
    """Why a mount of `src` at `mnt` would read itself or hide its own source; None if it would not."""
    if within(mnt, src) and within(src, mnt):
        return f"source and mountpoint are the same folder ({os.path.realpath(src)}): mount somewhere else"
    if within(mnt, src):
        return (f"mountpoint {mnt} is inside the source {src}: the mount would read itself and hang; "
                f"choose a mountpoint outside the source")
    if within(src, mnt):
        return f"source {src} is inside the mountpoint {mnt}: the mount would hide it; choose a mountpoint outside it"
    return None


def products_problem(roots: tuple[tuple[str, str], ...], mnt: str | None = None) -> str | None:
    """Why a product tree cannot be read, or would be hidden by the mount, in one line; else None."""
    for name, path in roots:
        problem = root_problem(path)
        if problem:
            return f"products {name}: {problem.replace('source ', '', 1)}"
        if mnt and within(path, mnt):
            return f"products {name}: {path} is inside the mountpoint {mnt}: the mount would hide it"
    return None


def check_paths(cfg: Config) -> None:
    """Refuse, with one clear line, what cannot be mounted; clear a dead mount with `recover`."""
    src, mnt = cfg.source, cfg.mountpoint
    problem = (root_problem(src, cfg.source_options()) or (None if s3.is_url(src) else nesting_problem(src, mnt))
               or products_problem(cfg.options.products, mnt))
    if problem:
        raise UsageError(problem)
    if not os.path.exists("/dev/fuse"):
        raise UsageError("/dev/fuse is missing: load the fuse module (modprobe fuse) or, in a container, pass --device /dev/fuse")
    if not shutil.which("fusermount3"):
        raise UsageError("fusermount3 is not installed: install the fuse3 package (apt-get install fuse3)")
    if _stale(mnt):
        if not cfg.recover:
            raise UsageError(
                f"mountpoint {mnt}: transport endpoint is not connected (a previous ifcbfs died); "
                f"clear it with 'fusermount3 -uz {mnt}' or mount again with -o recover")
        log.warning("%s: clearing the dead mount left by a previous ifcbfs", mnt)
        subprocess.run(["fusermount3", "-uz", mnt], check=False)
        if _stale(mnt):
            raise UsageError(f"mountpoint {mnt}: could not clear the dead mount (try 'umount -l {mnt}' as root)")
    if not os.path.lexists(mnt):
        raise UsageError(f"mountpoint {mnt} does not exist (create it with mkdir)")
    if not os.path.isdir(mnt):
        raise UsageError(f"mountpoint {mnt} is not a folder")
    if os.path.ismount(mnt):
        raise UsageError(f"mountpoint {mnt} is already mounted (unmount it first: fusermount3 -u {mnt})")
    if not cfg.nonempty and os.listdir(mnt):
        raise UsageError(f"mountpoint {mnt} is not empty (use -o nonempty to mount over it anyway)")


def fuse_options(cfg: Config) -> set[str]:
    opts = {"ro", "default_permissions", "subtype=ifcbfs", f"fsname={cfg.fsname or cfg.source}"}
    if cfg.allow_other:
        opts.add("allow_other")
    return opts


def open_index(cfg: Config):
    """The persistent index the options ask for (None with index=off)."""
    from .index import Index, default_path

    if cfg.index == "off":
        return None
    return Index(cfg.index or default_path(cfg.source, cfg.signature), cfg.signature)


def serve(cfg: Config, on_ready, root: DataRoot) -> int:
    """Mount and serve until unmounted or told to stop; `on_ready()` once files are served.

    Unmounts only when told to (SIGTERM, SIGINT, fusermount3 -u) and returns 0. On any other
    end it logs why, leaves the mount dead (never an empty folder) and returns 1."""
    import pyfuse3
    import trio

    from .crawler import Crawler, attach
    from .fs import ops as fs_ops

    service.one_malloc_arena()
    sys.setswitchinterval(SWITCH_INTERVAL)

    index = open_index(cfg)
    catalog, views = attach(root, cfg.options, index, (cfg.mountpoint,))
    ns = Namespace(root, cfg.options, index, views)
    crawler = Crawler(ns, catalog) if catalog is not None else None
    ops = fs_ops.Operations(ns, workers=cfg.threads, debug=cfg.debug)
    try:
        pyfuse3.init(ops, cfg.mountpoint, fuse_options(cfg))
    except RuntimeError as err:
        raise UsageError(f"cannot mount at {cfg.mountpoint}: {err}") from None

    async def signals():
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as received:
            async for signum in received:
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: dropping caches and re-reading the source")
                    try:
                        ns.drop_caches()
                        if crawler:
                            crawler.recheck()
                        await fs_ops.apply_changes(ops, True)
                    except Exception as err:  # like the watcher: a failed re-check never ends the daemon
                        log.error("SIGHUP: re-reading the source failed (%s: %s); still serving what was "
                                  "read before", type(err).__name__, err)
                    continue
                log.info("%s: unmounting %s", signal.Signals(signum).name, cfg.mountpoint)
                service.stopping()
                pyfuse3.terminate()
                return

    async def announce():
        await trio.sleep(0)
        on_ready()
        log.info("serving %s at %s", cfg.source, cfg.mountpoint)
        service.ready(f"serving {cfg.source} at {cfg.mountpoint}")
        while True:
            await trio.sleep(10)
            service.status(f"serving {cfg.source}: {ns.status()}" + (f"; {crawler.status()}" if crawler else ""))

    async def main():
        if crawler:
            crawler.start(cfg.poll)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(signals)
            nursery.start_soon(announce)
            nursery.start_soon(ops.read_ahead)
            if cfg.poll > 0:
                nursery.start_soon(fs_ops.watch, ops, cfg.poll)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except KeyboardInterrupt:  # SIGINT before the signal task listened: a request to stop
        pyfuse3.close(unmount=True)
        raise
    except BaseException as err:
        _shut(crawler, index, catalog)
        log.critical("stopped by an unexpected error (%s: %s). The mount at %s is left dead, not unmounted: an "
                     "empty folder there could make rsync --delete empty a mirror; reads fail with 'transport "
                     "endpoint is not connected'. Clear it with 'fusermount3 -u %s' or mount again with -o recover",
                     type(err).__name__, err, cfg.mountpoint, cfg.mountpoint, exc_info=err)
        pyfuse3.close(unmount=False)
        return 1
    _shut(crawler, index, catalog)
    pyfuse3.close(unmount=True)  # asked to stop (SIGTERM, SIGINT) or unmounted from outside
    return 0


def _shut(crawler, index, catalog) -> None:
    """Stop the crawler, write what the index has queued and close it, stop the product reader."""
    from .core import beside

    for step in (crawler and crawler.stop, index and index.close, catalog and catalog.close, beside.close_reader):
        try:
            if step:
                step()
        except Exception as err:  # shutting down: say it, never hide the reason the daemon stops
            log.warning("while stopping: %s: %s", type(err).__name__, err)


def _daemon(cfg: Config, logfile: str | None, root: DataRoot) -> int:
    """Fork; the child mounts and serves, the parent returns once it serves (or says why not)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode(errors="replace").strip()
        if message == "ok":
            return 0
        os.waitpid(pid, 0)
        print(message or "ifcbfs: the filesystem process ended before it served files", file=sys.stderr)
        return 1
    os.close(read_end)
    os.setsid()
    os.chdir("/")
    service.enable_stack_dumps(service.setup_logging(foreground=False, debug=cfg.debug, logfile=logfile))

    def ready():
        try:
            os.write(write_end, b"ok")
        except OSError:  # the starting command was interrupted: serve all the same
            pass
        os.close(write_end)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)

    try:
        code = serve(cfg, ready, root)
    except UsageError as err:
        os.write(write_end, f"ifcbfs: {err}".encode())
        os._exit(1)
    except BaseException as err:  # report, never hang the parent
        log.exception("ifcbfs stopped")
        try:
            os.write(write_end, f"ifcbfs: {type(err).__name__}: {err}".encode())
        except OSError:
            pass
        os._exit(1)
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["index"]:
        from .indexer import main as index_main

        return index_main(argv[1:])
    try:
        cfg = parse_args(argv)
        logfile = service.log_file(cfg.log, cfg.foreground, cfg.mountpoint)
        if cfg.foreground:
            service.setup_logging(foreground=True, debug=cfg.debug)
        else:
            logging.basicConfig(format="ifcbfs: %(message)s", level=logging.INFO)
        for warning in advice(cfg):
            log.warning("%s", warning)
        check_paths(cfg)
        if logfile:  # made only now: a refused mount leaves no file behind
            problem = service.log_file_problem(logfile)
            if problem:
                raise UsageError(f"log file {logfile} {problem}: choose another with -o log=FILE")
        if cfg.foreground:
            service.enable_stack_dumps(service.setup_logging(foreground=True, debug=cfg.debug, logfile=logfile))
        root = cfg.data_root(exclude=cfg.mountpoint)
        if not root.leads_to_bins(""):
            log.warning("source %s holds no bins (no .hdr, .adc or .roi file named by a bin id%s): the mount "
                        "stays empty until some are written", cfg.source,
                        "" if cfg.include_skipped else " outside 'skip' and 'beads' folders")
        if cfg.foreground:
            return serve(cfg, lambda: None, root)
        if logfile and not cfg.log:
            print(f"ifcbfs: no syslog here ({service.SYSLOG_SOCKET} is missing): logging to {logfile} "
                  f"(choose the file with -o log=FILE)", file=sys.stderr)
        return _daemon(cfg, logfile, root)
    except UsageError as err:
        if err.status == 0:
            print(err)
        else:
            print(f"ifcbfs: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
