"""Archive-scale mode of scripts/bench (`--scale`): a stat walk of a million files.

A tree of --bins bins x --images tiny images (default 500 x 2,000: 1,001,500 files) is written
once with ifcbfs.synth and kept under the work folder. Each pass, interleaved and each on a fresh
mount, walks it (os.walk + lstat of every entry) on:

  ceiling  scripts/ceiling_fs.py serving the same folders and sizes from memory
  cold     ifcbfs with a new, empty index (-o index=FILE): every bin is parsed
  warm     ifcbfs again on the unchanged source with the index the cold walk filled

and records the daemon's peak RSS (VmHWM) when a quarter of the walk is done and at its end,
and the daemon's CPU while idle for --idle seconds after the cold walk.
"""
from __future__ import annotations

import json
import os
import statistics
import time

from benchlib import (FIXED_MTIME, Daemon, Run, ceiling_cmd, environment, fmt,
                      ifcbfs_cmd, log, read_stats, stop_all, timed)

SCALE_TIMEOUT = 900.0  # the ceiling builds a million attribute objects before it mounts


def scale_tree(workdir: str, n_bins: int, n_images: int, seed: int) -> tuple[str, str]:
    """The tree (written once, kept) and the manifest of what ifcbfs shows of it."""
    from ifcbfs.synth import write_dataset

    path = os.path.join(workdir, f"scale-{n_bins}x{n_images}-{seed}")
    done = path + ".complete"
    if not os.path.exists(done):
        log(f"writing {n_bins} bins x {n_images} tiny images to {path} (kept for later runs)")
        tmp = f"{path}.partial"
        _remove(tmp)
        t = time.perf_counter()
        write_dataset(tmp, n_bins, n_images, seed, style="D", image_fraction=1.0, tiny=True, mtime=FIXED_MTIME)
        os.utime(tmp, (FIXED_MTIME, FIXED_MTIME))
        _remove(path)
        os.rename(tmp, path)
        open(done, "w").close()
        log(f"  written in {time.perf_counter() - t:.0f} s")
    manifest = path + ".manifest.json"
    if not os.path.exists(manifest):
        log("listing the tree in-process for the ceiling's manifest")
        with open(manifest + ".tmp", "w") as f:
            json.dump(tree_manifest(path), f)
        os.rename(manifest + ".tmp", manifest)
    return path, manifest


