"""Training-loader mode of scripts/bench (`--loader`): the mount against an export on local disk.

The tree of the standard benchmark (--bins x --triggers, kept under the work folder) is exported
once with ifcbfs-export. Each pass, interleaved, runs on the mount, on the export and on the
ceiling (scripts/ceiling_fs.py serving the export's bytes from memory):

  loader cold  --workers processes each open every PNG of their half of the bin folders with
               Pillow and load its pixels, after `echo 3 > /proc/sys/vm/drop_caches` and on a
               fresh mount (dropping caches needs root; without it the pass is skipped)
  loader warm  the same again: the page cache holds what the cold pass read
  ls -lR       `ls -lR` of the whole tree, warm (after the loader) and cold (caches dropped,
               fresh mount)

The mount uses an index filled by an untimed first mount, as a mount a user made before would.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from benchlib import (REPO, Daemon, Run, cached_synth, ceiling_cmd, environment, fmt, ifcbfs_cmd,
                      log, manifest_of, read_stats, stop_all, timed)


def load_images(bin_dirs: list[str]) -> int:
    """Open every PNG of the folders with Pillow and load its pixels; returns how many."""
    from PIL import Image
    n = 0
    for d in bin_dirs:
        with os.scandir(d) as it:
            names = sorted(e.name for e in it if e.name.endswith(".png"))
        for name in names:
            with Image.open(os.path.join(d, name)) as im:
                im.load()
            n += 1
    return n


def _worker_init() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def drop_caches() -> bool:
    """Drop the page, dentry and inode caches (root only); False when not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def ls_lr(root: str) -> float:
    t = time.perf_counter()
    subprocess.run(["ls", "-lR", root], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


class Loader(Run):
    def __init__(self, args):
        super().__init__(args)
        self.pool = None
        self.can_drop = True

    def close(self) -> None:
        stop_all()
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def daemon(self, kind: str) -> Daemon:
        self.n_mounts += 1
        mnt = os.path.join(self.work, f"mnt-{kind}")
        if kind == "ceiling":
            cmd = ceiling_cmd(self.manifest, mnt, "--content", self.export)
        else:
            opts = ",".join(o for o in (f"index={self.index}", self.args.mount_opts) if o)
            cmd = ifcbfs_cmd(self.args.ifcbfs, self.tree, mnt, opts)
        return Daemon(kind, cmd, mnt, os.path.join(self.logs, f"{self.n_mounts:03d}-{kind}.log"))

    def prepare(self) -> None:
        a = self.args
        self.tree = cached_synth(os.path.join(a.workdir, f"loader-tree-{a.bins}x{a.triggers}-{a.seed}"),
                                 a.bins, a.triggers, a.seed)
        self.export = self.tree + ".export"
        if not os.path.exists(self.export + ".complete"):
            log(f"exporting {self.tree} to {self.export} with ifcbfs-export")
            shutil.rmtree(self.export, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "ifcbfs.export", self.tree, self.export, "-j", "2"],
                           cwd=REPO, check=True, stdout=subprocess.DEVNULL)
            open(self.export + ".complete", "w").close()
        manifest = manifest_of(self.export)
        self.manifest = os.path.join(self.work, "manifest.json")
        with open(self.manifest, "w") as f:
            json.dump(manifest, f)
        bins = sorted({os.path.dirname(p) for p, _ in manifest["files"] if p.endswith(".png")})
        half = len(bins) // 2
        self.shares = [bins[:half], bins[half:]] if self.args.workers == 2 else \
            [bins[i::self.args.workers] for i in range(self.args.workers)]
        self.n_images = sum(1 for p, _ in manifest["files"] if p.endswith(".png"))
        self.index = os.path.join(self.work, "index.sqlite")
        log(f"loader tree: {len(bins)} bins, {self.n_images} images; filling the index (untimed)")
        with self.daemon("ifcbfs").start() as d:
            subprocess.run(["ls", "-lR", d.mnt], stdout=subprocess.DEVNULL, check=True)
        self.pool = multiprocessing.get_context("fork").Pool(self.args.workers, initializer=_worker_init)

    def loader(self, key: str, root: str) -> None:
        shares = [[os.path.join(root, b) for b in share] for share in self.shares]
        dt, counts = timed(self.pool.map, load_images, shares, 1)
        if sum(counts) != self.n_images:
            self.checks.append(f"{key}: loaded {sum(counts)} images, expected {self.n_images}")
        self.rec(key, self.n_images / dt, "images/s")

    def cold(self) -> bool:
        if self.can_drop and not drop_caches():
            self.can_drop = False
            log("not root: cannot drop the page cache, so the cold passes are skipped")
        return self.can_drop

    def subject_pass(self, kind: str) -> None:
        """Loader cold and warm, then ls -lR warm, on one subject."""
        if kind == "export":
            if self.cold():
                self.loader("export.cold", self.export)
            self.loader("export.warm", self.export)
            self.rec("export.ls_warm", ls_lr(self.export), "s")
            return
        if not self.cold():
            return self.warm_only(kind)
        with self.daemon(kind).start() as d:
            c0 = d.cpu_s()
            self.loader(f"{kind}.cold", d.mnt)
            c1 = d.cpu_s()
            self.loader(f"{kind}.warm", d.mnt)
            c2 = d.cpu_s()
            self.rec(f"{kind}.ls_warm", ls_lr(d.mnt), "s")
            self.rec(f"{kind}.cold_cpu_ms", (c1 - c0) * 1000 / self.n_images, "ms/image")
            self.rec(f"{kind}.warm_cpu_ms", (c2 - c1) * 1000 / self.n_images, "ms/image")
            self.stats(kind, d)

    def warm_only(self, kind: str) -> None:
        with self.daemon(kind).start() as d:
            self.loader(f"{kind}.first", d.mnt)
            self.loader(f"{kind}.warm", d.mnt)
            self.rec(f"{kind}.ls_warm", ls_lr(d.mnt), "s")

    def stats(self, kind: str, d: Daemon) -> None:
        if kind == "ifcbfs":
            stats = read_stats(d.mnt) or {}
            if stats.get("parses"):
                self.checks.append(f"the mount parsed {stats['parses']} bins although its index was warm")

    def ls_cold(self, kind: str) -> None:
        if not self.cold():
            return
        if kind == "export":
            self.rec("export.ls_cold", ls_lr(self.export), "s")
            return
        with self.daemon(kind).start() as d:
            self.rec(f"{kind}.ls_cold", ls_lr(d.mnt), "s")

    def run(self) -> dict:
        self.prepare()
        for p in range(self.args.passes):
            log(f"pass {p + 1}/{self.args.passes}")
            for kind in ("ifcbfs", "export", "ceiling"):
                self.subject_pass(kind)
            for kind in ("ifcbfs", "export", "ceiling"):
                self.ls_cold(kind)
            log("  " + ", ".join(f"{k} {s.values[-1]:.4g}" for k, s in self.s.items() if s.values))
        return self.report()

    def ratio(self, x: str, y: str, inverse: bool = False):
        xs = self.s[x].values if x in self.s else []
        ys = self.s[y].values if y in self.s else []
        if not xs or len(xs) != len(ys):
            return None
        return statistics.median((b / a) if inverse else (a / b) for a, b in zip(xs, ys))

    def report(self) -> dict:
        a = self.args
        info = environment()
        print()
        print(f"ifcbfs loader benchmark: {len(self.shares[0]) + len(self.shares[-1])} bins, {self.n_images} images, "
              f"{a.workers} workers, median of {a.passes} pass(es); {info['cpus']} CPUs, kernel {info['kernel']}, "
              f"load average {os.getloadavg()[0]:.1f}")
        print()
        print(f"{'metric':<40} {'value':>12}  {'unit':<10} passes")
        print("-" * 90)
        for key, s in self.s.items():
            print(f"{key:<40} {fmt(s.median):>12}  {s.unit:<10} {' '.join(fmt(v) for v in s.values)}")
        targets = []
        for subject in ("ifcbfs", "ceiling"):
            targets += [
                (f"{subject} ÷ export, loader warm", self.ratio(f"{subject}.warm", "export.warm"), 0.85),
                (f"{subject} ÷ export, loader cold", self.ratio(f"{subject}.cold", "export.cold"), 0.5),
                (f"{subject} ÷ export, ls -lR warm", self.ratio(f"{subject}.ls_warm", "export.ls_warm", True), 0.5),
                (f"{subject} ÷ export, ls -lR cold", self.ratio(f"{subject}.ls_cold", "export.ls_cold", True), 0.5),
            ]
        print()
        print(f"{'ratio (speed, same run)':<40} {'value':>12}  {'goal':<8} result")
        print("-" * 75)
        results = []
        for label, v, goal in targets:
            r = "n/a" if v is None else "PASS" if v >= goal else "FAIL"
            if label.startswith("ceiling"):
                r = "(ceiling)"
            results.append({"target": label, "value": v, "op": ">=", "goal": goal, "result": r})
            print(f"{label:<40} {fmt(v):>12}  {'>= ' + fmt(goal):<8} {r}")
        for c in self.checks:
            print(f"CHECK FAILED: {c}")
        return {"config": {"bins": a.bins, "triggers": a.triggers, "workers": a.workers, "passes": a.passes,
                           "mount_opts": a.mount_opts, "ifcbfs": a.ifcbfs, "images": self.n_images},
                "environment": info,
                "metrics": {k: {"median": s.median, "unit": s.unit, "passes": s.values} for k, s in self.s.items()},
                "targets": results, "checks": self.checks}
