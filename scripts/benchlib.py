"""Shared parts of the benchmarks (scripts/bench.py and its modes): readers, mounts, datasets.

Imported by scripts/bench.py, bench_scale.py and bench_loader.py; not run on its own.
"""
from __future__ import annotations

import io
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
VENV = os.path.join(REPO, ".venv")
if REPO not in sys.path:
    sys.path.insert(0, REPO)

CEILING = os.path.join(REPO, "scripts", "ceiling_fs.py")
FIXED_MTIME = 1_717_200_000          # 2024-06-01T00:00:00Z, set on every source file
MOUNT_TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- readers
# Module level so that forked reader processes can run them.

def read_file(path: str) -> int:
    with open(path, "rb", buffering=0) as f:
        return len(f.read())


def walk_read(root: str) -> tuple[int, int]:
    """Read every .png under root (os.scandir walk); returns (files, bytes)."""
    files = nbytes = 0
    stack = [root]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            elif e.name.endswith(".png"):
                nbytes += read_file(e.path)
                files += 1
    return files, nbytes


def read_bins(bin_dirs: list[str]) -> tuple[int, int]:
    """Read every .png of the given bin folders; returns (files, bytes)."""
    files = nbytes = 0
    for d in bin_dirs:
        f, b = walk_read(d)
        files += f
        nbytes += b
    return files, nbytes


