"""The object-store source against a real S3 server (SeaweedFS), in process: the same folders,
files and bytes as the same tree on disk, the requests each step costs, and its failures."""
import errno
import hashlib
import os
from urllib.parse import unquote, urlsplit

import pytest

from ifcbfs.core.errors import ImageMissing
from ifcbfs.core.local import LocalSource
from ifcbfs.core.s3 import S3Source
from ifcbfs.core.source import DataRoot, SourceFile, SourceUnreadable, open_source, root_problem
from ifcbfs.fs.namespace import BIN, FILE, ROOT_INO, FsError, Namespace, Options
from s3server import ACCESS_KEY, BUCKET, SECRET_KEY, aws_env, kit_key

STITCHED = "IFCB5_2012_028_081515"  # its 3 and 4 are one stitched image


@pytest.fixture
def env(monkeypatch):
    """The AWS chain's environment: the test server's keys (or the given ones) and nothing else."""
    def use(access=ACCESS_KEY, secret=SECRET_KEY):
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(key)
        for key, value in aws_env(access, secret, base={}).items():
            monkeypatch.setenv(key, value)
    use()
    return use


def source(s3, prefix="tree", **options) -> S3Source:
    return open_source(f"s3://{BUCKET}/{prefix}", options={"endpoint": s3.endpoint, **options})


class Requests:
    """Every HTTP request a source's client sends, retries included: (operation, key, range)."""

    def __init__(self, src: S3Source):
        self.sent = []
        src.client.meta.events.register("before-send.s3", self._record)

    def _record(self, request, event_name, **kwargs):
        parts = unquote(urlsplit(request.url).path).split("/", 2)  # /BUCKET/KEY: path-style
        key = parts[2] if len(parts) > 2 else ""
        rng = request.headers.get("Range")
        self.sent.append((event_name.rpartition(".")[2], key, rng.decode() if isinstance(rng, bytes) else rng))

    def take(self) -> list:
        sent, self.sent = self.sent, []
        return sent


def walk(ns, ino=ROOT_INO, into_bins=True):
    for node in ns.children(ino).values():
        yield node
        if node.is_dir and (into_bins or node.kind != BIN):
            yield from walk(ns, node.ino, into_bins)


def test_folders_files_and_bins_are_those_of_the_same_tree_on_disk(s3, env):
    remote, local = source(s3), LocalSource(str(s3.stage / "tree"))
    assert remote.problem() is None and remote.location == f"s3://{BUCKET}/tree"
    folders = [""]
    while folders:
        folder = folders.pop()
        a, b = remote.listdir(folder), local.listdir(folder)
        assert a.folders == b.folders, folder
        assert [(f.path.rpartition("/")[2], f.size, f.mtime_ns) for f in a.files] == \
            [(f.path.rpartition("/")[2], f.size, f.mtime_ns) for f in b.files], folder
        assert all(f.path.startswith("tree/") and f.ident.startswith('"') for f in a.files)
        folders += [f"{folder}/{d}" if folder else d for d in a.folders]
    bins = [(f.folder, str(f.bin_id)) for f in DataRoot(remote).walk()]
    assert bins == [(f.folder, str(f.bin_id)) for f in DataRoot(local).walk()] and len(bins) == 12
    assert remote.stamp("") == 0 and remote.sibling("adcmod") is None
    assert remote.stat("bins/D20220522T003051_IFCB134/D20220522T003051_IFCB134.hdr").size == \
        (s3.stage / "tree/bins/D20220522T003051_IFCB134/D20220522T003051_IFCB134.hdr").stat().st_size
    assert remote.stat("bins/D20220522T003051_IFCB134/D20220522T003051_IFCB134") is None


def test_ifcbkit_key_scheme_is_a_mirror_layout(s3, env, expected):
    ns = Namespace(DataRoot(source(s3, "kit")))
    top = ns.children(ROOT_INO)
    assert sorted(top) == ["2013", "2020", "2021", "2022", "2024", "legacy"]
    for bin_id, want in expected["bins"].items():
        folder = ns.lookup(top[kit_key(bin_id).partition("/")[0]].ino, bin_id)
        pngs = {n.name: n for n in ns.children(folder.ino).values() if n.name.endswith(".png")}
        assert sorted(pngs) == sorted(want["images"]), bin_id
    legacy = ns.children(top["legacy"].ino)
    assert STITCHED in legacy and len(legacy) == 3


