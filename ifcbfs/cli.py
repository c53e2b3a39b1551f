"""`ifcbfs SOURCE MOUNTPOINT [-f] [-d] [-o OPT[,OPT...]]`: the form mount(8), fstab and systemd use."""
from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field

from . import __version__, service
from .core.bin import STITCH_MODES
from .core.binfilter import BinFilter, parse_date, parse_instruments
from .core.mosaic import parse_mosaic
from .core.source import DataRoot, root_problem
from .fs.namespace import Namespace, Options

log = logging.getLogger("ifcbfs")

USAGE = """\
usage: ifcbfs SOURCE MOUNTPOINT [-f] [-d] [-o OPT[,OPT...]]
       ifcbfs index SOURCE [-o OPT[,OPT...]]    (build the index first: see ifcbfs index --help)
       ifcbfs --help | --version

Show the raw IFCB data under SOURCE (.hdr/.adc/.roi files) at MOUNTPOINT as a read-only
tree of bin folders holding BIN_NNNNN.png images, hdr.json and adc.csv.

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
     include_skipped      also show the 'skip' and 'beads' folders
     allow_other          let other users read the mount (modes are enforced)
     uid=N, gid=N         owner shown for every file (default: the mounting user)
     umask=NNN            octal permission bits to hide (default 022: files 0644, folders 0755)
     cache_size=SIZE      bytes of produced files kept in memory, e.g. 256M (default 256M)
     index=PATH|off       where the index of listed bins is kept between mounts (default: a file
                          under $XDG_CACHE_HOME/ifcbfs); off: keep none
     poll=SECONDS         how often the source is re-checked for new or growing bins (default 2; 0: never)
     workers=N            threads that decode images (default: the number of cores)
     fsname=NAME          name shown by mount and df (default: SOURCE)
     nonempty             allow mounting over a folder that is not empty
     recover              clear a dead ifcbfs mount left at MOUNTPOINT (after a crash) first
     ro                   accepted: ifcbfs is always read-only
Unmount with: fusermount3 -u MOUNTPOINT
"""
_IGNORED = {"ro", "rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime",
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
    index: str = ""  # the index file; "" for the default place, "off" for none
    bin_filter: BinFilter = field(default_factory=BinFilter)  # which bins the tree shows


def parse_size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text[-1:] in units and text[-1:] else (text, "")
    try:
        value = int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise UsageError(f"cache_size={text!r}: expected bytes, like 268435456 or 256M", 2) from None
    if value < 0:
        raise UsageError("cache_size must not be negative", 2)
    return value


def _int_option(key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{key}={value!r}: expected a whole number", 2) from None
    if number < 0:
        raise UsageError(f"{key}={value!r}: must not be negative", 2)
    return number


def _umask(value: str) -> int:
    """`umask=027`: octal, 0 to 777, as for sshfs and ntfs-3g."""
    try:
        number = int(value, 8)
    except ValueError:
        number = -1
    if not 0 <= number <= 0o777:
        raise UsageError(f"umask={value!r}: expected octal permission bits, like 022 or 027", 2)
    return number


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
    cfg = Config(os.path.abspath(positional[0]), os.path.abspath(positional[1]), foreground, debug)
    values = {"uid": os.getuid(), "gid": os.getgid(), "layout": "mirror", "cache_size": 256 << 20}
    window: dict = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if key in _IGNORED:
            continue
        if key == "layout" and value in ("mirror", "flat"):
            values["layout"] = value
        elif key == "layout":
            raise UsageError(f"layout={value!r}: expected mirror or flat", 2)
        elif key == "stitch" and value in STITCH_MODES:
            values["stitch"] = value
        elif key == "stitch":
            raise UsageError(f"stitch={value!r}: expected on, off or qc", 2)
        elif key == "mosaic":
            values["mosaic"] = _parsed(parse_mosaic, value)
        elif key == "zip" and sep:
            raise UsageError(f"zip={value!r}: zip takes no value (write -o zip)", 2)
        elif key == "zip":
            values["zip"] = True
        elif key in ("since", "until"):
            window[key] = _parsed(parse_date, value, f"{key}: ")
        elif key == "instrument":
            window["instruments"] = _parsed(parse_instruments, value, "instrument: ")
        elif key in ("uid", "gid"):
            values[key] = _int_option(key, value)
        elif key == "umask":
            values["umask"] = _umask(value)
        elif key == "cache_size":
            values["cache_size"] = parse_size(value)
        elif key == "include_skipped" and not sep:
            cfg.include_skipped = True
        elif key == "allow_other" and not sep:
            cfg.allow_other = True
        elif key == "nonempty" and not sep:
            cfg.nonempty = True
        elif key == "recover" and not sep:
            cfg.recover = True
        elif key == "fsname" and sep:
            cfg.fsname = value
        elif key == "poll":
            try:
                cfg.poll = float(value)
            except ValueError:
                raise UsageError(f"poll={value!r}: expected seconds", 2) from None
        elif key == "workers":
            cfg.workers = _int_option(key, value)
        elif key == "index" and value:
            cfg.index = value if value == "off" else os.path.abspath(value)
        else:
            raise UsageError(f"unknown option {opt!r} (see ifcbfs --help)", 2)
    cfg.options = Options(**values)
    cfg.bin_filter = _parsed(lambda _: BinFilter(**window), "")
    return cfg


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


def check_paths(cfg: Config) -> None:
    """Refuse, with one clear line, what cannot be mounted; clear a dead mount with `recover`."""
    src, mnt = cfg.source, cfg.mountpoint
    problem = root_problem(src)
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
    return Index(cfg.index or default_path(cfg.source, cfg.options.signature), cfg.options.signature)


def serve(cfg: Config, on_ready) -> int:
    """Mount and serve until unmounted or told to stop; `on_ready()` once files are served."""
    import pyfuse3
    import trio

    from .fs.ops import Operations, invalidate, watch

    ns = Namespace(DataRoot(cfg.source, cfg.include_skipped, cfg.bin_filter), cfg.options, open_index(cfg))
    ops = Operations(ns, workers=cfg.workers or os.cpu_count() or 2, debug=cfg.debug)
    try:
        pyfuse3.init(ops, cfg.mountpoint, fuse_options(cfg))
    except RuntimeError as err:
        raise UsageError(f"cannot mount at {cfg.mountpoint}: {err}") from None

    async def signals():
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as received:
            async for signum in received:
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: dropping caches and re-reading the source")
                    ns.drop_caches()
                    changes = await trio.to_thread.run_sync(ns.refresh)
                    await trio.to_thread.run_sync(invalidate, changes)
                    continue
                log.info("%s: unmounting %s", signal.Signals(signum).name, cfg.mountpoint)
                service.stopping()
                pyfuse3.terminate()
                return

    async def announce():
        await trio.sleep(0)
        on_ready()
        service.ready(f"serving {cfg.source} at {cfg.mountpoint}")
        while True:
            await trio.sleep(10)
            service.status(f"serving {cfg.source}: {ns.bins_seen()} bins seen")

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(signals)
            nursery.start_soon(announce)
            if cfg.poll > 0:
                nursery.start_soon(watch, ops, cfg.poll)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        pyfuse3.close(unmount=True)
    return 0


def _daemon(cfg: Config) -> int:
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
    service.setup_logging(foreground=False, debug=cfg.debug)

    def ready():
        os.write(write_end, b"ok")
        os.close(write_end)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)

    try:
        code = serve(cfg, ready)
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
        if cfg.foreground:
            service.setup_logging(foreground=True, debug=cfg.debug)
        else:
            logging.basicConfig(format="ifcbfs: %(message)s", level=logging.INFO)
        check_paths(cfg)
        service.enable_stack_dumps()
        if cfg.foreground:
            return serve(cfg, lambda: log.info("serving %s at %s", cfg.source, cfg.mountpoint))
        return _daemon(cfg)
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
