"""ifcbfs-export: the same tree as an rsync of the mount, incremental, subsets, interrupts, errors."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ifcbfs import export
from ifcbfs.core.source import DataRoot
from ifcbfs.fs.namespace import ROOT_INO, Namespace, Options
from ifcbfs.synth import write_bin, write_dataset
from mounting import mounted, tree_digest

EXPORT = [sys.executable, "-m", "ifcbfs.export"]
MTIME = 1_700_000_000


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    ids = write_dataset(root, n_bins=4, n_triggers=150, seed=5, style="mixed", mtime=MTIME)
    return root, ids


@pytest.fixture
def small(tmp_path):
    """A private copy (tests change it): 4 mixed bins, D (IFCB124) and I (IFCB5), 20 minutes apart."""
    root = tmp_path / "data"
    ids = write_dataset(root, n_bins=4, n_triggers=60, seed=9, style="mixed", mtime=MTIME)
    return root, ids


def stat_tree(root) -> dict:
    """Every folder and file under root (root included): (is folder, size of files, mtime_ns, mode)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for path in [folder] + [os.path.join(folder, n) for n in dirs + files]:
            st = os.lstat(path)
            is_dir = os.path.isdir(path)
            out[os.path.relpath(path, root)] = (is_dir, 0 if is_dir else st.st_size, st.st_mtime_ns, oct(st.st_mode))
    return out