def stat_walk(root: str) -> int:
    """os.walk + os.lstat of every entry under root; returns the number of entries."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.lstat(os.path.join(dirpath, name))
        for name in filenames:
            os.lstat(os.path.join(dirpath, name))
        n += len(dirnames) + len(filenames)
    return n


# ---------------------------------------------------------------- mounts

def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def unmount(mnt: str) -> None:
    if not os.path.ismount(mnt):
        return
    r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True)
    if r.returncode != 0 and os.path.ismount(mnt):
        subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)


class Daemon:
    """A FUSE daemon running in the foreground, mounted at `mnt`."""

    live: "set[Daemon]" = set()

    def __init__(self, name: str, cmd: list[str], mnt: str, logfile: str):
        self.name, self.cmd, self.mnt, self.logfile = name, cmd, mnt, logfile
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.peak_kb: int | None = None

    def start(self, wait: bool = True, timeout: float = MOUNT_TIMEOUT) -> "Daemon":
        os.makedirs(self.mnt, exist_ok=True)
        if os.path.ismount(self.mnt):
            unmount(self.mnt)
        with open(self.logfile, "ab") as logf:
            self.started = time.perf_counter()
            # Own session: a Ctrl-C reaches the benchmark only, which then unmounts in order.
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, cwd=REPO, start_new_session=True)
        Daemon.live.add(self)
        if wait:
            self.wait_mounted(timeout)
        return self

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            Daemon.live.discard(self)
            raise RuntimeError(f"{self.name} exited with status {self.proc.returncode} "
                               f"before it was ready; see {self.logfile}:\n{self.log_tail()}")

    def wait_mounted(self, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while not os.path.ismount(self.mnt):
            self.check_alive()
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not mount {self.mnt} within {timeout:.0f} s; "
                                   f"see {self.logfile}:\n{self.log_tail()}")
            time.sleep(0.005)

    def log_tail(self, n: int = 20) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def hwm_kb(self) -> int | None:
        v = proc_status_kb(self.pid, "VmHWM")
        if v is not None:
            self.peak_kb = max(v, self.peak_kb or 0)
        return self.peak_kb

    def cpu_s(self) -> float | None:
        return proc_cpu_s(self.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.hwm_kb()
        unmount(self.mnt)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
        Daemon.live.discard(self)

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_all() -> None:
    for d in list(Daemon.live):
        try:
            d.stop()
        except Exception as err:  # keep cleaning up the others
            log(f"cleanup of {d.name} at {d.mnt}: {err}")


# ---------------------------------------------------------------- datasets

def set_tree_mtime(root: str, ts: int = FIXED_MTIME) -> None:
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            os.utime(os.path.join(dirpath, name), (ts, ts), follow_symlinks=False)
        os.utime(dirpath, (ts, ts))


def write_synth(root: str, n_bins: int, n_triggers: int, seed: int) -> list[str]:
    import inspect
    from ifcbfs.synth import write_dataset
    os.makedirs(root, exist_ok=True)
    if "mtime" in inspect.signature(write_dataset).parameters:
        bins = write_dataset(root, n_bins, n_triggers, seed=seed, style="D", mtime=FIXED_MTIME)
        os.utime(root, (FIXED_MTIME, FIXED_MTIME))
    else:
        bins = write_dataset(root, n_bins, n_triggers, seed=seed, style="D")
        set_tree_mtime(root)
    return [str(b) for b in bins]


def cached_synth(path: str, n_bins: int, n_triggers: int, seed: int) -> str:
    """A synthetic tree written once and kept between runs (keyed by its parameters)."""
    stamp = os.path.join(path, ".complete")
    want = json.dumps({"bins": n_bins, "triggers": n_triggers, "seed": seed, "style": "D"})
    try:
        with open(stamp) as f:
            if f.read() == want:
                return path
    except OSError:
        pass
    log(f"writing {n_bins} bins of {n_triggers} trigger(s) to {path} (kept for later runs)")
    shutil.rmtree(path, ignore_errors=True)
    tmp = f"{path}.partial.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t = time.perf_counter()
    try:
        write_synth(tmp, n_bins, n_triggers, seed)
        with open(os.path.join(tmp, ".complete"), "w") as f:
            f.write(want)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"  written in {time.perf_counter() - t:.1f} s")
    return path


def fake_manifest(n_bins: int, n_triggers: int, seed: int) -> dict:
    """A D-style tree of PNG-sized files, for measuring the ceiling alone."""
    from ifcbfs.core.png import png_size
    rnd = random.Random(seed)
    dirs, files = [], []
    for b in range(n_bins):
        day = f"D202406{1 + b // 24:02d}"
        bin_id = f"{day}T{b % 24:02d}0000_IFCB124"
        d = f"2024/{day}/{bin_id}"
        dirs.append(d)
        files.append([f"{d}/adc.csv", 120 * n_triggers + 200])
        files.append([f"{d}/hdr.json", 2500])
        for t in range(1, n_triggers + 1):
            files.append([f"{d}/{bin_id}_{t:05d}.png", png_size(rnd.randint(20, 300), rnd.randint(15, 150))])
    return with_ancestors(dirs, files)


def with_ancestors(dirs: list[str], files: list) -> dict:
    """The manifest with every folder above a listed entry listed too, both lists sorted."""
    all_dirs: set[str] = set()
    listed = set(dirs)
    for path in [*dirs, *(p for p, _ in files)]:
        d = path if path in listed else os.path.dirname(path)
        while d and d not in all_dirs:
            all_dirs.add(d)
            d = os.path.dirname(d)
    return {"dirs": sorted(all_dirs), "files": sorted(files)}


def manifest_of(root: str) -> dict:
    """Folders and file sizes of a mounted tree, relative to its root."""
    dirs, files = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames:
            dirs.append(os.path.normpath(os.path.join(rel, name)))
        for name in filenames:
            files.append([os.path.normpath(os.path.join(rel, name)), os.lstat(os.path.join(dirpath, name)).st_size])
    dirs.sort()
    files.sort()
    return {"dirs": dirs, "files": files}


def bin_dirs_of(manifest: dict) -> list[str]:
    """Relative paths of the folders that hold PNGs (the bin folders), sorted."""
    return sorted({os.path.dirname(p) for p, _ in manifest["files"] if p.endswith(".png")})


def split_even(bins: list[str], weights: dict[str, int], k: int) -> list[list[str]]:
    """Cut the sorted bin list into k contiguous shares of about equal weight."""
    total = sum(weights[b] for b in bins)
    shares: list[list[str]] = [[] for _ in range(k)]
    acc, i = 0, 0
    for b in bins:
        while i < k - 1 and acc >= total * (i + 1) / k:
            i += 1
        shares[i].append(b)
        acc += weights[b]
    return shares


def load_pixels(mnt: str, manifest: dict) -> list[tuple[str, int, int, bytes]]:
    """(relative path, width, height, pixels) of every PNG, decoded with Pillow."""
    from PIL import Image
    out = []
    for rel, _size in manifest["files"]:
        if not rel.endswith(".png"):
            continue
        with open(os.path.join(mnt, rel), "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("L") if im.mode != "L" else im
            out.append((rel, im.width, im.height, im.tobytes()))
    return out



def timed(fn, *args):
    t = time.perf_counter()
    r = fn(*args)
    return time.perf_counter() - t, r


STATS_FILE = ".ifcbfs-stats"


def read_stats(mnt: str) -> dict | None:
    """The daemon's counters (decodes, parses, ...): its stats file at the mount root, or the
    decode counter in an xattr of the root (earlier versions); None when it has neither."""
    try:
        with open(os.path.join(mnt, STATS_FILE), "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        pass
    try:
        return {"decodes": int(os.getxattr(mnt, "user.ifcbfs.decodes").decode("ascii").strip())}
    except (OSError, ValueError, AttributeError):
        return None


def get_decodes(mnt: str) -> int | None:
    stats = read_stats(mnt)
    return None if stats is None else stats.get("decodes")


def ifcbfs_cmd(spec: str, source: str, mnt: str, opts: str = "") -> list[str]:
    """The command line of an ifcbfs daemon in the foreground; `spec` is a command (shell words)."""
    return [*shlex.split(spec), source, mnt, "-f", *(["-o", opts] if opts else [])]


def ceiling_cmd(manifest: str, mnt: str, *extra: str) -> list[str]:
    """The command line of the in-memory ceiling filesystem serving a manifest."""
    return [sys.executable, CEILING, manifest, mnt, *extra]


class Run:
    """One benchmark run: its options, its work folder and logs, and the series it measures."""

    def __init__(self, args):
        self.args = args
        self.work = os.path.join(args.workdir, f"run-{os.getpid()}")
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        os.environ["XDG_CACHE_HOME"] = os.path.join(self.work, "cache")  # the daemons' indexes: this run's only
        self.s: dict[str, Series] = {}
        self.checks: list[str] = []  # sanity problems found while measuring
        self.n_mounts = 0

    def rec(self, key: str, value, unit: str) -> None:
        self.s.setdefault(key, Series(unit)).add(value)


@dataclass
class Series:
    unit: str
    values: list[float] = field(default_factory=list)

    def add(self, v):
        if v is not None:
            self.values.append(v)

    @property
    def median(self):
        return statistics.median(self.values) if self.values else None



def per_file_ms(c0, c1, n):
    return None if c0 is None or c1 is None or not n else (c1 - c0) * 1000 / n


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v)}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def first_hdr_read(mnt: str) -> bool:
    """Walk down the first entry of each folder to a bin and read its hdr.json."""
    d = mnt
    try:
        for _ in range(8):
            names = sorted(os.listdir(d))
            if "hdr.json" in names:
                with open(os.path.join(d, "hdr.json"), "rb") as f:
                    return len(f.read()) > 0
            if not names:
                return False
            d = os.path.join(d, names[0])
    except OSError:
        return False
    return False


def environment() -> dict:
    import PIL
    env = {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
           "pillow": PIL.__version__, "loadavg_start": os.getloadavg()}
    try:
        import pyfuse3
        env["pyfuse3"] = pyfuse3.__version__
    except ImportError:
        pass
    return env
