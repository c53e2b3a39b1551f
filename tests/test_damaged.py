"""Damaged data: a corpus of a few hundred broken bins (tests/damage.py), read by the core and
through a real mount. Whatever a bin does, the mount stays up, every listed file reads fully
with its listed size, every PNG decodes, what is intact is served pixel-exact, what cannot be
produced is not listed, each damaged bin is logged at most once, and the source is untouched."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

import damage
from mounting import Mount, mounted
from ifcbfs.core.bin import Bin
from ifcbfs.core.errors import BinError, ImageMissing
from ifcbfs.core.source import DataRoot

SETTLED = 1_600_000_000  # an mtime long past: bins are judged (and logged) once settled
ROOT = os.geteuid() == 0  # root reads mode-000 files; anyone else gets EACCES for those bins


def source_digest(top) -> dict:
    """Every entry under `top` (not following links): type, mode, size, mtime, content or target."""
    out = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                what = "dir"
            elif not stat.S_ISREG(st.st_mode):
                what = "special"  # a FIFO: opening it would wait for a writer
            else:
                try:
                    with open(path, "rb") as f:
                        what = hashlib.sha256(f.read()).hexdigest()
                except PermissionError:
                    what = "unreadable"
            out[os.path.relpath(path, top)] = (st.st_mode, st.st_size, st.st_mtime_ns, what)
    return out


@pytest.fixture(scope="module")
def corpus(ifcb_data, tmp_path_factory) -> damage.Corpus:
    built = damage.build(tmp_path_factory.mktemp("damaged") / "corpus", ifcb_data, seed=0)
    for folder, dirs, files in os.walk(built.root):  # written long ago: every bin has settled
        for name in dirs + files:
            os.utime(os.path.join(folder, name), (SETTLED, SETTLED), follow_symlinks=False)
    return built


def _expect_for(corpus: damage.Corpus, bin_folder_rel: str) -> damage.Expect | None:
    """The expectation for a bin folder of the mount (or of the source) at this relative path:
    folders reached through a symlink are mapped to the real source folder."""
    parent, _, name = bin_folder_rel.rpartition("/")
    real_root = os.path.realpath(corpus.root)
    real = os.path.relpath(os.path.realpath(os.path.join(corpus.root, parent)), real_root)
    real = "" if real == "." else real
    return corpus.by_path().get(f"{real}/{name}" if real else name)


def _unreadable_error(exp: damage.Expect, err: BaseException) -> bool:
    """A failure that is expected: a mode-000 source file read by a daemon that is not root."""
    return not ROOT and bool(exp.unreadable)


# --- the core, no mount ---------------------------------------------------------------------
def test_corpus_covers_the_damage_cases(corpus):
    counts = corpus.counts()
    assert len(corpus.bins) >= 200 and sum(e.damaged for e in corpus.bins) >= 200
    for case in ("roi-truncated", "adc-cut", "adc-garbage", "adc-bad-fields", "hdr-non-utf8", "hdr-empty",
                 "hdr-3MB-line", "zero-all", "zero-adc", "zero-roi", "no-adc", "no-roi", "adc-20000-short-lines",
                 "misplaced", "duplicate-id", "symlink-loop", "strays", "unreadable-adc", "combined",
                 "special-adc-fifo", "special-roi-dev-zero", "odd-names", "deep-folders"):
        assert counts[case] > 0, case
    lost = sum(len(e.absent) for e in corpus.bins)
    assert sum(len(e.exact) for e in corpus.bins) > 1000 and lost > 1000


def test_core_loads_every_damaged_bin_and_serves_what_is_intact(corpus):
    """Bin.load over the corpus: only BinError may escape; every entry reads exactly its size
    or raises ImageMissing; intact images are pixel-exact, nothing else is listed."""
    expected = corpus.by_path()
    seen, problems = set(), []
    for files in DataRoot(str(corpus.root)).walk():
        path = f"{files.folder}/{files.bin_id}" if files.folder else str(files.bin_id)
        exp = _expect_for(corpus, path)
        assert exp is not None, f"{path}: a bin the corpus did not write"
        seen.add(exp.path)
        try:
            model = Bin.load(files)
        except BinError as err:
            if not _unreadable_error(exp, err):
                problems.append(f"{path}: load: {err!r}")
            continue
        pngs = {e.name: e for e in model.entries if e.image is not None}
        problems += [f"{path}: {n} listed but cannot be intact" for n in pngs if not exp.allowed(n)]
        problems += [f"{path}: intact {n} not listed" for n in exp.exact if n not in pngs]
        for entry in model.entries:
            try:
                data = model.read(entry.name)
            except ImageMissing:
                continue
            except BinError as err:
                if not _unreadable_error(exp, err):
                    problems.append(f"{path}/{entry.name}: {err!r}")
                continue
            if len(data) != entry.size:
                problems.append(f"{path}/{entry.name}: {len(data)} bytes read, {entry.size} listed")
            want = exp.exact.get(entry.name) or exp.maybe.get(entry.name)
            if want:
                got = hashlib.sha256(model.pixels(entry.image)).hexdigest()
                if [entry.image.width, entry.image.height, got] != want:
                    problems.append(f"{path}/{entry.name}: pixels differ from the undamaged bin")
        assert ("adc.csv" in model.by_name) == ("adc" in exp.files), path
    assert not problems, "\n".join(problems[:30])
    assert seen == set(expected)


# --- through a real mount ---------------------------------------------------------------------
class Pass:
    """Everything learnt by reading the whole mount once."""

    def __init__(self):
        self.bins: dict[str, dict[str, bytes | OSError]] = {}  # mount path -> file name -> content
        self.sizes: dict[str, int] = {}
        self.errors: list[str] = []
        self.listing_errors: list[OSError] = []


def read_everything(mnt: Path) -> Pass:
    result = Pass()
    for folder, dirs, files in os.walk(mnt, onerror=result.listing_errors.append):
        rel = os.path.relpath(folder, mnt)
        if "hdr.json" not in files:
            assert not [f for f in files], f"{rel}: files outside a bin folder: {files}"
            continue
        assert not dirs, f"{rel}: a bin folder holds folders {dirs}"
        contents = result.bins[rel] = {}
        for name in files:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
                with open(path, "rb") as f:
                    data = f.read()
                    assert f.read() == b""
            except OSError as err:
                contents[name] = err
                continue
            contents[name] = data
            result.sizes[f"{rel}/{name}"] = st.st_size
            if len(data) != st.st_size:
                result.errors.append(f"{rel}/{name}: read {len(data)} bytes, st_size {st.st_size}")
    return result


@pytest.fixture(scope="module")
def mounted_corpus(corpus, tmp_path_factory):
    before = source_digest(corpus.root)
    m = Mount(corpus.root, tmp_path_factory.mktemp("mnt") / "damaged")
    m.started = time.monotonic()
    try:
        seen = read_everything(m.path)
        yield m, seen, before
    finally:
        m.stop()


@pytest.mark.mount
def test_the_mount_shows_every_bin_and_nothing_else(corpus, mounted_corpus):
    m, seen, _ = mounted_corpus
    assert not seen.listing_errors or not ROOT, seen.listing_errors
    found = {}
    for rel in seen.bins:
        exp = _expect_for(corpus, rel)
        assert exp is not None, f"{rel}: a bin folder the corpus did not write"
        found.setdefault(exp.path, []).append(rel)
    assert set(found) == set(corpus.by_path()), set(corpus.by_path()) ^ set(found)
    top = set(os.listdir(m.path))
    assert "README.txt" not in top and "strays" in top
    assert not (m.path / "strays" / "empty").exists() and not (m.path / "strays" / "empty-only-readme").exists()
    loop = m.path / "loops" / "D20190301"
    assert not (loop / "up").exists() and not (loop / "self").exists()
    assert not (m.path / "loops" / "a" / "to-b" / "to-a").exists()


@pytest.mark.mount
def test_every_listed_file_reads_fully_with_its_size(corpus, mounted_corpus):
    _, seen, _ = mounted_corpus
    assert not seen.errors, "\n".join(seen.errors[:20])
    failed = []
    for rel, contents in seen.bins.items():
        exp = _expect_for(corpus, rel)
        for name, data in contents.items():
            if isinstance(data, OSError) and not _unreadable_error(exp, data):
                failed.append(f"{rel}/{name}: {data}")
    assert not failed, "\n".join(failed[:20])
    assert len(seen.sizes) > 8000


@pytest.mark.mount
def test_every_png_decodes_and_intact_images_are_pixel_exact(corpus, mounted_corpus):
    _, seen, _ = mounted_corpus
    problems, exact = [], 0
    for rel, contents in seen.bins.items():
        exp = _expect_for(corpus, rel)
        for name, data in contents.items():
            if not name.endswith(".png") or isinstance(data, OSError):
                continue
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                got = [im.width, im.height, hashlib.sha256(im.tobytes()).hexdigest()]
                if im.mode != "L":
                    problems.append(f"{rel}/{name}: mode {im.mode}")
            want = exp.exact.get(name) or exp.maybe.get(name)
            if want is not None:
                exact += 1
                if got != want:
                    problems.append(f"{rel}/{name}: {got[:2]} differs from the undamaged image {want[:2]}")
        missing = [n for n in exp.exact if n not in contents]
        if missing and not (exp.unreadable and not ROOT):
            problems.append(f"{rel} ({exp.case}): intact images not served: {missing[:5]}")
    assert not problems, "\n".join(problems[:30])
    assert exact >= sum(len(e.exact) for e in corpus.bins)


@pytest.mark.mount
def test_what_cannot_be_produced_is_absent(corpus, mounted_corpus):
    _, seen, _ = mounted_corpus
    problems = []
    for rel, contents in seen.bins.items():
        exp = _expect_for(corpus, rel)
        pngs = {n for n in contents if n.endswith(".png")}
        problems += [f"{rel} ({exp.case}): serves {n}, gone from the damaged bin" for n in pngs & set(exp.absent)]
        problems += [f"{rel} ({exp.case}): serves {n}, which is not intact" for n in pngs if not exp.allowed(n)]
        assert ("adc.csv" in contents) == ("adc" in exp.files), rel
        if not ("adc" in exp.files and "roi" in exp.files):
            assert not pngs, f"{rel}: images without both .adc and .roi"
        doc = contents["hdr.json"]
        if isinstance(doc, bytes):
            meta = json.loads(doc)
            assert meta["bin_id"] == exp.bin_id and meta["n_images"] == len(pngs), rel
    assert not problems, "\n".join(problems[:30])


@pytest.mark.mount
def test_at_most_one_log_line_per_damaged_bin(corpus, mounted_corpus):
    m, _, _ = mounted_corpus
    text = m.logged()
    lines = text.splitlines()
    copies = Counter(e.bin_id for e in corpus.bins if e.damaged)
    storm = {}
    for bin_id in {e.bin_id for e in corpus.bins}:
        n = sum(bin_id in line for line in lines)
        if n > copies[bin_id]:
            storm[bin_id] = n
    assert not storm, f"bins logged more than once per damaged copy: {storm}\n" + "\n".join(lines[:40])
    # damage that can be told from the files alone is always said, in the bin's one line
    said = {"no-roi": "no .roi file", "no-adc": "no .adc file", "no-hdr": "no .hdr file", "zero-hdr": "empty .hdr",
            "hdr-empty": "empty .hdr", "roi-truncated": "pass the end of the .roi"}
    clear_cut = [e for e in corpus.bins if e.case in said and (e.case != "roi-truncated" or e.absent)]
    unsaid = [f"{e.path} ({e.case})" for e in clear_cut
              if sum(f"{e.path}: damaged: " in line and said[e.case] in line for line in lines) != 1]
    assert len(clear_cut) > 40 and not unsaid, "damaged bins without their one line:\n" + "\n".join(unsaid[:20])
    assert not re.search(r"Traceback|Error:", text), text[-3000:]


@pytest.mark.mount
def test_flat_layout_shows_each_bin_id_once_and_logs_each_duplicate_once(corpus, tmp_path):
    with mounted(corpus.root, tmp_path / "flat", "layout=flat") as m:
        names = os.listdir(m.path)
        ids = {e.bin_id for e in corpus.bins}
        assert sorted(names) == sorted(ids)
        for dup in {e.bin_id for e in corpus.bins if e.case == "duplicate-id"}:
            doc = json.loads((m.path / dup / "hdr.json").read_bytes())
            assert doc["bin_id"] == dup
        # one warning per extra place a bin id is found (copies, and folders reached through links)
        places = Counter(str(f.bin_id) for f in DataRoot(str(corpus.root)).walk())
        lines = m.logged().splitlines()
        for bin_id in ids:
            assert sum(bin_id in line for line in lines) <= max(1, places[bin_id] - 1), bin_id
        assert sum("is in both" in line for line in lines) == sum(n - 1 for n in places.values())
        assert m.proc.poll() is None


@pytest.mark.mount
def test_the_daemon_is_alive_and_the_source_unchanged(corpus, mounted_corpus):
    m, seen, before = mounted_corpus
    # after the source watcher has looked at every bin at least twice (poll: 2 s), all again
    time.sleep(max(0.0, m.started + 4.5 - time.monotonic()))
    again = read_everything(m.path)
    assert {k: v for k, v in again.sizes.items()} == seen.sizes
    assert m.proc.poll() is None, f"ifcbfs died: {m.logged()[-3000:]}"
    assert os.path.ismount(m.path)
    assert source_digest(corpus.root) == before, "the source tree changed"
    assert m.stop() == 0, m.logged()[-3000:]
