"""Synthetic raw IFCB bins (.hdr, .adc, .roi) for tests, the demo and benchmarks.

Output is a pure function of the arguments: only ``random.Random`` draws that
CPython reproduces exactly (``random``, ``randrange``, ``randbytes``) and
integer arithmetic are used, so the same call writes the same bytes on any
machine and Python >= 3.9.  Standard library only.

    python -m ifcbfs.synth DEST [--bins N] [--triggers N] [--seed S] [--style D|I|mixed]
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import re
import time
from datetime import datetime, timedelta

CAMERA_W, CAMERA_H = 1380, 1034
V2_FORMAT = ("trigger#, ADC_time, PMTA, PMTB, PMTC, PMTD, PeakA, PeakB, PeakC, PeakD, TimeOfFlight, "
             "GrabTimeStart, GrabTimeEnd, RoiX, RoiY, RoiWidth, RoiHeight, StartByte, ComparatorOut, "
             "StartPoint, SignalLength, Status, RunTime, InhibitTime")
LEGACY_FIRST = '"Imaging FlowCytobot Acquisition Software version 1.0; October 2005"'
_D_ID = re.compile(r"D(\d{8}T\d{6})_IFCB\d+$")
_I_ID = re.compile(r"IFCB\d+_(\d{4})_(\d{3})_(\d{6})$")

# Side lengths 12 * 1.05**k for k = 0..99, built with integers only (no libm).
_SIDES, _v = [], 12_000_000
for _ in range(100):
    _SIDES.append(_v // 1_000_000)
    _v = _v * 105 // 100
_TABLES: dict = {}


def _table(base: int, spread: int) -> bytes:
    """Translation table: random byte -> base + a bell-shaped offset (popcount)."""
    key = (base, spread)
    if key not in _TABLES:
        _TABLES[key] = bytes(max(0, min(255, base + (bin(i).count("1") - 4) * spread // 2))
                             for i in range(256))
    return _TABLES[key]


def _side(rng: random.Random, mean_index: int) -> int:
    """A log-normal-ish side length: Irwin-Hall sum of uniforms indexes the geometric grid."""
    k = sum(rng.randrange(mean_index * 2 // 3 + 1) for _ in range(3))
    return _SIDES[min(k, len(_SIDES) - 1)]


def _size(rng: random.Random, large: bool = True) -> tuple:
    """(width, height) of one ROI; mostly 20-300 px, about 1 in 400 up to 1000 x 600."""
    if large and rng.randrange(400) == 0:
        return 500 + rng.randrange(501), 250 + rng.randrange(351)
    w = _side(rng, 34)                                # at most ~330 (bounds pair unions)
    return w, min(_side(rng, 28), w + 40)


def _ellipse(rng, buf, w, h, cx, cy, rx, ry, table) -> None:
    """Fill an ellipse, one slice assignment per row, with fresh noise through table."""
    for dy in range(-ry, ry + 1):
        r = cy + dy
        if 0 <= r < h:
            half = rx * math.isqrt(ry * ry - dy * dy) // ry
            a, b = max(0, cx - half), min(w, cx + half + 1)
            if a < b:
                buf[r * w + a:r * w + b] = rng.randbytes(b - a).translate(table)


def _image(rng: random.Random, w: int, h: int) -> bytearray:
    """Light noisy background (180-220) with one or two darker particles."""
    buf = bytearray(rng.randbytes(w * h).translate(_table(180 + rng.randrange(41), 3)))
    for _ in range(1 if rng.randrange(10) < 7 else 2):
        rx, ry = max(1, w * (2 + rng.randrange(3)) // 10), max(1, h * (2 + rng.randrange(3)) // 10)
        cx, cy = w // 4 + rng.randrange(w // 2 + 1), h // 4 + rng.randrange(h // 2 + 1)
        level = 50 + rng.randrange(100)
        _ellipse(rng, buf, w, h, cx, cy, rx, ry, _table(level + 40, 6))
        _ellipse(rng, buf, w, h, cx, cy, max(1, rx * 2 // 3), max(1, ry * 2 // 3), _table(level, 8))
    return buf


def _crop(canvas: bytearray, cw: int, x: int, y: int, w: int, h: int) -> bytes:
    return b"".join(canvas[(y + r) * cw + x:(y + r) * cw + x + w] for r in range(h))


def is_pair(a: tuple, b: tuple) -> bool:
    """SPEC section 5 overlap test on (x, y, w, h) boxes."""
    return (a[0] < b[0] + b[2] - 2 and a[0] + a[2] > b[0] + 2
            and a[1] < b[1] + b[3] - 2 and a[1] + a[3] > b[1] + 2)


def _group(rng: random.Random, kind: str) -> list:
    """Boxes of one multi-image trigger, relative to their union: 'pair', 'chain' or 'decoy'.

    Pairs overlap by at least 5 px both ways; about half are offset diagonally so
    that the union has a gap.  Decoys share the trigger but overlap by at most 2 px
    in x (often with a gap between them), so they are not a pair.
    """
    (wa, ha), (wb, hb) = _size(rng, False), _size(rng, False)
    if kind == "decoy":
        xb = wa - (2 - rng.randrange(12))              # x overlap of 2 px down to a 9 px gap
        ya, yb = 0, rng.randrange(ha)
    else:
        xb = wa - 5 - rng.randrange(min(wa, wb) // 2 - 4)
        if rng.randrange(2):
            ya, yb, hb = 0, 0, ha                     # aligned rows: union fully covered
        else:
            d = 3 + rng.randrange(ha - 8)             # y overlap >= 5 px, gap in the union
            ya, yb = (0, d) if rng.randrange(2) else (d, 0)
            hb = max(hb, d + 5)
    boxes = [(0, ya, wa, ha), (xb, yb, wb, hb)]
    if kind == "chain":
        wc, hc = _size(rng, False)
        boxes.append((xb + wb - 5 - rng.randrange(min(wb, wc) // 2 - 4), yb, wc, hb))
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    boxes = [(x - x0, y - y0, w, h) for x, y, w, h in boxes]
    if rng.randrange(2):                              # mirror: second box left of the first
        uw = max(x + w for x, _, w, _ in boxes)
        boxes = [(uw - x - w, y, w, h) for x, y, w, h in boxes]
    for a, b in zip(boxes, boxes[1:]):
        assert is_pair(a, b) == (kind != "decoy"), (kind, boxes)
    return boxes


def _vb(x: float) -> str:
    """Format like the old acquisition software: '.3105469', '-.61', '0'."""
    s = f"{x:.7f}".rstrip("0").rstrip(".")
    if s in ("", "0", "-0"):
        return "0"
    return s.replace("0.", ".", 1) if s.lstrip("-").startswith("0.") else s


def _bin_time(bin_id: str) -> tuple:
    """(style, datetime) from a bin id."""
    m = _D_ID.match(bin_id)
    if m:
        return "D", datetime.strptime(m.group(1), "%Y%m%dT%H%M%S")
    m = _I_ID.match(bin_id)
    if m:
        day = datetime.strptime(m.group(1) + m.group(3), "%Y%H%M%S")
        return "I", day + timedelta(days=int(m.group(2)) - 1)
    raise ValueError(f"not an IFCB bin id: {bin_id!r}")


def _d_header(rng, when, n_triggers, n_images, run, inhibit, sample_number) -> list:
    f = rng.random
    return [
        "softwareVersion: Imaging FlowCytobot Acquisition Software version 3.0.0.0",
        f"sampleTime: {when:%Y-%m-%dT%H:%M:%S}Z", f"sampleNumber: {sample_number}",
        "sampleType: Normal\t", f"triggerCount: {n_triggers}", f"roiCount: {n_images}",
        f"humidity: {20 + 30 * f():.6f}", f"temperature: {12 + 14 * f():.6f}",
        f"runTime: {run:.6f}", f"inhibitTime: {inhibit:.6f}", f"ADCFileFormat: {V2_FORMAT}",
        "auxPower1: False", "autoStart: True", "HumidityAlarmThreshold(%): 75",
        f"FlashlampControlVoltage: {2.3 + 0.1 * rng.randrange(4):.1f}", "cameraGain: 6",
        f"binarizeThreshold: {5 + rng.randrange(6)}", f"minimumBlobArea: {1000 * (1 + rng.randrange(3))}",
        "blobXgrowAmount: 20", "blobYgrowAmount: 5", "minimumGapBetweenAdjacentBlobs: 50",
        "laserState: True", "runningCamera: True", "pump1State: True", "stirrer: True",
        "PMTAtriggerThreshold_DAQ_MCConly: 0.15", "PMTBtriggerThreshold_DAQ_MCConly: 0.12",
        "ADCdataRateDAQ_MCConly: 240", "hasCamera: True", "flash: True",
        f"PMTAhighVoltage: {0.55 + 0.05 * rng.randrange(4):.2f}",
        f"PMTBhighVoltage: {0.5 + 0.05 * rng.randrange(4):.2f}",
        "PMTChighVoltage: 0", "pumpDriveVoltage: 14", "SyringeSampleVolume: 5", "syringeSize: 5",
        "sampleVolume2skip: 0", "primeVolume: 1", "KloehnPort: /dev/ttyUSB0\t", "counterBeads: 0",
    ]


def _i_header(rng, seed) -> list:
    vals = (f"{8 + 12 * rng.random():.5f}", f"{25 + 20 * rng.random():.5f}", str(25 + rng.randrange(10)),
            _vb(0.6 + 0.025 * rng.randrange(4)), _vb(0.55 + 0.025 * rng.randrange(4)), "10")
    return [LEGACY_FIRST, '"Synthetic bin written by ifcbfs.synth"', f'"seed {seed}"',
            '"SyringeStatus =  0"',
            '"Temp Humidity BinarizeThresh PMT1hv(ssc) PMT2hv(chl) BlobSizeThresh"',
            ",".join(f'" {v}"' for v in vals)]


def write_bin(folder, bin_id: str, n_triggers: int, seed: int = 0, *, image_fraction: float = 0.5,
              pair_fraction: float = 0.0, mtime: float | None = None, chain_fraction: float = 0.0,
              crlf: bool = False, lead_bytes: int = 0, sample_number: int = 1, tiny: bool = False) -> dict:
    """Write BIN.hdr/.adc/.roi into folder (created if missing).

    About ``image_fraction`` of the triggers have an image; ``pair_fraction`` of those
    are written as two image lines with the same trigger number, mostly overlapping
    pairs (SPEC section 5; listed in ``pairs``) and one in five a "decoy" that does
    not overlap enough to be a pair.  ``chain_fraction`` of the pairs get a third
    line overlapping the second, giving chained pairs (a, a+1), (a+1, a+2).
    ``lead_bytes`` stray bytes precede the first image.  ``mtime`` (if given) is set
    on the three files.  The style (ADC schema and header) follows the bin id.  ``tiny``
    images are 4-15 px a side of plain noise (for archive-scale trees written quickly).

    Returns {'bin_id', 'n_triggers', 'n_images' (ADC lines with an image),
    'pairs' [(target_a, target_b), ...] with 1-based ADC line numbers, 'roi_size'}.
    """
    style, when = _bin_time(bin_id)
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(os.fspath(folder), bin_id)
    f = rng.random
    with open(base + ".roi", "wb") as roi:  # streamed: memory stays small for large bins
        roi.write(rng.randbytes(lead_bytes))
        offset, lines, pairs, n_images = lead_bytes, [], [], 0
        span = 1200.0 if style == "D" else 900.0
        t, inhibit = 0.05 + f(), 0.0
        for trigger in range(1, n_triggers + 1):
            t += f() * 2 * span / max(n_triggers, 1)
            boxes = []
            if f() < image_fraction:
                if f() < pair_fraction:
                    kind = "decoy" if rng.randrange(5) == 0 else "chain" if f() < chain_fraction else "pair"
                    boxes = _group(rng, kind)
                    uw = max(x + w for x, _, w, _ in boxes)
                    uh = max(y + h for _, y, _, h in boxes)
                    canvas = _image(rng, uw, uh) if kind != "decoy" else None
                    if kind != "decoy":
                        pairs += [(len(lines) + i + 1, len(lines) + i + 2) for i in range(len(boxes) - 1)]
                else:
                    w, h = (4 + rng.randrange(12), 4 + rng.randrange(12)) if tiny else _size(rng)
                    uw, uh, boxes, canvas = w, h, [(0, 0, w, h)], None
                ox, oy = rng.randrange(CAMERA_W - uw + 1), rng.randrange(CAMERA_H - uh + 1)
            inhibit += 0.0004 + 0.0002 * f()
            for x, y, w, h in boxes or [(0, 0, 0, 0)]:
                if w:
                    pix = (_crop(canvas, uw, x, y, w, h) if canvas is not None
                           else rng.randbytes(w * h) if tiny else _image(rng, w, h))
                    roi.write(pix)
                    x, y, start = x + ox, y + oy, offset
                    offset += len(pix)
                    n_images += 1
                else:
                    start = offset
                if style == "D":
                    lines.append(",".join((
                        str(trigger), f"{t:.6f}", *(f"{f() * s:.6f}" for s in (0.4, 0.08, 0.01, 0.01)),
                        *(f"{f() * s:.6f}" for s in (4.0, 0.6, 0.02, 0.02)),
                        f"{40 + 30 * f():.6f}" if w else "-999.00000", f"{t + 0.001:.6f}",
                        f"{t + 0.042:.6f}", str(x), str(y), str(w), str(h), str(start),
                        "0", "0", "0", "0", f"{t + 0.02:.6f}", f"{inhibit:.6f}")))
                else:
                    lines.append(",".join((
                        str(trigger), _vb(t), *(_vb(f() * 2 - 1.5) for _ in range(4)), _vb(f() - 0.5),
                        _vb(t - 0.3 * f()), _vb(t + 0.02), str(x), str(y), str(w), str(h), str(start),
                        _vb(f() - 0.6), "")))
    nl = "\r\n" if crlf else "\n"
    hdr = (_d_header(rng, when, n_triggers, n_images, t + 1.0, inhibit, sample_number)
           if style == "D" else _i_header(rng, seed))
    with open(base + ".hdr", "w", encoding="ascii", newline="") as fh:
        fh.write(nl.join(hdr) + nl)
    with open(base + ".adc", "w", encoding="ascii", newline="") as fh:
        fh.write("".join(line + nl for line in lines))
    if mtime is not None:
        for ext in (".hdr", ".adc", ".roi"):
            os.utime(base + ext, (mtime, mtime))
    return {"bin_id": bin_id, "n_triggers": n_triggers, "n_images": n_images,
            "pairs": pairs, "roi_size": offset}


def _bin_seed(seed: int, bin_id: str) -> int:
    """Per-bin seed: depends only on the dataset seed and the bin id."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{bin_id}".encode()).digest()[:8], "big")


