"""Memory and background work that do not grow with the archive (namespace, without a kernel)."""
import os

from ifcbfs.core.source import DataRoot
from ifcbfs.fs.namespace import BIN, CODE_MASK, FILE, ROOT_INO, Namespace, Options
from ifcbfs.synth import write_bin, write_dataset

OLD = 1_600_000_000  # a bin written long ago has settled


def bins_of(ns):
    return [n for n in ns.children(ROOT_INO).values() if n.kind == BIN]


def test_no_node_is_kept_per_file(tmp_path):
    write_dataset(tmp_path, n_bins=3, n_triggers=80, seed=1, layout="flat", mtime=OLD)
    ns = Namespace(DataRoot(str(tmp_path)))
    files = [f for b in bins_of(ns) for f in ns.children(b.ino).values()]
    assert len(files) > 100 and all(f.kind == FILE for f in files)
    assert len(ns.nodes) == 1 + 3  # the root and the bins; files are made on demand


def test_a_file_inode_decodes_to_its_bin_and_answers_after_eviction(tmp_path):
    write_dataset(tmp_path, n_bins=4, n_triggers=60, seed=2, layout="flat", mtime=OLD)
    ns = Namespace(DataRoot(str(tmp_path)), Options(bin_cache=1, cache_size=0))
    listed = {f.ino: (f.path, f.size, ns.read(f.ino)) for b in bins_of(ns) for f in ns.children(b.ino).values()}
    loaded = [b for b in bins_of(ns) if b.model is not None]
    assert len(loaded) == 1  # the budget keeps one bin at most
    for ino, (path, size, data) in listed.items():
        node = ns.node(ino)  # most of these bins were evicted: loaded again, same answer
        assert (node.path, node.size, ns.read(ino)) == (path, size, data)
        assert ns.nodes[ino & ~CODE_MASK].kind == BIN


def test_loaded_bins_stay_within_the_budget(tmp_path):
    write_dataset(tmp_path, n_bins=12, n_triggers=100, seed=3, layout="flat", mtime=OLD)
    probe = Namespace(DataRoot(str(tmp_path)))
    one = probe.model(bins_of(probe)[0]).footprint
    ns = Namespace(DataRoot(str(tmp_path)), Options(bin_cache=3 * one))
    for b in bins_of(ns):
        ns.children(b.ino)
        assert ns._models_size <= 3 * one + one  # one bin may be larger than the first
    assert sum(1 for b in bins_of(ns) if b.model is not None) <= 4


def test_a_bin_the_kernel_forgets_leaves_memory(tmp_path):
    write_dataset(tmp_path, n_bins=2, n_triggers=40, seed=4, layout="flat", mtime=OLD)
    ns = Namespace(DataRoot(str(tmp_path)))
    b = bins_of(ns)[0]
    ns.looked_up(b)
    files = list(ns.children(b.ino).values())
    for f in files:
        ns.looked_up(f)
    assert b.model is not None and b.lookups == 1 + len(files)
    ns.forget(files[0].ino, 1)
    assert b.model is not None
    ns.forget(b.ino, b.lookups)
    assert b.model is None and b.lookups == 0
    assert ns.node(files[0].ino).size == files[0].size  # and answers again the same


def test_refresh_re_checks_only_what_can_change(tmp_path, monkeypatch):
    ids = write_dataset(tmp_path, n_bins=6, n_triggers=30, seed=5, layout="flat", mtime=OLD)
    ns = Namespace(DataRoot(str(tmp_path)))
    for b in bins_of(ns):
        ns.children(b.ino)
    checked = []
    real = ns.source.stat_bin
    monkeypatch.setattr(ns.source, "stat_bin", lambda files: checked.append(files.bin_id) or real(files))
    assert ns.refresh() == [] and checked == []  # settled bins in an unchanged folder: nothing
    live = "D20240601T230000_IFCB124"
    write_bin(tmp_path, live, 10, seed=9)  # written now: live
    os.utime(tmp_path, ns=(1, 10**18))
    changes = ns.refresh()
    assert ("inode", ROOT_INO) in changes and live in ns.children(ROOT_INO)
    ns.children(ns.lookup(ROOT_INO, live).ino)
    checked.clear()
    ns.refresh()
    assert [str(i) for i in checked] == [live] and len(ids) == 6


def test_a_settled_bin_that_changes_is_seen_when_its_folder_changes(tmp_path):
    stem = "D20240601T000000_IFCB124"
    write_bin(tmp_path, stem, 30, seed=6, mtime=OLD)
    ns = Namespace(DataRoot(str(tmp_path)))
    b = ns.lookup(ROOT_INO, stem)
    before = ns.children(b.ino)["adc.csv"].size
    with open(tmp_path / f"{stem}.adc", "ab") as f:
        f.write(b"31,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1.0,0.5\n")
    os.utime(tmp_path / f"{stem}.adc", ns=(OLD * 10**9, OLD * 10**9 + 1))
    assert ns.refresh() == []  # settled and its folder unchanged: not looked at
    os.utime(tmp_path, ns=(1, 10**18))
    changes = ns.refresh()
    assert ("inode", b.ino) in changes
    assert ns.children(b.ino)["adc.csv"].size > before


