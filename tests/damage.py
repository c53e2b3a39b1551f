"""A corpus of damaged IFCB bins, and what ifcbfs must still serve from each.

`build(dest, ifcb_data, seed)` writes, deterministically (one seeded `random.Random`), a folder
tree of a few hundred bins derived from the real bins in `ifcb_data` and from synthetic bins:
truncated `.roi` files, `.adc` files cut mid-line or holding garbage and binary lines, absurd
sizes and start bytes, broken headers, empty and missing files, misplaced and duplicated bins,
symlink loops, stray files and unreadable (mode 000) files.

For every damaged bin it records what must still be served, computed from the ORIGINAL,
undamaged bin through the core (`Bin.load`, `Bin.pixels`): an image is *intact* when its ADC
line(s) are unchanged, nothing that decides its stitching changed, and its bytes lie wholly
inside the damaged `.roi`; an intact image must be served pixel-exact. Images whose bytes or
ADC line are gone must not be served at all. A few images are left undecided ("maybe"): a
line cut after its start byte, or (in I-style bins) a line whose stitching partner changed.

    python tests/damage.py DEST [--data IFCB_DATA] [--seed N]   # write a corpus, print a summary
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ifcbfs.core.adc import parse_adc  # noqa: E402
from ifcbfs.core.bin import Bin  # noqa: E402
from ifcbfs.core.ids import parse_bin_id  # noqa: E402
from ifcbfs.core.source import DataRoot  # noqa: E402
from ifcbfs.synth import write_bin  # noqa: E402

REAL_BINS = (
    "D20130526T095207_IFCB013", "D20200819T123054_IFCB122", "D20210308T234128_IFCB147",
    "D20220101T221311_IFCB114", "D20220522T000439_IFCB134", "D20220522T003051_IFCB134",
    "IFCB5_2012_028_081515",
)
BIG = "D20200819T123054_IFCB122"  # 3 MB of ROI: used sparingly
HUGE_HDR = 3 * 1024 * 1024


# --- originals ----------------------------------------------------------------------------
@dataclass
class Served:
    """One image the undamaged bin serves: its target, the ADC lines it is made of, its pixels."""

    target: int
    parts: tuple[int, ...]  # ADC line numbers (two when stitched)
    width: int
    height: int
    sha256: str
    end: int  # offset just past its last byte in the .roi


@dataclass
class Original:
    """An undamaged bin: its three files, its image lines and what it serves (via the core)."""

    key: str
    style: str  # 'D' or 'I'
    hdr: bytes
    adc: bytes
    roi: bytes
    lines: list[bytes]  # ADC lines without their b"\n" (a CR stays), final newline dropped
    boxes: dict[int, tuple]  # image line number -> (trigger, x, y, w, h, start)
    order: list[int]  # image line numbers in ADC order
    served: dict[int, Served]  # by target


def _original(key: str, bin_id: str, hdr: bytes, adc: bytes, roi: bytes) -> Original:
    style = parse_bin_id(bin_id).style
    with tempfile.TemporaryDirectory() as tmp:
        for ext, data in (("hdr", hdr), ("adc", adc), ("roi", roi)):
            Path(tmp, f"{bin_id}.{ext}").write_bytes(data)
        files = DataRoot(tmp).scan().bins[bin_id]
        model = Bin.load(files)
        served = {}
        for im in model.images:
            pixels = model.pixels(im)
            served[im.target] = Served(im.target, tuple(p.target for p in im.parts), im.width, im.height,
                                       hashlib.sha256(pixels).hexdigest(), max(p.end for p in im.parts))
    parsed = parse_adc(adc, "v2" if style == "D" else "v1")
    lines = adc.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    boxes = {r.target: (r.trigger, r.x, r.y, r.width, r.height, r.start) for r in parsed.rois}
    return Original(key, style, hdr, adc, roi, lines, boxes, [r.target for r in parsed.rois], served)


# --- expectations -------------------------------------------------------------------
@dataclass
class Expect:
    """What the mount must show for one damaged bin."""

    bin_id: str
    folder: str  # source folder relative to the corpus root ('' for the root)
    case: str
    source: str  # which original it was derived from
    exact: dict[str, list] = field(default_factory=dict)  # PNG name -> [w, h, sha256]: served exactly
    maybe: dict[str, list | None] = field(default_factory=dict)  # may be served; if a value, exactly
    absent: list[str] = field(default_factory=list)  # images of the original that must not be served
    files: tuple[str, ...] = ("hdr", "adc", "roi")  # raw files present
    unreadable: tuple[str, ...] = ()  # raw files with mode 000
    damaged: bool = True

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.bin_id}" if self.folder else self.bin_id

    def allowed(self, name: str) -> bool:
        return name in self.exact or name in self.maybe


# line states
OK, MOVED, GONE, MAYBE, NEW = "ok", "moved", "gone", "maybe", "new"


class Work:
    """An original being damaged: its ADC lines with their fate, its header, its ROI bytes."""

    def __init__(self, orig: Original, rng: random.Random):
        self.orig, self.rng = orig, rng
        self.lines = list(orig.lines)
        self.origin: list[int | None] = list(range(1, len(self.lines) + 1))
        self.state = [OK] * len(self.lines)
        self.final_newline = orig.adc.endswith(b"\n") or not orig.adc
        self.hdr, self.roi = orig.hdr, orig.roi
        self.present = {"hdr": True, "adc": True, "roi": True}
        self.adc_override: bytes | None = None  # an .adc not made of the original's lines
        self.cr = b"\r" if self.lines and self.lines[0].endswith(b"\r") else b""

    # ADC as bytes
    def adc(self) -> bytes:
        if self.adc_override is not None:
            return self.adc_override
        if not self.lines:
            return b""
        return b"\n".join(self.lines) + (b"\n" if self.final_newline else b"")

    def image_lines(self) -> list[int]:
        """Indexes (0-based, current) of lines that are image lines of the original."""
        return [i for i, o in enumerate(self.origin) if o in self.orig.boxes and self.state[i] == OK]

    def pick_image_lines(self, k: int) -> list[int]:
        lines = self.image_lines()
        return self.rng.sample(lines, min(k, len(lines)))

    # damage
    def truncate_roi(self, length: int) -> None:
        self.roi = self.roi[:max(0, length)]

    def cut_adc(self, offset: int) -> None:
        """Cut the ADC file after `offset` bytes: later lines vanish, the cut line is undecided."""
        at = 0
        for i, line in enumerate(self.lines):
            if offset <= at:  # cut at (or before) the start of this line
                del self.lines[i:], self.origin[i:], self.state[i:]
                self.final_newline = True
                return
            end = at + len(line)
            if offset <= end:  # cut inside the line, or just before its newline
                self.lines[i] = line[:offset - at]
                if self.state[i] == OK:  # a moved line stays unservable
                    self.state[i] = MAYBE
                del self.lines[i + 1:], self.origin[i + 1:], self.state[i + 1:]
                self.final_newline = False
                return
            at = end + 1

    def insert(self, index: int, raw: bytes) -> None:
        assert b"\n" not in raw
        self.lines.insert(index, raw + self.cr if self.cr and not raw.endswith(b"\r") else raw)
        self.origin.insert(index, None)
        self.state.insert(index, NEW)

    def replace(self, index: int, raw: bytes) -> None:
        assert b"\n" not in raw
        self.lines[index] = raw + self.cr
        if self.origin[index] is not None:
            self.state[index] = GONE

    def set_fields(self, index: int, values: dict[int, str], state: str) -> None:
        line = self.lines[index]
        cr = line.endswith(b"\r")
        fields = (line[:-1] if cr else line).split(b",")
        for k, v in values.items():
            fields[k] = v.encode()
        self.lines[index] = b",".join(fields) + (b"\r" if cr else b"")
        self.state[index] = state

    # what must be served
    def expect(self, bin_id: str, folder: str, case: str) -> Expect:
        orig = self.orig
        exp = Expect(bin_id, folder, case, orig.key,
                     files=tuple(e for e in ("hdr", "adc", "roi") if self.present[e]))
        name = lambda t: f"{bin_id}_{t:05d}.png"  # noqa: E731
        lost = {name(t) for t in orig.served}
        if not (self.present["adc"] and self.present["roi"]) or self.adc_override is not None:
            exp.absent = sorted(lost)
            return exp
        roi_len = len(self.roi)
        state = {o: self.state[i] for i, o in enumerate(self.origin) if o is not None}
        number = {o: i + 1 for i, o in enumerate(self.origin) if o is not None}
        first_parts = {s.parts[0]: s for s in orig.served.values()}
        neighbours: dict[int, tuple] = {}
        for k, t in enumerate(orig.order):
            neighbours[t] = tuple(orig.order[j] for j in (k - 1, k + 1) if 0 <= j < len(orig.order))

        def fits(line: int) -> bool:
            *_, w, h, start = orig.boxes[line]
            return start + w * h <= roi_len

        for line in orig.order:
            st = state.get(line)
            if st is None or st in (GONE, MOVED) or not fits(line):
                continue  # vanished, no longer an image, or its bytes are gone: never served
            target = name(number[line])
            im = first_parts.get(line)
            if orig.style == "D":
                s = orig.served.get(line)
                if s is None:  # not served by the original either
                    continue
                (exp.exact if st == OK else exp.maybe)[target] = [s.width, s.height, s.sha256]
                continue
            # I-style: stitching depends on the neighbouring image lines, which must be unchanged
            parts = im.parts if im else (line,)
            context = {p for p in parts} | {n for p in parts for n in neighbours[p]}
            steady = all(state.get(p) in (OK, MOVED) for p in context)
            if not steady or st == MAYBE:
                exp.maybe[target] = None
            elif im is not None and all(state.get(p) == OK and fits(p) for p in im.parts):
                exp.exact[target] = [im.width, im.height, im.sha256]
            # else: a second part, or a stitch with a part gone: not served
        exp.absent = sorted(lost - set(exp.exact) - set(exp.maybe))
        return exp


# --- garbage -------------------------------------------------------------------------
def _text_garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:
        return b"#" + bytes(rng.choice(b"abcdefxyz ,.;:-+=") for _ in range(rng.randrange(1, 80)))
    if kind == 1:
        return b"\x00" * rng.randrange(1, 40)
    if kind == 2:
        return b"," * rng.randrange(1, 40)
    if kind == 3:
        return b"trigger,ADC_time,PMTA,PMTB,ROIx,ROIy,ROIwidth,ROIheight,start_byte"
    if kind == 4:  # a number, then nonsense: a row of adc.csv, but no image
        return str(rng.randrange(1, 10**6)).encode() + b",abc," + b"x," * rng.randrange(30)
    if kind == 5:
        return b"NaN,inf,-inf,1e999,-0,0x1F,1_000," * rng.randrange(1, 4)
    if kind == 6:
        return b"x" * rng.randrange(10_000, 100_000)  # a very long line
    if kind == 7:
        return b" \t \x0b\x0c "
    return b"-" + b"9" * rng.randrange(1, 60)


def _binary_garbage(rng: random.Random) -> bytes:
    raw = bytes(b for b in rng.randbytes(rng.randrange(1, 300)) if b != 0x0A)
    return bytes([rng.randrange(0x80, 0x100)]) + raw  # never ASCII


# --- the corpus -----------------------------------------------------------------------
class Builder:
    def __init__(self, dest: Path, ifcb_data: Path | None, seed: int):
        self.dest, self.rng = Path(dest), random.Random(seed)
        self.expects: list[Expect] = []
        self.extras: list[str] = []  # non-bin things written (symlinks, strays)
        self.originals: dict[str, Original] = {}
        self.clock = datetime(2019, 1, 1, 0, 0, 0)
        self._load_real(ifcb_data)
        self._load_synth()
        self.small = [k for k in self.originals if k != BIG]

    def _load_real(self, data: Path | None) -> None:
        if data is None:
            return
        for bin_id in REAL_BINS:
            folder = Path(data) / "bins" / bin_id
            if not folder.is_dir():
                continue
            parts = [(folder / f"{bin_id}.{e}").read_bytes() for e in ("hdr", "adc", "roi")]
            self.originals[bin_id] = _original(bin_id, bin_id, *parts)

    def _load_synth(self) -> None:
        specs = [("D20240601T000000_IFCB124", 90, dict(image_fraction=0.7)),
                 ("D20240601T002000_IFCB125", 60, dict(image_fraction=0.9, crlf=True, lead_bytes=13)),
                 ("D20240601T004000_IFCB126", 140, dict(image_fraction=0.3)),
                 ("IFCB5_2024_153_000000", 80, dict(image_fraction=0.8, pair_fraction=0.4, chain_fraction=0.3)),
                 ("IFCB7_2024_153_002000", 60, dict(image_fraction=0.9, pair_fraction=0.6, chain_fraction=0.5,
                                                    lead_bytes=7)),
                 ("IFCB9_2024_153_004000", 100, dict(image_fraction=0.6, pair_fraction=0.2, crlf=True))]
        with tempfile.TemporaryDirectory() as tmp:
            for n, (bin_id, triggers, kw) in enumerate(specs):
                write_bin(tmp, bin_id, triggers, seed=1000 + n, **kw)
                parts = [Path(tmp, f"{bin_id}.{e}").read_bytes() for e in ("hdr", "adc", "roi")]
                self.originals["synth:" + bin_id] = _original("synth:" + bin_id, bin_id, *parts)

    # ids and folders
    def new_id(self, orig: Original, when: datetime | None = None) -> str:
        if when is None:
            self.clock += timedelta(minutes=23, seconds=17)
            when = self.clock
        key = orig.key.split(":")[-1]
        instrument = int(key.rsplit("IFCB", 1)[1]) if orig.style == "D" else int(key.split("_")[0][4:])
        if orig.style == "D":
            return f"D{when:%Y%m%dT%H%M%S}_IFCB{instrument:03d}"
        return f"IFCB{instrument}_{when:%Y}_{when.timetuple().tm_yday:03d}_{when:%H%M%S}"

    @staticmethod
    def day_folder(bin_id: str) -> str:
        if bin_id.startswith("D"):
            return bin_id[:9]
        return bin_id.rsplit("_", 1)[0]

    def pick(self, style: str | None = None, big_ok: bool = False) -> Original:
        keys = [k for k in (self.originals if big_ok else self.small)
                if style is None or self.originals[k].style == style]
        return self.originals[self.rng.choice(keys)]

    def work(self, orig: Original) -> Work:
        return Work(orig, self.rng)

    def emit(self, w: Work, case: str, folder: str | None = None, bin_id: str | None = None,
             unreadable: tuple[str, ...] = (), damaged: bool = True) -> Expect:
        bin_id = bin_id or self.new_id(w.orig)
        folder = f"{case}/{self.day_folder(bin_id)}" if folder is None else folder
        where = self.dest / folder
        where.mkdir(parents=True, exist_ok=True)
        data = {"hdr": w.hdr, "adc": w.adc(), "roi": w.roi}
        for ext in ("hdr", "adc", "roi"):
            if w.present[ext]:
                (where / f"{bin_id}.{ext}").write_bytes(data[ext])
        exp = w.expect(bin_id, folder, case)
        exp.unreadable, exp.damaged = unreadable, damaged
        for ext in unreadable:
            os.chmod(where / f"{bin_id}.{ext}", 0)
        self.expects.append(exp)
        return exp

    # the cases
    def roi_truncated(self, n: int) -> None:
        for k in range(n):
            orig = self.pick(big_ok=k % 13 == 0)
            w = self.work(orig)
            size = len(orig.roi)
            mode = k % 5
            ends = sorted({s.end for s in orig.served.values()}) or [size]
            if mode == 0:
                cut = self.rng.randrange(size + 1)
            elif mode == 1:  # just around the end of an image
                cut = self.rng.choice(ends) + self.rng.choice((-1, 0, 1))
            elif mode == 2:
                cut = self.rng.choice((0, 1, size - 1, size // 2))
            elif mode == 3:  # inside the last image
                cut = max(ends) - 1 - self.rng.randrange(max(1, min(500, max(ends))))
            else:
                cut = self.rng.randrange(size // 2, size + 1)
            w.truncate_roi(cut)
            self.emit(w, "roi-truncated")

    def adc_cut(self, n: int) -> None:
        for k in range(n):
            orig = self.pick(big_ok=k == 7)
            w = self.work(orig)
            adc = w.adc()
            mode = k % 4
            if mode == 0 or not w.image_lines():
                cut = self.rng.randrange(1, len(adc)) if len(adc) > 1 else 0
            else:
                i = self.rng.choice(w.image_lines())
                start = sum(len(x) + 1 for x in w.lines[:i])
                fields = w.lines[i].split(b",")
                ix = 17 if orig.style == "D" else 13  # the start byte field
                before = len(b",".join(fields[:ix]))
                if mode == 1:  # inside the start byte field
                    cut = start + before + 1 + self.rng.randrange(max(1, len(fields[ix])))
                elif mode == 2:  # just after the field that follows the start byte
                    cut = start + len(b",".join(fields[:ix + 2])) + self.rng.choice((0, 1))
                else:  # at a line end, on either side of the newline
                    cut = start + len(w.lines[i]) + self.rng.choice((0, 1))
            w.cut_adc(cut)
            self.emit(w, "adc-cut")

    def adc_garbage(self, n: int) -> None:
        for k in range(n):
            orig = self.pick(big_ok=k == 3)
            w = self.work(orig)
            for _ in range(self.rng.randrange(1, 6)):
                w.insert(self.rng.randrange(len(w.lines) + 1), _text_garbage(self.rng))
            if k % 2 == 0:
                for _ in range(self.rng.randrange(1, 4)):
                    w.insert(self.rng.randrange(len(w.lines) + 1), _binary_garbage(self.rng))
            if k % 3 == 0 and w.lines:
                for _ in range(self.rng.randrange(1, 3)):
                    i = self.rng.randrange(len(w.lines))
                    w.replace(i, (_binary_garbage if k % 2 else _text_garbage)(self.rng))
            if k % 7 == 0:
                w.insert(len(w.lines), b"")  # blank lines at the end
                w.insert(len(w.lines), b"")
            self.emit(w, "adc-garbage")

    BAD = (
        ("w*h=1e10", lambda w, h, s, n: {2: "100000", 3: "100000"}, GONE),
        ("w*h=1e10 (2e5 x 5e4)", lambda w, h, s, n: {2: "200000", 3: "50000"}, GONE),
        ("negative width", lambda w, h, s, n: {2: str(-w)}, GONE),
        ("negative height", lambda w, h, s, n: {3: str(-h)}, GONE),
        ("negative start", lambda w, h, s, n: {4: str(-1 - s)}, GONE),
        ("start past end", lambda w, h, s, n: {4: str(n + 1)}, MOVED),
        ("start at end", lambda w, h, s, n: {4: str(n)}, MOVED),
        ("start 1e18", lambda w, h, s, n: {4: "1000000000000000000"}, MOVED),
        ("start 2^64", lambda w, h, s, n: {4: str(2**64)}, MOVED),
        ("width not a number", lambda w, h, s, n: {2: "abc"}, GONE),
        ("height a float", lambda w, h, s, n: {3: f"{h}.5"}, GONE),
        ("start empty", lambda w, h, s, n: {4: ""}, GONE),
        ("width 2^40", lambda w, h, s, n: {2: str(2**40)}, GONE),
        ("width 0", lambda w, h, s, n: {2: "0"}, GONE),
    )

    def bad_fields(self, n: int) -> None:
        for k in range(n):
            orig = self.pick()
            w = self.work(orig)
            ix = 13 if orig.style == "D" else 9
            for j, i in enumerate(w.pick_image_lines(self.rng.randrange(1, 5))):
                _, _, _, width, height, start = orig.boxes[w.origin[i]]
                if orig.style == "D" and (k + j) % 6 == 5:  # x and y do not matter to a D-style image
                    w.set_fields(i, {ix: str(-self.rng.randrange(1, 10**6)), ix + 1: "-1"}, OK)
                    continue
                _, edit, state = self.BAD[(k + j) % len(self.BAD)]
                values = edit(width, height, start, len(orig.roi))
                w.set_fields(i, {ix + f: v for f, v in values.items()}, state)
            self.emit(w, "adc-bad-fields")

    def hdr_broken(self, n_non_utf8: int, n_empty: int, n_huge: int) -> None:
        for k in range(n_non_utf8):
            w = self.work(self.pick())
            kind = k % 5
            if kind == 0:
                w.hdr = self.rng.randbytes(self.rng.randrange(1, 5000))
            elif kind == 1:
                w.hdr = w.hdr.replace(b": ", b": \xe9\xff", 5)
            elif kind == 2:
                w.hdr = w.hdr[:len(w.hdr) // 2] + b"\xc3" + b"\xe2\x82"  # cut inside UTF-8 sequences
            elif kind == 3:
                w.hdr = b"\xff\xfe" + w.hdr.decode("latin-1").encode("utf-16-le")
            else:
                w.hdr = w.hdr + b"\x00\x00caf\xe9: \xc0\xaf\r\nbinarizeThreshold: \xff\r\n"
            self.emit(w, "hdr-non-utf8")
        for k in range(n_empty):
            w = self.work(self.pick())
            w.hdr = (b"", b"\n\n\t\n", b"\r\n", b" ")[k % 4]
            self.emit(w, "hdr-empty")
        for k in range(n_huge):
            w = self.work(self.pick(style="D" if k != 2 else "I"))
            prefix = (b"softwareVersion: ", b"", b'"Imaging FlowCytobot Acquisition Software version 1.0; October 2005"')[k]
            if k == 2:  # legacy header whose value line is 3 MB
                w.hdr = prefix + b"\n" + b'"x", ' * (HUGE_HDR // 5) + b"\n"
            else:
                w.hdr = prefix + bytes(self.rng.choice(b"abcdefghij0123456789 :.,") for _ in range(HUGE_HDR))
            self.emit(w, "hdr-3MB-line")

    def zero_and_missing(self, n: int) -> None:
        variants = (
            ("zero-adc", {"adc": b""}, ()), ("zero-roi", {"roi": b""}, ()), ("zero-hdr", {"hdr": b""}, ()),
            ("zero-all", {"adc": b"", "roi": b"", "hdr": b""}, ()),
            ("no-adc", {}, ("adc",)), ("no-roi", {}, ("roi",)), ("no-hdr", {}, ("hdr",)),
            ("only-adc", {}, ("hdr", "roi")), ("only-roi", {}, ("hdr", "adc")), ("only-hdr", {}, ("adc", "roi")),
            ("no-adc-zero-roi", {"roi": b""}, ("adc",)),
        )
        for k in range(n):
            case, zero, missing = variants[k % len(variants)]
            w = self.work(self.pick())
            for ext, data in zero.items():
                if ext == "adc":
                    w.adc_override = data
                elif ext == "roi":
                    w.roi = data
                else:
                    w.hdr = data
            for ext in missing:
                w.present[ext] = False
            self.emit(w, case)

    def short_lines(self, n: int) -> None:
        makers = (lambda i: f"{i}", lambda i: f"{i},", lambda i: "0,0,0", lambda i: "1,2", lambda i: ",")
        for k in range(n):
            w = self.work(self.pick(style="D" if k % 2 == 0 else "I"))
            make = makers[k % len(makers)]
            w.adc_override = "".join(make(i) + "\n" for i in range(1, 20_001)).encode()
            self.emit(w, "adc-20000-short-lines")

    def unreadable(self) -> None:
        for exts in (("roi",), ("adc",), ("hdr",), ("hdr", "adc", "roi")):
            w = self.work(self.pick())
            self.emit(w, "unreadable-" + "-".join(exts), unreadable=exts)

    def combined(self, n: int) -> None:
        for k in range(n):
            orig = self.pick()
            w = self.work(orig)
            for _ in range(self.rng.randrange(0, 4)):
                w.insert(self.rng.randrange(len(w.lines) + 1),
                         (_text_garbage if self.rng.random() < 0.6 else _binary_garbage)(self.rng))
            ix = 13 if orig.style == "D" else 9
            for j, i in enumerate(w.pick_image_lines(self.rng.randrange(0, 3))):
                _, _, _, width, height, start = orig.boxes[w.origin[i]]
                _, edit, state = self.BAD[self.rng.randrange(len(self.BAD))]
                w.set_fields(i, {ix + f: v for f, v in edit(width, height, start, len(orig.roi)).items()}, state)
            adc = w.adc()
            if adc and self.rng.random() < 0.7:
                w.cut_adc(self.rng.randrange(len(adc) // 3, len(adc)))
            if self.rng.random() < 0.7:
                w.truncate_roi(self.rng.randrange(len(orig.roi) + 1))
            if self.rng.random() < 0.5:
                w.hdr = w.hdr[:self.rng.randrange(len(w.hdr) + 1)] + self.rng.randbytes(20)
            self.emit(w, "combined")

    def placement(self) -> None:
        d = [k for k in self.small if self.originals[k].style == "D"]
        i = [k for k in self.small if self.originals[k].style == "I"]
        # a D2014 bin in a D2013 day folder (and month and year folders)
        orig = self.originals[d[0]]
        self.emit(self.work(orig), "misplaced", folder="misplaced/D2013/D201305/D20130526",
                  bin_id=self.new_id(orig, datetime(2014, 7, 1, 12, 0, 0)), damaged=False)
        # an I-style bin in a D-style day folder, and in another I-style instrument's folder
        orig = self.originals[i[0]]
        self.emit(self.work(orig), "misplaced", folder="misplaced/D2013/D201305/D20130526",
                  bin_id=self.new_id(orig, datetime(2011, 2, 3, 4, 5, 6)), damaged=False)
        self.emit(self.work(orig), "misplaced", folder="misplaced/IFCB1_2009_001",
                  bin_id=self.new_id(orig, datetime(2010, 2, 3, 4, 5, 6)), damaged=False)
        # a bin directly in the corpus root
        orig = self.originals[d[1]]
        self.emit(self.work(orig), "misplaced", folder="", damaged=False)
        # the same bin id in two folders (one copy intact, one with a truncated .roi)
        for n, key in enumerate((d[2], i[-1])):
            orig = self.originals[key]
            bin_id = self.new_id(orig)
            self.emit(self.work(orig), "duplicate-id", folder=f"duplicate/a/{self.day_folder(bin_id)}",
                      bin_id=bin_id, damaged=False)
            w = self.work(orig)
            w.truncate_roi(len(orig.roi) * (n + 1) // 3)
            self.emit(w, "duplicate-id", folder=f"duplicate/b/{self.day_folder(bin_id)}", bin_id=bin_id)

    def links_and_strays(self) -> None:
        root = self.dest
        # a folder symlink pointing to its parent, and two sibling folders linking to each other
        orig = self.pick()
        loop = self.emit(self.work(orig), "symlink-loop", folder="loops/D20190301", damaged=False)
        os.symlink("..", root / loop.folder / "up")
        os.symlink(".", root / loop.folder / "self")
        for name, other in (("a", "b"), ("b", "a")):
            self.emit(self.work(self.pick()), "symlink-loop", folder=f"loops/{name}", damaged=False)
            os.symlink(f"../{other}", root / "loops" / name / f"to-{other}")
        # dangling links named like bin files, and a link to a folder outside the loops
        os.symlink("nowhere", root / loop.folder / "D20190301T000000_IFCB001.roi")
        os.symlink("/nonexistent/D20190301T000000_IFCB001.adc", root / loop.folder / "D20190301T000000_IFCB001.adc")
        os.symlink("../../misplaced", root / "loops" / "a" / "elsewhere")
        self.extras += ["loops/D20190301/up -> ..", "loops/D20190301/self -> .", "loops/a/to-b <-> loops/b/to-a",
                        "dangling D20190301T000000_IFCB001.roi/.adc", "loops/a/elsewhere -> ../../misplaced"]
        # stray files and folders that are not bins
        strays = {
            "README.txt": b"Damaged IFCB bins for tests.\n",
            "roi-truncated/README.txt": b"stray\n",
            "strays/D20190401/README.txt": b"stray\n",
            "strays/D20190401/notes.hdr": b"softwareVersion: 1\n",
            "strays/D20190401/D20191399T250000_IFCB001.adc": b"1,2,3\n",  # not a valid date
            "strays/D20190401/IFCB1_2019_400_000000.roi": b"\x00" * 10,  # day 400
            "strays/D20190401/D20190401T000000_IFCB001.hdr~": b"backup\n",
            "strays/D20190401/.D20190401T000000_IFCB001.adc.swp": b"\x00" * 100,
            "strays/empty-only-readme/README.txt": b"no bins here\n",
        }
        for rel, data in strays.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        (root / "strays" / "empty").mkdir()
        (root / "strays" / "D20190401" / "D20190401T010101_IFCB001.roi").mkdir()  # a folder named like a file
        self.emit(self.work(self.pick()), "strays", folder="strays/D20190401", damaged=False)
        # a bin whose README sits in its day folder
        readme = self.expects[-1]
        (root / readme.folder / f"{readme.bin_id}.txt").write_bytes(b"not part of the bin\n")
        self.extras += list(strays)

    def special_files(self) -> None:
        """Bin files that are not regular files: a FIFO (opening it would block), links to
        character devices (endless or random bytes), a folder. The bin shows without them."""
        variants = (("adc", "fifo"), ("roi", "fifo"), ("roi", "/dev/zero"), ("hdr", "/dev/urandom"),
                    ("adc", "folder"), ("roi", "dangling"))
        for ext, kind in variants:
            w = self.work(self.pick())
            w.present[ext] = False
            exp = self.emit(w, f"special-{ext}-{kind.strip('/').replace('/', '-')}")
            path = self.dest / exp.folder / f"{exp.bin_id}.{ext}"
            if kind == "fifo":
                os.mkfifo(path)
            elif kind == "folder":
                path.mkdir()
            elif kind == "dangling":
                os.symlink(f"{exp.bin_id}.gone", path)
            else:
                os.symlink(kind, path)

    def odd_names(self) -> None:
        """Folder and file names that are not UTF-8, and a bin 40 folders deep."""
        root = os.fsencode(self.dest)
        odd = os.fsdecode(b"names/\xff\xfe-not-utf8")
        self.emit(self.work(self.pick()), "odd-names", folder=odd, damaged=False)
        with open(os.path.join(root, b"names", b"\xe9t\xe9.adc"), "wb") as f:
            f.write(b"1,2,3\n")
        with open(os.path.join(root, b"names", b"README-\xff.txt"), "wb") as f:
            f.write(b"stray\n")
        deep = "/".join(["deep"] + [f"level{n:02d}" for n in range(40)])
        self.emit(self.work(self.pick()), "deep-folders", folder=deep, damaged=False)

    def build(self) -> "Corpus":
        self.dest.mkdir(parents=True, exist_ok=True)
        self.roi_truncated(44)
        self.adc_cut(32)
        self.adc_garbage(24)
        self.bad_fields(36)
        self.hdr_broken(10, 6, 3)
        self.zero_and_missing(22)
        self.short_lines(3)
        self.combined(24)
        self.unreadable()
        self.special_files()
        self.odd_names()
        self.placement()
        self.links_and_strays()
        return Corpus(self.dest, self.expects, self.extras)


@dataclass
class Corpus:
    root: Path
    bins: list[Expect]
    extras: list[str]

    def by_path(self) -> dict[str, Expect]:
        return {e.path: e for e in self.bins}

    def counts(self) -> Counter:
        return Counter(e.case for e in self.bins)

    def summary(self) -> str:
        c = self.counts()
        lines = [f"{len(self.bins)} bins ({sum(e.damaged for e in self.bins)} damaged) under {self.root}"]
        lines += [f"  {n:4d}  {case}" for case, n in sorted(c.items())]
        exact = sum(len(e.exact) for e in self.bins)
        lines.append(f"  images: {exact} intact (served exactly), {sum(len(e.maybe) for e in self.bins)} undecided, "
                     f"{sum(len(e.absent) for e in self.bins)} gone")
        return "\n".join(lines)

    def save(self, path) -> None:
        doc = [e.__dict__ | {"path": e.path} for e in self.bins]
        Path(path).write_text(json.dumps({"bins": doc, "extras": self.extras}, indent=1))


def build(dest, ifcb_data=None, seed: int = 0) -> Corpus:
    """Write the damaged corpus under `dest` (created; must not hold a corpus already)."""
    return Builder(Path(dest), Path(ifcb_data) if ifcb_data else None, seed).build()


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Write a corpus of damaged IFCB bins.")
    p.add_argument("dest")
    p.add_argument("--data", default=os.environ.get("IFCB_TEST_DATA", str(REPO.parent / "shared" / "ifcb-data")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--manifest", help="also write the expectations as JSON here")
    a = p.parse_args(argv)
    corpus = build(a.dest, a.data if Path(a.data).is_dir() else None, a.seed)
    if a.manifest:
        corpus.save(a.manifest)
    print(corpus.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
