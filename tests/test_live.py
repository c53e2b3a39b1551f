"""Live data: a bin growing under an instrument while readers read it through a real mount."""
import json
import os
import threading
import time

import pytest

import ifcbfs
from ifcbfs.synth import write_bin
from mounting import mounted

pytestmark = pytest.mark.mount
STEM = "D20240601T000000_IFCB124"
LATER = "D20240601T002000_IFCB124"


def expected_files(folder, stem):
    b = ifcbfs.Bin.load(next(f for f in ifcbfs.open_root(str(folder)).walk() if str(f.bin_id) == stem))
    return {e.name: b.read(e.name) for e in b.entries}


def test_growing_bin_is_never_stale_short_or_wrong(tmp_path):
    full = tmp_path / "full"
    write_bin(full, STEM, 400, seed=7, image_fraction=0.7)
    write_bin(full, LATER, 20, seed=8)
    final = expected_files(full, STEM)
    hdr = (full / f"{STEM}.hdr").read_bytes()
    adc_lines = (full / f"{STEM}.adc").read_bytes().splitlines(keepends=True)
    roi = (full / f"{STEM}.roi").read_bytes()
    live = tmp_path / "live"
    live.mkdir()
    (live / f"{STEM}.hdr").write_bytes(hdr)
    (live / f"{STEM}.adc").write_bytes(b"")
    (live / f"{STEM}.roi").write_bytes(b"")
    problems, reads = [], [0]
    writing = threading.Event()
    writing.set()

    def writer():
        with open(live / f"{STEM}.adc", "ab") as adc, open(live / f"{STEM}.roi", "ab") as r:
            step = 10
            for at in range(0, len(adc_lines), step):
                chunk = adc_lines[at:at + step]
                ends = [int(line.split(b",")[17]) + int(line.split(b",")[15]) * int(line.split(b",")[16]) for line in chunk]
                r.write(roi[r.tell():max(ends + [r.tell()])]), r.flush()
                half = len(chunk[-1]) // 2  # a line cut mid-way, as an instrument leaves it for a moment
                adc.write(b"".join(chunk[:-1]) + chunk[-1][:half]), adc.flush()
                time.sleep(0.02)
                adc.write(chunk[-1][half:]), adc.flush()
                time.sleep(0.05)
                if at == 200:
                    write_bin(live, LATER, 20, seed=8)
        writing.clear()

    def reader(mnt):
        folder = mnt / STEM
        while writing.is_set():
            for name in sorted(os.listdir(folder)):
                path = folder / name
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    continue
                reads[0] += 1
                if name.endswith(".png"):
                    if data != final.get(name):
                        problems.append(f"{name}: {len(data)} bytes differ from the image")
                elif name == "adc.csv":
                    if not data.endswith(b"\n") or not final[name].startswith(data):
                        problems.append(f"adc.csv: {len(data)} bytes are not a whole-line prefix")
                elif name == "hdr.json":
                    try:
                        json.loads(data)
                    except ValueError:
                        problems.append(f"hdr.json: {len(data)} bytes are not JSON")

    with mounted(live, tmp_path / "mnt", "poll=0.5") as m:
        readers = [threading.Thread(target=reader, args=(m.path,)) for _ in range(8)]
        w = threading.Thread(target=writer)
        w.start()
        for t in readers:
            t.start()
        w.join(120)
        for t in readers:
            t.join(60)
        assert not problems, problems[:5]
        assert reads[0] > 100
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the last change reaches the mount within the poll time
            shown = {p.name: p.stat().st_size for p in (m.path / STEM).iterdir()}
            if shown == {n: len(d) for n, d in final.items()}:
                break
            time.sleep(0.1)
        assert shown == {n: len(d) for n, d in final.items()}
        for name, data in final.items():
            assert (m.path / STEM / name).read_bytes() == data, name
        assert sorted(os.listdir(m.path)) == [STEM, LATER]
        assert "Traceback" not in m.logged()