@contextlib.contextmanager
def process_umask(mask: int):
    """The export writes with the process umask, as cp and tar do."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def files(root) -> list:
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())


def bin_folders(root) -> set:
    return {p.name for p in Path(root).rglob("*") if p.is_dir() and (p / "hdr.json").is_file()}


def run(*argv, capsys=None):
    code = export.main([str(a) for a in argv])
    return code, capsys.readouterr().err if capsys else ""


# --- the key property: export == rsync -a of the mount ---------------------------------------
@pytest.mark.mount
@pytest.mark.parametrize("layout", ["mirror", "flat"])
def test_synthetic_export_equals_rsync_of_the_mount(synth_root, tmp_path, layout):
    root, _ = synth_root
    modes = check_same_as_mount(root, tmp_path, layout)
    assert modes == {"0o40755", "0o100644"}  # a copy its owner can change and delete


@pytest.mark.mount
def test_mount_umask_matches_an_export_under_that_umask(synth_root, tmp_path):
    root, _ = synth_root
    assert check_same_as_mount(root, tmp_path, "mirror", umask=0o027) == {"0o40750", "0o100640"}


@pytest.mark.mount
def test_real_export_equals_rsync_of_the_mount(ifcb_data, tmp_path):
    before = tree_digest(ifcb_data)
    check_same_as_mount(ifcb_data, tmp_path, "mirror")
    assert tree_digest(ifcb_data) == before, "the source changed"


@pytest.mark.mount
def test_export_with_stitch_qc_equals_rsync_of_the_mount(ifcb_data, tmp_path):
    shutil.copytree(ifcb_data / "bins", tmp_path / "data" / "bins")
    write_bin(tmp_path / "data" / "synth", "IFCB5_2012_100_120000", 200, seed=7, image_fraction=0.7,
              pair_fraction=0.4, chain_fraction=0.4, mtime=MTIME)
    for folder in (tmp_path / "data", tmp_path / "data" / "synth"):  # rsync compares whole seconds
        os.utime(folder, (MTIME, MTIME))
    check_same_as_mount(tmp_path / "data", tmp_path, "mirror", stitch="qc")
    qc = sorted(p.relative_to(tmp_path / "export") for p in (tmp_path / "export").rglob("stitching/*"))
    assert Path("bins/IFCB5_2012_028_081515/IFCB5_2012_028_081515/stitching/IFCB5_2012_028_081515_00003_raw.png") in qc
    assert sum(1 for p in qc if p.parts[0] == "synth") > 10


@pytest.mark.mount
def test_export_with_mosaic_and_zip_equals_rsync_of_the_mount(ifcb_data, tmp_path):
    check_same_as_mount(ifcb_data / "bins", tmp_path, "flat", mount=("mosaic=400x300@25", "zip"),
                        export=("--mosaic=400x300@25", "--zip"))
    out = tmp_path / "export"
    assert len(list(out.glob("*/*.zip"))) == 7 and len(list(out.glob("*/mosaic/page-*.png"))) >= 7
    assert len(list(out.glob("*/mosaic/coordinates.csv"))) == 7


@pytest.mark.mount
def test_export_with_the_default_mosaic_equals_rsync_of_the_mount(synth_root, tmp_path):
    root, ids = synth_root
    check_same_as_mount(root, tmp_path, "mirror", mount=("mosaic",), export=("--mosaic",))
    assert len(list((tmp_path / "export").rglob("mosaic/page-001.png"))) == len(ids)


def check_same_as_mount(source, tmp_path, layout, umask=0o022, stitch="on", mount=(), export=()) -> set:
    """rsync -a of a mount with `umask` and an export under that process umask: the same
    trees, modes included. `mount` and `export` are more options of each. Returns the modes seen."""
    with mounted(source, tmp_path / "mnt", f"layout={layout}", f"umask={umask:03o}", f"stitch={stitch}", *mount) as m:
        subprocess.run(["rsync", "-a", f"{m.path}/", f"{tmp_path / 'rsync'}/"], check=True)
    with process_umask(umask):
        code, _ = run(source, tmp_path / "export", "--layout", layout, "--jobs", 2, "--stitch", stitch, *export)
    assert code == 0
    subprocess.run(["diff", "-r", tmp_path / "rsync", tmp_path / "export"], check=True)
    want, got = stat_tree(tmp_path / "rsync"), stat_tree(tmp_path / "export")
    assert sum(1 for is_dir, _, _, _ in got.values() if not is_dir) > 20
    assert got == want
    return {mode for _, _, _, mode in got.values()}


# --- incremental -----------------------------------------------------------------------------
def test_second_export_writes_nothing_and_a_changed_bin_is_rewritten(small, tmp_path, capsys):
    root, ids = small
    dest = tmp_path / "out"
    code, err = run(root, dest, capsys=capsys)
    total = len(files(dest))
    assert code == 0 and f"exported 4 bins: {total} files written, 0 unchanged, 0 errors" in err
    inodes = {f: os.lstat(dest / f).st_ino for f in files(dest)}

    code, err = run(root, dest, capsys=capsys)
    assert code == 0 and f"0 files written, {total} unchanged" in err
    assert {f: os.lstat(dest / f).st_ino for f in files(dest)} == inodes

    grown = ids[2]  # a D bin gets one more image, as while an instrument is writing it
    folder = next(root.rglob(grown + ".roi")).parent
    grow(folder / grown)
    code, err = run(root, dest, capsys=capsys)
    now = files(dest)
    changed = [f for f in now if grown in f]
    assert code == 0 and f"{len(changed)} files written, {len(now) - len(changed)} unchanged" in err
    assert len(now) == total + 1
    new_mtime = max((folder / (grown + ext)).stat().st_mtime_ns for ext in (".hdr", ".adc", ".roi"))
    for f in now:
        st = os.lstat(dest / f)
        assert st.st_ino == inodes[f] if grown not in f else st.st_mtime_ns == new_mtime, f
    assert not [f for f in os.listdir(dest) if f.endswith(".ifcbfs-tmp")]


def grow(base: Path) -> None:
    """Append one 10x10 image to a D-style bin: a new .adc line and its pixels in the .roi."""
    roi, adc = base.with_suffix(".roi"), base.with_suffix(".adc")
    fields = adc.read_text().splitlines()[-1].split(",")
    fields[0] = str(int(fields[0]) + 1)
    fields[13:18] = ["5", "5", "10", "10", str(roi.stat().st_size)]
    with roi.open("ab") as fh:
        fh.write(bytes(range(100)))
    with adc.open("a") as fh:
        fh.write(",".join(fields) + "\n")


# --- subsets and layout ----------------------------------------------------------------------
@pytest.mark.parametrize("options, picked", [
    (["--bins", "D*"], [0, 2]),
    (["--bins", "*_IFCB124", "--bins", "IFCB5_*_002000"], [0, 2, 1]),
    (["--instrument", "5"], [1, 3]),
    (["--instrument", "5", "--instrument", "124"], [0, 1, 2, 3]),
    (["--instrument", "5:124"], [0, 1, 2, 3]),
    (["--instrument", "7:5"], [1, 3]),
    (["--since", "2024-06-01T00:20"], [1, 2, 3]),
    (["--until", "2024-06-01T00:40:00Z"], [0, 1]),
    (["--since", "2024-06-01T00:20:00Z", "--until", "2024-06-01T01:00"], [1, 2]),
    (["--since", "2024-06-02"], []),
])
def test_subset_options_select_bins(small, tmp_path, options, picked):
    root, ids = small
    code, _ = run(root, tmp_path / "out", *options)
    assert code == 0
    assert bin_folders(tmp_path / "out") == {ids[i] for i in picked}
    if options == ["--instrument", "5"]:  # folders that lead to no selected bin are not created
        assert sorted(os.listdir(tmp_path / "out")) == ["IFCB5_2024_153"]


def test_flat_layout_and_the_tree_matches_the_namespace(small, tmp_path):
    root, ids = small
    code, _ = run(root, tmp_path / "out", "--layout", "flat", "--jobs", 1)
    assert code == 0
    assert sorted(os.listdir(tmp_path / "out")) == sorted(ids)
    ns = Namespace(DataRoot(str(root)), Options(layout="flat"))
    for name, node in ns.children(ROOT_INO).items():
        for child in ns.children(node.ino).values():
            path = tmp_path / "out" / name / child.name
            assert path.read_bytes() == ns.read(child.ino)
            assert os.lstat(path).st_mtime_ns == child.mtime_ns
        assert os.lstat(tmp_path / "out" / name).st_mtime_ns == node.mtime_ns


# --- interrupts ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("big") / "data"
    write_dataset(root, n_bins=6, n_triggers=1000, seed=2, style="mixed")
    return root


@pytest.mark.parametrize("target", ["process", "group"])
def test_interrupt_leaves_no_temporary_or_partial_file(big_root, tmp_path, target):
    dest = tmp_path / "out"
    proc = subprocess.Popen(EXPORT + [str(big_root), str(dest), "--jobs", "2"], stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 20
    while not any(dest.rglob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.005)
    (os.killpg if target == "group" else os.kill)(proc.pid, signal.SIGINT)  # group: Ctrl-C in a terminal
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 130, err
    assert "interrupted: " in err and "files written" in err and "left" in err
    present = [p for p in dest.rglob("*") if p.is_file() or p.is_symlink()]
    assert not [p for p in present if p.name.endswith(".ifcbfs-tmp")]
    ns = Namespace(DataRoot(str(big_root)), Options(cache_size=0))
    n_files = 0
    for path in present:
        ino = ROOT_INO
        for part in path.relative_to(dest).parts:
            ino = ns.lookup(ino, part).ino
        node = ns.node(ino)
        assert path.read_bytes() == ns.read(ino) and os.lstat(path).st_mtime_ns == node.mtime_ns, path
        n_files += 1
    assert 0 < n_files < sum(1 for _ in walk_files(ns))
    assert export.main([str(big_root), str(dest)]) == 0  # and the next run completes it


def walk_files(ns, ino=ROOT_INO):
    for node in ns.children(ino).values():
        yield from walk_files(ns, node.ino) if node.is_dir else [node]


# --- errors ----------------------------------------------------------------------------------
def test_damaged_bins_are_logged_once_and_counted(small, tmp_path, capsys, monkeypatch):
    root, ids = small
    real_select = export.select_bins

    def select_then_damage(*args):
        picked = real_select(*args)
        # after listing: one bin loses the end of its .roi, another its .adc
        roi = next(root.rglob(ids[0] + ".roi"))
        os.truncate(roi, roi.stat().st_size // 2)
        next(root.rglob(ids[1] + ".adc")).unlink()
        return picked

    monkeypatch.setattr(export, "select_bins", select_then_damage)
    code, err = run(root, tmp_path / "out", capsys=capsys)
    assert code == 1
    logged = [line for line in err.splitlines() if line.startswith("ifcbfs-export: ")]
    assert len(logged) == 2 and ids[0] in logged[0] + logged[1] and ids[1] in logged[0] + logged[1]
    assert "exported 4 bins" in err and " 0 errors" not in err
    assert bin_folders(tmp_path / "out") >= {ids[0], ids[2], ids[3]}


def test_bad_paths_and_options_are_one_line_errors(small, tmp_path, capsys):
    root, _ = small
    for argv, status, words in [
        ([tmp_path / "missing", tmp_path / "out"], 1, "does not exist"),
        ([root / "2024" / "D20240601" / (os.listdir(root / "2024" / "D20240601")[0]), tmp_path / "o"], 1, "not a folder"),
        ([root, root / "export"], 1, "inside the source"),
        ([root, root], 1, "inside the source"),
        ([root, tmp_path / "out", "--since", "yesterday"], 2, "--since"),
        ([root, tmp_path / "out", "--until", "2024-02-30"], 2, "--until"),
        ([root, tmp_path / "out", "--layout", "tree"], 2, "--layout"),
        ([root, tmp_path / "out", "--stitch", "maybe"], 2, "--stitch"),
        ([root, tmp_path / "out", "--mosaic=800x0"], 2, "--mosaic"),
        ([root, tmp_path / "out", "--mosaic", "big"], 2, "--mosaic"),
        ([root, tmp_path / "out", "--zip=yes"], 2, "--zip"),
        ([root, tmp_path / "out", "--instrument", "IFCB5"], 2, "--instrument"),
        ([root, tmp_path / "out", "--since", "2024-06-02", "--until", "2024-06-01"], 2, "not before"),
        ([root, tmp_path / "out", "--jobs", "0"], 2, "--jobs"),
        ([root, "/proc/ifcbfs-export-test"], 1, "cannot create destination"),
        ([root], 2, "required"),
        ([root, tmp_path / "out", "--endpoint", "http://127.0.0.1:1"], 2, "s3://BUCKET[/PREFIX] sources only"),
        (["s3://bkt", tmp_path / "out", "--endpoint", "127.0.0.1:1"], 2, "expected a URL"),
        (["s3://bkt", tmp_path / "out", "--region", "no region"], 2, "expected a region name"),
        (["s3://", tmp_path / "out"], 2, "no bucket name"),
    ]:
        code, err = run(*argv, capsys=capsys)
        assert code == status and words in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (root / "export").exists() and not (tmp_path / "out").exists()
    assert export.main(["--help"]) == 0 and "usage: ifcbfs-export" in capsys.readouterr().out


def test_command_line_entry_points(small, tmp_path):
    root, ids = small
    done = subprocess.run(EXPORT + [str(root), str(tmp_path / "out"), "--bins", ids[0]],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr.startswith("exported 1 bins: ")
    assert bin_folders(tmp_path / "out") == {ids[0]}
