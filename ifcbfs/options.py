"""The command line's options: what `-o OPT[,OPT...]` accepts, each value checked with one clear
line when it is wrong, and the configuration they make (shared by the mount, `ifcbfs index`
and `ifcbfs-export`)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from . import __version__
from .core import s3
from .core.records import STITCH_MODES
from .core.binfilter import BinFilter, parse_date, parse_instruments
from .core.local import within
from .core.mosaic import parse_mosaic
from .core.source import DataRoot, open_source, root_problem
from .fs.nodes import Options

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


def products_problem(roots: tuple[tuple[str, str], ...], mnt: str | None = None) -> str | None:
    """Why a product tree cannot be read, or would be hidden by the mount, in one line; else None."""
    for name, path in roots:
        problem = root_problem(path)
        if problem:
            return f"products {name}: {problem.replace('source ', '', 1)}"
        if mnt and within(path, mnt):
            return f"products {name}: {path} is inside the mountpoint {mnt}: the mount would hide it"
    return None