def test_an_open_text_file_keeps_its_version_when_its_bin_is_evicted(tmp_path):
    write_dataset(tmp_path, n_bins=3, n_triggers=40, seed=7, layout="flat", mtime=OLD)
    ns = Namespace(DataRoot(str(tmp_path)), Options(bin_cache=1, cache_size=0))
    first, *rest = bins_of(ns)
    opened = ns.children(first.ino)["adc.csv"]  # what an open file handle holds
    for b in rest:
        ns.children(b.ino)
    assert first.model is None
    assert len(ns.content(opened)) == opened.size


def test_status_and_statfs_counts_cost_nothing_per_node(tmp_path):
    write_dataset(tmp_path, n_bins=5, n_triggers=20, seed=8, layout="flat", mtime=OLD)
    ns = Namespace(DataRoot(str(tmp_path)))
    assert ns.status() == "0 bins listed, 0 loaded"
    for b in bins_of(ns):
        ns.children(b.ino)
        ns.children(b.ino)
    assert ns.status() == "5 bins listed, 5 loaded"


def test_a_folder_the_kernel_forgets_lets_go_of_its_bins(tmp_path):
    write_dataset(tmp_path, n_bins=4, n_triggers=20, seed=9, mtime=OLD)  # 2024/D20240601/...
    ns = Namespace(DataRoot(str(tmp_path)))
    year = ns.lookup(ROOT_INO, "2024")
    day = ns.lookup(year.ino, "D20240601")
    ns.looked_up(year)
    ns.looked_up(day)
    bins = list(ns.children(day.ino).values())
    for b in bins:
        ns.looked_up(b)
        ns.children(b.ino)
    inos = {b.name: b.ino for b in bins}
    for b in bins[1:]:
        ns.forget(b.ino, 1)
    ns.forget(day.ino, 1)  # one bin is still held: the folder keeps its listing
    assert all(ino in ns.nodes for ino in inos.values()) and bins[1].model is None
    ns.forget(bins[0].ino, 1)  # the last one goes: everything the folder listed goes
    assert not any(ino in ns.nodes for ino in inos.values()) and day.children is None
    assert len(ns.nodes) == 3 and ns._models_size == 0
    again = {n.name: n.ino for n in ns.children(day.ino).values()}  # listed again: the same
    assert again == inos


def test_without_folder_stamps_a_poll_re_lists_only_where_the_archive_grows(tmp_path, monkeypatch):
    """An object store has no folder mtimes: a poll re-lists the root, the last folder of each
    level (the newest year, day) and folders that changed lately; a sweep now and then, the rest."""
    import time

    from ifcbfs.core.local import LocalSource
    from ifcbfs.fs import namespace as ns_mod

    class Unstamped(LocalSource):
        listed: list = []

        def stamp(self, folder):
            return 0

        def listdir(self, folder):
            self.listed.append(folder)
            return super().listdir(folder)

    write_dataset(tmp_path, n_bins=150, n_triggers=5, seed=10, mtime=OLD)  # 2024/D20240601, D20240602, D20240603
    source = Unstamped(str(tmp_path))
    ns = Namespace(DataRoot(source))
    year = ns.lookup(ROOT_INO, "2024")
    days = list(ns.children(year.ino).values())
    assert [d.name for d in days] == ["D20240601", "D20240602", "D20240603"]
    for day in days:
        ns.children(day.ino)
    long_ago = time.monotonic() - 2 * ns_mod.LIVE_SECONDS
    for node in [ns.root, year, *days]:
        node.changed = long_ago
    source.listed.clear()
    ns.refresh()
    assert set(source.listed) >= {"", "2024", "2024/D20240603"}
    assert not any(f in source.listed for f in ("2024/D20240601", "2024/D20240602"))
    source.listed.clear()
    ns._swept -= ns_mod.SWEEP_SECONDS
    ns.refresh()
    assert {"2024/D20240601", "2024/D20240602", "2024/D20240603"} <= set(source.listed)


def test_a_bin_being_loaded_is_waited_for_not_loaded_twice(tmp_path, monkeypatch):
    import threading

    import ifcbfs.fs.namespace as namespace

    write_dataset(tmp_path, n_bins=3, n_triggers=40, seed=6, layout="flat", mtime=OLD)
    ns = Namespace(DataRoot(str(tmp_path)))
    first, second, third = bins_of(ns)
    assert ns.bins_next(first.parent, 2) == [first, second]  # a folder of bins: its first ones
    assert ns.bins_next(first, 1) == [second] and ns.bins_next(second, 5) == [third]
    load, started, go = namespace.Bin.load, threading.Event(), threading.Event()

    def held_load(*args, **kwargs):
        started.set()
        go.wait(30)  # another thread asks for the bin meanwhile
        return load(*args, **kwargs)

    monkeypatch.setattr(namespace.Bin, "load", staticmethod(held_load))
    got = []
    ahead = threading.Thread(target=lambda: got.append(ns.model(second)))
    ahead.start()
    assert started.wait(30)
    assert ns.bins_next(first, 1) == []  # being loaded: not asked for again
    asker = threading.Thread(target=lambda: got.append(ns.model(second)))
    asker.start()
    go.set()
    ahead.join(30)
    asker.join(30)
    assert not ahead.is_alive() and not asker.is_alive()
    assert ns.parses == 1 and got == [second.model] * 2  # the asker waited for the load, or found it done
    assert ns.bins_next(first, 2) == [third]
