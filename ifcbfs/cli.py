"""`ifcbfs SOURCE MOUNTPOINT [-f] [-d] [-o OPT[,OPT...]]`: the form mount(8), fstab and systemd use."""
from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys

from . import service
from .core import s3
from .core.local import within
from .core.source import DataRoot, root_problem
from .fs.namespace import Namespace
from .options import Config, UsageError, advice, parse_args, products_problem

log = logging.getLogger("ifcbfs")
SWITCH_INTERVAL = 0.0005  # s: a request waits at most this for the GIL behind a worker thread's parse


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