def write_dataset(root, n_bins: int = 8, n_triggers: int = 3000, seed: int = 0, *, style: str = "D",
                  start: str = "2024-06-01T00:00:00", image_fraction: float = 0.5,
                  pair_fraction: float | None = None, mtime: float | None = None, crlf: bool = False,
                  layout: str = "day", d_instrument: int = 124, i_instrument: int = 5,
                  info: list | None = None, tiny: bool = False) -> list:
    """Write n_bins bins, 20 minutes apart, under root; return their bin ids in order.

    ``style`` is "D", "I" or "mixed" (alternating D and I, starting with D).
    ``layout`` "day": D bins in ``YYYY/DYYYYMMDD/``, I bins in ``IFCBn_YYYY_DDD/``;
    "deep": D bins in ``DYYYY/DYYYYMM/DYYYYMMDD/`` (I bins as "day"); "flat": all in root.
    ``pair_fraction`` defaults to 0.05 for I bins and 0 for D bins.  With ``mtime``
    every written file and folder gets that modification time.  If ``info`` is a
    list, each bin's write_bin result is appended to it.  ``tiny``: see write_bin.
    """
    if style not in ("D", "I", "mixed") or layout not in ("day", "deep", "flat"):
        raise ValueError(f"bad style {style!r} or layout {layout!r}")
    t0, ids, dirs = datetime.fromisoformat(start), [], set()
    for i in range(n_bins):
        t = t0 + timedelta(minutes=20 * i)
        s = style if style != "mixed" else "DI"[i % 2]
        if s == "D":
            bin_id = f"D{t:%Y%m%dT%H%M%S}_IFCB{d_instrument:03d}"
            sub = {"day": (f"{t:%Y}", f"D{t:%Y%m%d}"), "deep": (f"D{t:%Y}", f"D{t:%Y%m}", f"D{t:%Y%m%d}"),
                   "flat": ()}[layout]
        else:
            day = f"IFCB{i_instrument}_{t:%Y}_{t.timetuple().tm_yday:03d}"
            bin_id = f"{day}_{t:%H%M%S}"
            sub = () if layout == "flat" else (day,)
        folder = os.path.join(os.fspath(root), *sub)
        for k in range(len(sub) + 1):
            dirs.add(os.path.join(os.fspath(root), *sub[:k]))
        pf = pair_fraction if pair_fraction is not None else (0.05 if s == "I" else 0.0)
        res = write_bin(folder, bin_id, n_triggers, _bin_seed(seed, bin_id), image_fraction=image_fraction,
                        pair_fraction=pf, mtime=mtime, crlf=crlf, sample_number=i + 1, tiny=tiny)
        if info is not None:
            info.append(res)
        ids.append(bin_id)
    if mtime is not None:
        for d in sorted(dirs, key=len, reverse=True):
            os.utime(d, (mtime, mtime))
    return ids


