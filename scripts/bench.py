"""Performance benchmark of ifcbfs against a Pillow export and an in-memory ceiling.

Started by scripts/bench (which runs it with the repository's .venv/bin/python);
`python scripts/bench.py` works too and switches to that interpreter itself.
"""
from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
VENV = os.path.join(REPO, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")

if __name__ == "__main__" and os.path.realpath(sys.prefix) != os.path.realpath(VENV) \
        and os.access(VENV_PY, os.X_OK) and not os.environ.get("IFCBFS_BENCH_REEXEC"):
    os.environ["IFCBFS_BENCH_REEXEC"] = "1"
    os.execv(VENV_PY, [VENV_PY, os.path.realpath(__file__), *sys.argv[1:]])

import argparse            # noqa: E402
import json                # noqa: E402
import multiprocessing     # noqa: E402
import shlex               # noqa: E402
import shutil              # noqa: E402
import signal              # noqa: E402
import statistics          # noqa: E402
import subprocess          # noqa: E402
import time                # noqa: E402

from benchlib import (MOUNT_TIMEOUT, Daemon, Run, bin_dirs_of, cached_synth, ceiling_cmd, ifcbfs_cmd,  # noqa: E402
                      environment, fake_manifest, first_hdr_read, fmt, get_decodes, load_pixels, log,
                      manifest_of, per_file_ms, read_bins, split_even, stat_walk, stop_all, timed,
                      walk_read, write_synth)


DESCRIPTION = """\
Measure ifcbfs and print a table with PASS/FAIL against the performance targets.

Writes a synthetic D-style dataset (ifcbfs.synth), mounts it with ifcbfs, and
measures, each as the median of --passes passes (passes of the different
subjects are interleaved; every "cold" pass uses a fresh mount):

  export     Pillow encoding of every image (Image.frombytes(...).save(path, 'PNG'))
             into a fresh folder: what exporting PNGs would cost; images/s
  cold/warm  walk the mount with os.scandir and read every PNG (open, read, close),
             first on a fresh mount (cold) then again (warm); 1 reader; images/s
  4 readers  the same with --readers processes, each walking a disjoint share
             of the bin folders, cold and warm
  stat       os.walk + os.lstat of every entry of a fresh mount; entries/s
  ceiling    the same reads and stat on scripts/ceiling_fs.py, an in-memory
             pyfuse3 filesystem serving the same folders and file sizes
  peak RSS   VmHWM of the ifcbfs daemons that served the dataset; MB
  ready      from starting `ifcbfs SRC MNT -f` on a tree of --ready-bins tiny bins
             to the first read of a hdr.json; s (the tree is cached in bench-out/)
  decodes    the daemon's decode counter (its .ifcbfs-stats file at the mount root)
             over a stat walk, when the daemon has it

--s3 measures an object store instead: the same dataset uploaded to a SeaweedFS on localhost
(started and stopped by the benchmark, as in the tests), read cold and warm by --readers
readers on an s3:// mount (with read-ahead, and with readahead=0) and on the local mount, in
the same run; the walk + lstat of every entry (listing time) on a fresh mount with a new index
and again with that index warm; GET and LIST requests per image from the server's metrics.
Target: s3 / local cold read with --readers readers >= 0.5.

Targets: cold 1 reader / export >= 1.0; cold 4 readers / export >= 1.6;
warm / ceiling (same readers) >= 0.9; stat / ceiling >= 0.9; peak RSS <= 150 MB;
time to ready < 1 s; decodes on stat == 0.

All results (every pass, the medians, the ratios) go to --out as JSON.
Temporary data and mounts live under bench-out/ and are removed on exit.

Two more modes, each with its own table and targets (see scripts/bench_scale.py and
scripts/bench_loader.py): --scale walks a million files cold and with a warm index
against the ceiling; --loader runs a training loader's pass and ls -lR on the mount
and on an ifcbfs-export of the same tree.
"""


# ---------------------------------------------------------------- measurements

def export_pass(images, dest: str) -> float:
    """Seconds to encode and write every image with Pillow's default PNG options."""
    from PIL import Image
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    made = set()
    os.sync()          # start every pass with no earlier writes still being flushed
    t = time.perf_counter()
    for rel, w, h, pixels in images:
        d = os.path.dirname(rel)
        if d not in made:
            os.makedirs(os.path.join(dest, d), exist_ok=True)
            made.add(d)
        Image.frombytes("L", (w, h), pixels).save(os.path.join(dest, rel), "PNG")
    dt = time.perf_counter() - t
    shutil.rmtree(dest, ignore_errors=True)
    return dt



class Bench(Run):
    def __init__(self, args):
        super().__init__(args)
        self.info: dict = {}
        self.pool = None
        self.server = None  # --s3: the SeaweedFS server

    # -- bookkeeping
    def med(self, key: str):
        return self.s[key].median if key in self.s else None

    def daemon(self, kind: str, source: str, opts: str = "") -> Daemon:
        self.n_mounts += 1
        mnt = os.path.join(self.work, f"mnt-{kind}")
        logfile = os.path.join(self.logs, f"{self.n_mounts:03d}-{kind}.log")
        if kind == "ceiling":
            cmd = ceiling_cmd(source, mnt)
        else:
            cmd = ifcbfs_cmd(self.args.ifcbfs, source, mnt, ",".join(o for o in (self.args.mount_opts, opts) if o))
        return Daemon(kind, cmd, mnt, logfile)

    def count(self, kind: str, what: str, counter, step, per: int):
        """Run `step()`; with a `counter` (the S3 server's request counts), record the GET and
        LIST requests it cost, per `per` (images)."""
        before = counter() if counter else None
        result = step()
        if counter:
            after = counter()
            for op in ("GET", "LIST"):
                self.rec(f"{kind}.{what}_{op.lower()}s", (after.get(op, 0) - before.get(op, 0)) / per, "requests")
        return result

    def check_count(self, what: str, got: tuple[int, int], want: tuple[int, int]) -> None:
        if got != want:
            self.checks.append(f"{what}: read {got[0]} files / {got[1]} bytes, "
                               f"expected {want[0]} / {want[1]}")

    # -- read passes on one fresh mount
    def read_passes(self, kind: str, source: str, label: str) -> None:
        n, nbytes = self.expect
        with self.daemon(kind, source).start() as d:
            c0 = d.cpu_s()
            dt, got = timed(walk_read, d.mnt)
            c1 = d.cpu_s()
            self.check_count(f"{kind} cold read", got, self.expect)
            self.rec(f"{kind}.cold1", n / dt, f"{label}/s")
            self.rec(f"{kind}.cold1_daemon_cpu_ms_per_file", per_file_ms(c0, c1, n), "ms")
            dt, got = timed(walk_read, d.mnt)
            c2 = d.cpu_s()
            self.check_count(f"{kind} warm read", got, self.expect)
            self.rec(f"{kind}.warm1", n / dt, f"{label}/s")
            self.rec(f"{kind}.warm1_daemon_cpu_ms_per_file", per_file_ms(c1, c2, n), "ms")
            if kind == "ifcbfs":
                self.rec("ifcbfs.rss_peak", d.hwm_kb() / 1024, "MB")

    def parallel_passes(self, kind: str, source: str, label: str, opts: str = "", counter=None) -> None:
        n, _ = self.expect
        k = self.args.readers
        with self.daemon(kind, source, opts).start() as d:
            shares = [[os.path.join(d.mnt, b) for b in share] for share in self.shares]
            # Folders above the bins are listed here, untimed, like a file manager would have.
            for b in self.bin_dirs:
                os.lstat(os.path.dirname(os.path.join(d.mnt, b)))
            dt, res = self.count(kind, "per_image", counter, lambda: timed(self.pool.map, read_bins, shares, 1), n)
            got = (sum(r[0] for r in res), sum(r[1] for r in res))
            self.check_count(f"{kind} cold read, {k} readers", got, self.expect)
            self.rec(f"{kind}.cold{k}", n / dt, f"{label}/s")
            dt, res = timed(self.pool.map, read_bins, shares, 1)
            got = (sum(r[0] for r in res), sum(r[1] for r in res))
            self.check_count(f"{kind} warm read, {k} readers", got, self.expect)
            self.rec(f"{kind}.warm{k}", n / dt, f"{label}/s")
            if kind == "ifcbfs":
                self.rec("ifcbfs.rss_peak", d.hwm_kb() / 1024, "MB")

    def stat_pass(self, kind: str, source: str, opts: str = "", counter=None) -> None:
        with self.daemon(kind, source, opts).start() as d:
            before = get_decodes(d.mnt) if kind == "ifcbfs" else None
            dt, n = self.count(kind, "stat", counter, lambda: timed(stat_walk, d.mnt), 1)
            if n != self.n_entries:
                self.checks.append(f"{kind} stat walk: {n} entries, expected {self.n_entries}")
            self.rec(f"{kind}.stat", n / dt, "entries/s")
            self.rec(f"{kind}.stat_time", dt, "s")
            if kind == "ifcbfs":
                after = get_decodes(d.mnt)
                self.rec("ifcbfs.decodes_on_stat",
                         None if before is None or after is None else after - before, "decodes")
                self.info["decode_counter"] = after is not None

    def ready_pass(self, tree: str) -> None:
        d = self.daemon("ifcbfs-ready", tree)
        d.start(wait=False)
        try:
            deadline = d.started + MOUNT_TIMEOUT * 2
            while True:
                d.check_alive()
                now = time.perf_counter()
                if now > deadline:
                    raise RuntimeError(f"no file could be read from {d.mnt} within "
                                       f"{MOUNT_TIMEOUT * 2:.0f} s; see {d.logfile}")
                if os.path.ismount(d.mnt) and first_hdr_read(d.mnt):
                    break
                time.sleep(0.002)
            self.rec("ifcbfs.ready", time.perf_counter() - d.started, "s")
            self.rec("ifcbfs.ready_rss", d.hwm_kb() / 1024, "MB")
        finally:
            d.stop()

    def plan(self, manifest: dict) -> None:
        """What the read passes expect and how the bins are shared among the readers."""
        a = self.args
        pngs = [(p, s) for p, s in manifest["files"] if p.endswith(".png")]
        self.expect = (len(pngs), sum(s for _, s in pngs))
        self.n_entries = len(manifest["dirs"]) + len(manifest["files"])
        self.bin_dirs = bin_dirs_of(manifest)
        weights = {b: 0 for b in self.bin_dirs}
        for p, s in pngs:
            weights[os.path.dirname(p)] += 1
        self.shares = split_even(self.bin_dirs, weights, a.readers)
        self.info.update(images=len(pngs), png_bytes=self.expect[1], entries=self.n_entries,
                         bins=len(self.bin_dirs), folders=len(manifest["dirs"]),
                         reader_shares=[sum(weights[b] for b in s) for s in self.shares])
        log(f"dataset: {len(self.bin_dirs)} bins, {len(pngs)} images "
            f"({self.expect[1] / 1e6:.1f} MB of PNG), {self.n_entries} entries")
        if len(self.bin_dirs) < a.readers:
            log(f"warning: {len(self.bin_dirs)} bins for {a.readers} readers; some readers stay idle")

    # -- the whole run
    def run(self) -> dict:
        a = self.args
        self.pool = multiprocessing.get_context("fork").Pool(a.readers, initializer=_reader_init)
        self.info.update(environment())
        if a.s3:
            return self.run_s3()
        if a.ceiling_only:
            manifest = fake_manifest(a.bins, a.triggers, a.seed)
        else:
            src = os.path.join(self.work, "source")
            log(f"writing {a.bins} bins x {a.triggers} triggers to {src}")
            t = time.perf_counter()
            write_synth(src, a.bins, a.triggers, a.seed)
            log(f"  written in {time.perf_counter() - t:.1f} s")
            log("first mount: collecting folder shape, file sizes and pixels")
            with self.daemon("ifcbfs", src).start() as d:
                manifest = manifest_of(d.mnt)
                images = load_pixels(d.mnt, manifest)
                self.rec("ifcbfs.rss_peak", d.hwm_kb() / 1024, "MB")
        man_path = os.path.join(self.work, "manifest.json")
        with open(man_path, "w") as f:
            json.dump(manifest, f)

        self.plan(manifest)
        for p in range(a.passes):
            log(f"pass {p + 1}/{a.passes}")
            if not a.ceiling_only:
                dt = export_pass(images, os.path.join(self.work, "export"))
                self.rec("export", len(images) / dt, "images/s")
                self.read_passes("ifcbfs", src, "images")
            self.read_passes("ceiling", man_path, "files")
            if not a.ceiling_only:
                self.stat_pass("ifcbfs", src)
            self.stat_pass("ceiling", man_path)
            if not a.ceiling_only:
                self.parallel_passes("ifcbfs", src, "images")
            self.parallel_passes("ceiling", man_path, "files")
            log("  " + ", ".join(f"{key} {s.values[-1]:.4g}" for key, s in self.s.items()
                                 if s.values and "cpu" not in key and "rss" not in key))

        if not a.ceiling_only and a.ready_bins > 0:
            tree = cached_synth(os.path.join(a.workdir, f"ready-tree-{a.ready_bins}"),
                                a.ready_bins, 1, a.seed)
            for p in range(a.passes):
                self.ready_pass(tree)
                log(f"time to ready, pass {p + 1}: {self.s['ifcbfs.ready'].values[-1]:.3f} s")
        self.info["loadavg_end"] = os.getloadavg()
        return self.report()

    def ratio(self, xkey, ykey):
        """Median of the per-pass ratios (passes are interleaved, so this pairs
        measurements taken close together); median over median otherwise."""
        xs = self.s[xkey].values if xkey in self.s else []
        ys = self.s[ykey].values if ykey in self.s else []
        if not xs or not ys:
            return None
        if len(xs) == len(ys) and all(ys):
            return statistics.median(x / y for x, y in zip(xs, ys))
        return statistics.median(xs) / statistics.median(ys) if statistics.median(ys) else None

    def run_s3(self) -> dict:
        """--s3: the same bins in a SeaweedFS on localhost (tests/s3server.py), mounted as s3://
        with and without read-ahead, against the local mount of them, in the same run."""
        from pathlib import Path
        sys.path.insert(0, os.path.join(REPO, "tests"))
        from s3server import BUCKET, WeedServer, aws_env

        a = self.args
        src = os.path.join(self.work, "source")
        log(f"writing {a.bins} bins x {a.triggers} triggers to {src}")
        write_synth(src, a.bins, a.triggers, a.seed)
        self.server = WeedServer(Path(self.work) / "weed")
        log("starting SeaweedFS (weed server) and uploading the bins")
        self.server.start()
        t = time.perf_counter()
        self.server.upload(Path(src), "bench/")
        log(f"  uploaded in {time.perf_counter() - t:.1f} s")
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(aws_env(base={}))  # the daemons' credentials: the server's, nothing else
        url, opts = f"s3://{BUCKET}/bench", f"endpoint={self.server.endpoint}"
        with self.daemon("ifcbfs", src, "index=off").start() as d:
            self.plan(manifest_of(d.mnt))
        counter = self.server.requests
        for p in range(a.passes):
            log(f"pass {p + 1}/{a.passes}")
            self.parallel_passes("ifcbfs", src, "images", "index=off")
            self.parallel_passes("s3", url, "images", f"{opts},index=off", counter)
            if p == 0:  # for reference, once: a GET per image is slow (see the README)
                self.parallel_passes("s3-exact", url, "images", f"{opts},index=off,readahead=0", counter)
            for kind, source, kind_opts in (("ifcbfs", src, "index="), ("s3", url, f"{opts},index=")):
                index = os.path.join(self.work, f"{kind}-{p}.sqlite")  # new, then warm
                for step in (kind, f"{kind}-indexed"):
                    self.stat_pass(step, source, kind_opts + index, counter if kind == "s3" else None)
            log("  " + ", ".join(f"{key} {s.values[-1]:.4g}" for key, s in self.s.items()
                                 if s.values and "cpu" not in key and "rss" not in key))
        version = subprocess.run([self.server.binary, "version"], capture_output=True, text=True).stdout
        self.info.update(loadavg_end=os.getloadavg(), s3_server=" ".join(version.split()))
        return self.report_s3()

    def report_s3(self) -> dict:
        k = self.args.readers
        rows = [
            (f"local mount cold read, {k} readers", f"ifcbfs.cold{k}"),
            (f"s3 mount cold read, {k} readers", f"s3.cold{k}"),
            (f"s3 cold read, {k} readers, readahead=0", f"s3-exact.cold{k}"),
            (f"local mount warm read, {k} readers", f"ifcbfs.warm{k}"),
            (f"s3 mount warm read, {k} readers", f"s3.warm{k}"),
            ("s3 GET requests per image, cold", "s3.per_image_gets"),
            ("s3 GET requests per image, readahead=0", "s3-exact.per_image_gets"),
            ("s3 LIST requests per image, cold", "s3.per_image_lists"),
            ("local listing: walk + lstat of every entry", "ifcbfs.stat_time"),
            ("local listing, warm index", "ifcbfs-indexed.stat_time"),
            ("s3 listing: walk + lstat of every entry", "s3.stat_time"),
            ("s3 listing: GET requests", "s3.stat_gets"),
            ("s3 listing: LIST requests", "s3.stat_lists"),
            ("s3 listing, warm index", "s3-indexed.stat_time"),
            ("s3 listing, warm index: GET requests", "s3-indexed.stat_gets"),
            ("s3 listing, warm index: LIST requests", "s3-indexed.stat_lists"),
        ]
        targets = [(f"s3 / local, cold read, {k} readers", self.ratio(f"s3.cold{k}", f"ifcbfs.cold{k}"), ">=", 0.5)]
        info_ratios = [
            (f"s3 readahead=0 / local, cold, {k} readers", self.ratio(f"s3-exact.cold{k}", f"ifcbfs.cold{k}")),
            ("s3 / s3 readahead=0, cold (read-ahead gain)", self.ratio(f"s3.cold{k}", f"s3-exact.cold{k}")),
            ("s3 listing time / local listing time", self.ratio("s3.stat_time", "ifcbfs.stat_time")),
            ("the same with warm indexes", self.ratio("s3-indexed.stat_time", "ifcbfs-indexed.stat_time")),
        ]
        return self.table("ifcbfs benchmark, object storage (SeaweedFS on localhost)", rows, targets, info_ratios, {})

    def report(self) -> dict:
        a, k = self.args, self.args.readers
        m = self.med
        rows = [
            ("export (Pillow PNG encode + write)", "export"),
            ("ifcbfs cold read, 1 reader", "ifcbfs.cold1"),
            ("ifcbfs warm read, 1 reader", "ifcbfs.warm1"),
            (f"ifcbfs cold read, {k} readers", f"ifcbfs.cold{k}"),
            (f"ifcbfs warm read, {k} readers", f"ifcbfs.warm{k}"),
            ("ifcbfs stat (walk + lstat)", "ifcbfs.stat"),
            ("ceiling cold read, 1 reader", "ceiling.cold1"),
            ("ceiling warm read, 1 reader", "ceiling.warm1"),
            (f"ceiling cold read, {k} readers", f"ceiling.cold{k}"),
            (f"ceiling warm read, {k} readers", f"ceiling.warm{k}"),
            ("ceiling stat (walk + lstat)", "ceiling.stat"),
            ("ifcbfs daemon CPU per image, cold", "ifcbfs.cold1_daemon_cpu_ms_per_file"),
            ("ifcbfs daemon CPU per image, warm", "ifcbfs.warm1_daemon_cpu_ms_per_file"),
            ("ceiling daemon CPU per file, cold", "ceiling.cold1_daemon_cpu_ms_per_file"),
            ("ceiling daemon CPU per file, warm", "ceiling.warm1_daemon_cpu_ms_per_file"),
            ("ifcbfs daemon peak RSS", "ifcbfs.rss_peak"),
            (f"ifcbfs time to ready ({a.ready_bins} bins)", "ifcbfs.ready"),
            (f"ifcbfs daemon RSS at ready ({a.ready_bins} bins)", "ifcbfs.ready_rss"),
            ("ifcbfs decodes during stat walk", "ifcbfs.decodes_on_stat"),
        ]
        rss_peak = max(self.s["ifcbfs.rss_peak"].values) if self.s.get("ifcbfs.rss_peak") and \
            self.s["ifcbfs.rss_peak"].values else None
        targets = [
            ("cold 1 reader / export", self.ratio("ifcbfs.cold1", "export"), ">=", 1.0),
            (f"cold {k} readers / export", self.ratio(f"ifcbfs.cold{k}", "export"), ">=", 1.6),
            ("warm 1 reader / ceiling warm 1 reader", self.ratio("ifcbfs.warm1", "ceiling.warm1"), ">=", 0.9),
            (f"warm {k} readers / ceiling warm {k} readers",
             self.ratio(f"ifcbfs.warm{k}", f"ceiling.warm{k}"), ">=", 0.9),
            ("stat / ceiling stat", self.ratio("ifcbfs.stat", "ceiling.stat"), ">=", 0.9),
            ("daemon peak RSS, MB", rss_peak, "<=", 150.0),
            ("time to ready, s", m("ifcbfs.ready"), "<", 1.0),
            ("decodes during stat walk", m("ifcbfs.decodes_on_stat"), "==", 0),
        ]
        info_ratios = [
            ("cold 1 reader / ceiling cold 1 reader", self.ratio("ifcbfs.cold1", "ceiling.cold1")),
            (f"cold {k} readers / ceiling cold {k} readers", self.ratio(f"ifcbfs.cold{k}", f"ceiling.cold{k}")),
        ]

        return self.table("ifcbfs benchmark", rows, targets, info_ratios, {"ifcbfs.rss_peak": rss_peak})

    def table(self, title: str, rows: list, targets: list, info_ratios: list, overrides: dict) -> dict:
        """Print the metrics and targets; return everything as the JSON document for --out
        (`overrides`: values shown instead of a metric's median, like the peak RSS)."""
        a = self.args

        def verdict(v, op, goal):
            if v is None:
                return "n/a"
            ok = {">=": v >= goal, "<=": v <= goal, "<": v < goal, "==": v == goal}[op]
            return "PASS" if ok else "FAIL"

        print()
        print(f"{title}: {self.info.get('bins')} bins, {self.info.get('images')} images, "
              f"median of {a.passes} pass(es); {self.info['cpus']} CPUs, kernel {self.info['kernel']}, "
              f"load average {self.info['loadavg_start'][0]:.1f} at start, {self.info['loadavg_end'][0]:.1f} at end")
        print("ratios: median of the per-pass ratios")
        print()
        print(f"{'metric':<46} {'value':>12}  {'unit':<10} passes: min .. max")
        print("-" * 90)
        for label, key in rows:
            if key not in self.s:
                continue
            s = self.s[key]
            v = overrides.get(key, s.median)
            spread = f"{fmt(min(s.values))} .. {fmt(max(s.values))}" if len(s.values) > 1 else ""
            print(f"{label:<46} {fmt(v):>12}  {s.unit:<10} {spread}")
        print()
        print(f"{'target':<46} {'value':>12}  {'goal':<8} result")
        print("-" * 75)
        results = []
        for label, v, op, goal in targets:
            r = verdict(v, op, goal)
            results.append({"target": label, "value": v, "op": op, "goal": goal, "result": r})
            print(f"{label:<46} {fmt(v):>12}  {op + ' ' + str(goal):<8} {r}")
        for label, v in info_ratios:
            if v is not None:
                print(f"{label:<46} {fmt(v):>12}  (info)")
        if self.checks:
            print()
            for c in self.checks:
                print(f"CHECK FAILED: {c}")
        out = {
            "config": {key: getattr(a, key) for key in
                       ("bins", "triggers", "passes", "readers", "seed", "ready_bins", "quick",
                        "ceiling_only", "s3", "mount_opts", "ifcbfs")},
            "environment": self.info,
            "metrics": {key: {"median": overrides.get(key, s.median),
                              "unit": s.unit, "passes": s.values} for key, s in self.s.items()},
            "targets": results,
            "info_ratios": {label: v for label, v in info_ratios},
            "checks": self.checks,
        }
        return out

    def close(self) -> None:
        stop_all()
        if self.server is not None:
            self.server.stop()
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def _reader_init() -> None:
    """Reader processes leave signals to the benchmark, which stops them."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="scripts/bench", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", action="store_true",
                   help="archive scale: stat walks of a generated tree of --bins x --images tiny images "
                        "(default 500 x 2000), cold and with a warm index, against the ceiling")
    p.add_argument("--loader", action="store_true",
                   help="a training loader's pass (Pillow, --workers processes) on the mount and on an "
                        "ifcbfs-export of the same tree, cold and warm, and ls -lR of both")
    p.add_argument("--bins", type=int, help="bins in the dataset (default 8; --quick: 4; --scale: 500)")
    p.add_argument("--triggers", type=int, help="triggers per bin (default 3000; --quick: 200)")
    p.add_argument("--images", type=int, default=2000, help="--scale: tiny images per bin (default 2000)")
    p.add_argument("--idle", type=float, default=20.0,
                   help="--scale: seconds the daemon's idle CPU is measured after the walk (default 20)")
    p.add_argument("--workers", type=int, default=2, help="--loader: worker processes (default 2)")
    p.add_argument("--passes", type=int, help="passes per measurement; the median is reported "
                                              "(default 3; --quick and --scale: 1)")
    p.add_argument("--readers", type=int, default=4, help="reader processes of the parallel read (default 4)")
    p.add_argument("--ready-bins", type=int,
                   help="bins in the time-to-ready tree, 0 to skip (default 20000; --quick: 1000)")
    p.add_argument("--out", help="JSON results (default bench-out/bench.json, bench-scale.json with --scale, "
                                 "bench-loader.json with --loader)")
    p.add_argument("--quick", action="store_true", help="small sizes, one pass: a smoke test")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    p.add_argument("--ifcbfs", default=os.path.join(VENV, "bin", "ifcbfs"),
                   help="ifcbfs command, shell words allowed (default .venv/bin/ifcbfs)")
    p.add_argument("--mount-opts", default="", help="passed to ifcbfs as -o OPTS (default: none)")
    p.add_argument("--s3", action="store_true",
                   help="object-storage mode: the bins in a SeaweedFS on localhost mounted as s3:// "
                        "(with and without read-ahead) against their local mount: cold and warm reads "
                        "with --readers readers, listing time, requests per image")
    p.add_argument("--ceiling-only", action="store_true",
                   help="measure only the ceiling filesystem, on a made-up tree of the same shape")
    p.add_argument("--workdir", default=os.path.join(REPO, "bench-out"),
                   help="where temporary data, mounts and cached trees go (default bench-out/)")
    p.add_argument("--keep", action="store_true", help="keep this run's data, manifest and daemon logs")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a target fails")
    a = p.parse_args(argv)
    quick = {"bins": 4, "triggers": 200, "passes": 1, "ready_bins": 1000}
    full = {"bins": 8, "triggers": 3000, "passes": 3, "ready_bins": 20000}
    scale = {"bins": 500, "passes": 1}
    for key, v in {**(quick if a.quick else full), **(scale if a.scale else {})}.items():
        if getattr(a, key) is None:
            setattr(a, key, v)
    if a.bins < 1 or a.triggers < 1 or a.passes < 1 or a.readers < 1:
        p.error("--bins, --triggers, --passes and --readers must be at least 1")
    a.workdir = os.path.abspath(a.workdir)
    name = "bench-scale.json" if a.scale else "bench-loader.json" if a.loader else "bench.json"
    a.out = os.path.abspath(a.out or os.path.join(REPO, "bench-out", name))
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    command = shutil.which(shlex.split(args.ifcbfs)[0]) if args.ifcbfs.strip() else None
    if not args.ceiling_only and command is None:
        print(f"bench: {args.ifcbfs} not found; install with: .venv/bin/pip install -e . "
              f"(or use --ceiling-only)", file=sys.stderr)
        return 2

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if args.scale:
        from bench_scale import Scale
        bench = Scale(args)
    elif args.loader:
        from bench_loader import Loader
        bench = Loader(args)
    else:
        bench = Bench(args)
    try:
        out = bench.run()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except RuntimeError as err:
        log(f"error: {err}")
        return 1
    finally:
        bench.close()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nresults: {args.out}")
    failed = any(t["result"] == "FAIL" for t in out["targets"]) or out["checks"]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