def _remove(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def tree_manifest(source: str) -> dict:
    """Folders and file sizes ifcbfs shows for `source`, from the namespace in this process."""
    from ifcbfs.core.source import DataRoot
    from ifcbfs.fs.namespace import ROOT_INO, Namespace, Options

    ns = Namespace(DataRoot(source), Options(bin_cache=1))
    dirs, files = [], []
    stack = [ROOT_INO]
    while stack:
        for node in ns.listing(stack.pop()):
            if node.is_dir:
                dirs.append(node.path)
                stack.append(node.ino)
            else:
                files.append([node.path, node.size])
    return {"dirs": sorted(dirs), "files": sorted(files)}


def walk(root: str, mark: int, on_mark) -> int:
    """os.walk + os.lstat of every entry; calls on_mark() once `mark` entries are done."""
    n, marked = 0, False
    join, lstat = os.path.join, os.lstat
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            lstat(join(dirpath, name))
        for name in filenames:
            lstat(join(dirpath, name))
        n += len(dirnames) + len(filenames)
        if not marked and n >= mark:
            marked = True
            on_mark()
    return n


class Scale(Run):
    def __init__(self, args):
        super().__init__(args)

    def close(self) -> None:
        stop_all()
        if not self.args.keep:
            _remove(self.work)

    def daemon(self, kind: str, cmd: list[str], mnt: str) -> Daemon:
        self.n_mounts += 1
        return Daemon(kind, cmd, mnt, os.path.join(self.logs, f"{self.n_mounts:03d}-{kind}.log"))

    def ifcbfs(self, tree: str, index: str) -> Daemon:
        opts = ",".join(o for o in (f"index={index}", self.args.mount_opts) if o)
        mnt = os.path.join(self.work, "mnt-ifcbfs")
        return self.daemon("ifcbfs", ifcbfs_cmd(self.args.ifcbfs, tree, mnt, opts), mnt)

    def walk_pass(self, key: str, d: Daemon, expect: int) -> None:
        marks = {}
        dt, n = timed(walk, d.mnt, expect // 4, lambda: marks.setdefault("quarter", d.hwm_kb()))
        if n != expect:
            self.checks.append(f"{key} walk: {n} entries, expected {expect}")
        self.rec(key, n / dt, "entries/s")
        log(f"  {key}: {n} entries in {dt:.1f} s, {n / dt:,.0f} entries/s")
        if key != "ceiling":
            quarter, end = marks.get("quarter"), d.hwm_kb()
            self.rec(f"{key}.rss_quarter", quarter / 1024, "MB")
            self.rec(f"{key}.rss_peak", end / 1024, "MB")
            self.rec(f"{key}.rss_growth", end / quarter, "x")
            stats = read_stats(d.mnt)
            if stats is not None:
                self.rec(f"{key}.decodes", stats.get("decodes"), "decodes")
                self.rec(f"{key}.parses", stats.get("parses"), "bins")

    def idle_pass(self, d: Daemon) -> None:
        c0, t0 = d.cpu_s(), time.perf_counter()
        time.sleep(self.args.idle)
        c1, t1 = d.cpu_s(), time.perf_counter()
        self.rec("idle_cpu", 100 * (c1 - c0) / (t1 - t0), "%")

    def run(self) -> dict:
        a = self.args
        tree, manifest = scale_tree(a.workdir, a.bins, a.images, a.seed)
        with open(manifest) as f:
            m = json.load(f)
        expect = len(m["dirs"]) + len(m["files"])
        del m
        log(f"scale tree: {a.bins} bins x {a.images} images, {expect} entries")
        index = os.path.join(self.work, "index.sqlite")
        for p in range(a.passes):
            log(f"pass {p + 1}/{a.passes}")
            mnt = os.path.join(self.work, "mnt-ceiling")
            with self.daemon("ceiling", ceiling_cmd(manifest, mnt), mnt).start(timeout=SCALE_TIMEOUT) as d:
                self.walk_pass("ceiling", d, expect)
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(index + suffix):
                    os.unlink(index + suffix)
            with self.ifcbfs(tree, index).start() as d:
                self.walk_pass("cold", d, expect)
                self.idle_pass(d)
            with self.ifcbfs(tree, index).start() as d:
                self.walk_pass("warm", d, expect)
        return self.report(expect)

    def ratio(self, x: str, y: str):
        xs, ys = self.s[x].values, self.s[y].values
        return statistics.median(a / b for a, b in zip(xs, ys)) if xs and len(xs) == len(ys) else None

    def report(self, expect: int) -> dict:
        a = self.args
        med = {k: (max(s.values) if "rss" in k else s.median) for k, s in self.s.items() if s.values}
        info = environment()
        print()
        print(f"ifcbfs scale benchmark: {a.bins} bins x {a.images} images, {expect} entries, "
              f"median of {a.passes} pass(es); {info['cpus']} CPUs, kernel {info['kernel']}, "
              f"load average {os.getloadavg()[0]:.1f}")
        print()
        print(f"{'metric':<52} {'value':>12}  {'unit':<10} passes")
        print("-" * 90)
        for key, s in self.s.items():
            print(f"{key:<52} {fmt(med.get(key)):>12}  {s.unit:<10} {' '.join(fmt(v) for v in s.values)}")
        targets = [
            ("peak RSS after the walk (cold), MB", med.get("cold.rss_peak"), "<=", 150.0),
            ("peak RSS, end of walk / quarter of walk", med.get("cold.rss_growth"), "<=", 1.10),
            (f"daemon CPU idle {a.idle:g} s after the walk, %", med.get("idle_cpu"), "<=", 1.0),
            ("cold walk, no index / ceiling", self.ratio("cold", "ceiling"), ">=", 0.6),
            ("walk of a second mount, index warm / ceiling", self.ratio("warm", "ceiling"), ">=", 0.9),
            ("decodes during the walks", max(med.get("cold.decodes", 0), med.get("warm.decodes", 0)), "==", 0),
        ]
        print()
        print(f"{'target':<52} {'value':>12}  {'goal':<8} result")
        print("-" * 80)
        results = []
        for label, v, op, goal in targets:
            ok = None if v is None else {"<=": v <= goal, ">=": v >= goal, "==": v == goal}[op]
            r = "n/a" if ok is None else "PASS" if ok else "FAIL"
            results.append({"target": label, "value": v, "op": op, "goal": goal, "result": r})
            print(f"{label:<52} {fmt(v):>12}  {op + ' ' + fmt(goal):<8} {r}")
        for c in self.checks:
            print(f"CHECK FAILED: {c}")
        return {"config": {"bins": a.bins, "images": a.images, "passes": a.passes, "idle": a.idle,
                           "mount_opts": a.mount_opts, "ifcbfs": a.ifcbfs, "entries": expect},
                "environment": info,
                "metrics": {k: {"median": med.get(k), "unit": s.unit, "passes": s.values} for k, s in self.s.items()},
                "targets": results, "checks": self.checks}