def test_a_bin_costs_its_hdr_and_adc_an_image_one_exact_range_a_stitched_image_two(s3, env):
    src = source(s3)
    ns = Namespace(DataRoot(src), Options(cache_size=0))
    bins = [n for n in walk(ns, into_bins=False) if n.kind == BIN]
    sent = Requests(src)
    for node in bins:
        files = node.files
        ns.children(node.ino)
        whole = [("GetObject", f.path, f"bytes=0-{f.size - 1}") for f in (files.hdr, files.adc) if f and f.size]
        assert sent.take() == whole, node.path
        children = list(ns.children(node.ino).values())
        for child in children[::-9] + [c for c in children if c.entry.image and len(c.entry.image.parts) > 1]:
            image = child.entry.image  # every 9th, backwards (no read-ahead), and the stitched ones
            if image is None:
                continue
            data = ns.read(child.ino)
            assert len(data) == child.size
            assert sent.take() == [("GetObject", files.roi.path, f"bytes={p.start}-{p.start + p.width * p.height - 1}")
                                   for p in image.parts], child.path
    stitched = [n for n in walk(ns) if n.kind == FILE and n.entry.image and len(n.entry.image.parts) == 2]
    assert [n.name for n in stitched] == [f"{STITCHED}_00003.png"]


def test_a_reader_walking_a_bin_in_order_reads_ahead_within_bounds(s3, env):
    def images(src):
        ns, ino = Namespace(DataRoot(src), Options(cache_size=0)), ROOT_INO
        for name in ("bins", "D20200819T123054_IFCB122", "D20200819T123054_IFCB122"):
            ino = ns.lookup(ino, name).ino
        return ns, [n for n in ns.children(ino).values() if n.entry.image]

    src = source(s3)
    ns, pngs = images(src)
    roi = pngs[0].model.files.roi
    sent = Requests(src)
    ahead = [ns.read(n.ino) for n in pngs]
    gets = sent.take()
    assert len(pngs) == 676 and 2 < len(gets) < len(pngs) // 10 and src.ahead.hits > len(pngs) * 0.9
    for op, key, rng in gets:
        first, last = map(int, rng.removeprefix("bytes=").split("-"))
        assert (op, key) == ("GetObject", roi.path) and last - first < src.ahead.window < roi.size
    local_ns, local_pngs = images(LocalSource(str(s3.stage / "tree")))
    assert ahead == [local_ns.read(n.ino) for n in local_pngs]


def test_bytes_judged_held_but_dropped_since_are_never_fetched_on_the_event_loop(s3, env):
    ns, ino = Namespace(DataRoot(source(s3)), Options(cache_size=0)), ROOT_INO
    for name in ("bins", "D20200819T123054_IFCB122", "D20200819T123054_IFCB122"):
        ino = ns.lookup(ino, name).ino
    pngs = [n for n in ns.children(ino).values() if n.entry.image and n.size < 1 << 16]
    src = ns.source.source
    sent = Requests(src)
    for n in pngs[:8]:  # a walk in order: a window of the .roi is held now
        ns.read(n.ino)
    nxt = pngs[8]
    assert ns.is_cheap(nxt)  # its bytes are held: the event loop may make it
    src.ahead._held.clear()  # another reader's windows push them out meanwhile
    sent.take()
    assert ns.held_content(nxt) is None and sent.take() == []  # no GET where a loop waits on it
    assert ns.content(nxt) == ns.read(nxt.ino) and len(sent.take()) >= 1  # in a worker thread it may