def main(argv=None) -> int:
    """Command line: write a synthetic dataset and print a one-line summary."""
    p = argparse.ArgumentParser(prog="python -m ifcbfs.synth", description=__doc__.splitlines()[0])
    p.add_argument("dest", help="data root to write into (created if missing)")
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--triggers", type=int, default=3000, help="triggers (ADC lines) per bin")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", choices=("D", "I", "mixed"), default="D")
    p.add_argument("--layout", choices=("day", "deep", "flat"), default="day")
    p.add_argument("--image-fraction", type=float, default=0.5)
    p.add_argument("--mtime", type=float, default=None, help="set this mtime on everything written")
    p.add_argument("--crlf", action="store_true", help="CRLF line ends in .hdr and .adc")
    a = p.parse_args(argv)
    info: list = []
    began = time.monotonic()
    write_dataset(a.dest, a.bins, a.triggers, a.seed, style=a.style, layout=a.layout, mtime=a.mtime,
                  image_fraction=a.image_fraction, crlf=a.crlf, info=info)
    mb = sum(r["roi_size"] for r in info) / 1e6
    print(f"wrote {len(info)} bins, {sum(r['n_triggers'] for r in info)} triggers, "
          f"{sum(r['n_images'] for r in info)} images, {mb:.1f} MB of ROI data to {a.dest} "
          f"in {time.monotonic() - began:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