def test_pixels_match_the_reference(s3, env, expected):
    ns = Namespace(DataRoot(source(s3)), Options(cache_size=0))
    seen = 0
    for node in walk(ns):
        if node.kind != FILE or not node.name.endswith(".png") or not node.path.startswith("bins/"):
            continue
        bin_id = node.parent.name
        spec = expected["bins"][bin_id]["images"][node.name]
        model = node.model
        pixels = model.pixels(node.entry.image)
        assert (node.entry.image.width, node.entry.image.height) == (spec["width"], spec["height"])
        assert hashlib.sha256(pixels).hexdigest() == spec["pixels_sha256"], node.path
        seen += 1
    assert seen == sum(len(b["images"]) for b in expected["bins"].values())


def test_a_503_slowdown_is_retried_with_backoff(s3, env):
    from botocore.awsrequest import AWSResponse

    src = source(s3)
    ns = Namespace(DataRoot(src), Options(cache_size=0))
    image = next(n for n in walk(ns) if n.kind == FILE and n.name.endswith(".png"))
    sent, refused = Requests(src), []

    class Raw:
        def stream(self):
            yield (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                   b"<Message>Please reduce your request rate.</Message></Error>")

    def slow_down_once(request, **kwargs):
        if not refused:
            refused.append(request.url)
            return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, Raw())
        return None

    src.client.meta.events.register_first("before-send.s3.GetObject", slow_down_once)
    assert len(ns.read(image.ino)) == image.size
    assert len(refused) == 1 and [op for op, _, _ in sent.take()] == ["GetObject", "GetObject"]


def test_a_key_deleted_or_replaced_after_listing_is_an_error_never_other_bytes(s3, env, tmp_path):
    from ifcbfs.synth import write_bin

    write_bin(tmp_path / "gone", "D20240601T000000_IFCB124", 40, seed=1)
    write_bin(tmp_path / "other", "D20240601T000000_IFCB124", 40, seed=2)
    s3.upload(tmp_path / "gone", "scratch/")
    ns = Namespace(DataRoot(source(s3, "scratch")), Options(cache_size=0))
    folder = ns.lookup(ROOT_INO, "D20240601T000000_IFCB124")
    images = [n for n in ns.children(folder.ino).values() if n.name.endswith(".png")]
    client = s3.client()
    roi = folder.files.roi.path
    client.put_object(Bucket=BUCKET, Key=roi, Body=(tmp_path / "other" / roi.rpartition("/")[2]).read_bytes())
    with pytest.raises(FsError) as err:
        ns.read(images[0].ino)
    assert err.value.errno == errno.EIO and "changed since it was listed" in str(err.value)
    client.delete_object(Bucket=BUCKET, Key=roi)
    with pytest.raises(FsError) as err:
        ns.read(images[1].ino)
    assert err.value.errno in (errno.ENOENT, errno.EIO)
    with pytest.raises(SourceUnreadable) as gone:
        folder.files.source.read(folder.files.roi)
    assert gone.value.errno == errno.ENOENT
    hdr = folder.files.hdr
    longer = SourceFile(hdr.path, hdr.size + 10, hdr.mtime_ns, hdr.ident)  # as if it had shrunk since
    for start in (hdr.size - 2, hdr.size + 2):
        with pytest.raises(ImageMissing):
            folder.files.source.read_range(longer, start, 4)


def test_wrong_credentials_a_missing_bucket_or_prefix_are_one_line(s3, env):
    def problem(url, **options):
        line = root_problem(url, {"endpoint": s3.endpoint, **options})
        assert line and "\n" not in line
        return line

    assert root_problem(f"s3://{BUCKET}", {"endpoint": s3.endpoint}) is None
    assert "no such bucket" in problem("s3://no-such-bucket/tree")
    assert "no objects under this prefix" in problem(f"s3://{BUCKET}/no/such/prefix")
    env(ACCESS_KEY, "wrong-secret")
    assert "access denied" in problem(f"s3://{BUCKET}/tree") and "SignatureDoesNotMatch" in problem(f"s3://{BUCKET}")
    env("unknown-key", "wrong-secret")
    assert "InvalidAccessKeyId" in problem(f"s3://{BUCKET}/tree")
    env(None)
    assert "no credentials found" in problem(f"s3://{BUCKET}/tree")
    env()
    closed = s3.endpoint.rsplit(":", 1)[0] + ":1"
    assert "cannot connect" in problem(f"s3://{BUCKET}/tree", endpoint=closed)
