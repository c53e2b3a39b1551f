"""Filters (`-o since=,until=,instrument=` and ifcbfs-export's --since, --until, --instrument):
one meaning, applied where bins are found, so the mount and the export show the same bins."""
from datetime import datetime, timezone

import pytest

from ifcbfs import cli, export
from ifcbfs.core.binfilter import BinFilter, parse_date, parse_instruments
from ifcbfs.core.ids import parse_bin_id
from ifcbfs.core.source import DataRoot
from ifcbfs.fs.namespace import BIN, DIR, ROOT_INO, Namespace
from ifcbfs.synth import write_dataset
from test_export import MTIME, check_same_as_mount

UTC = timezone.utc


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """80 bins, 20 minutes apart from 2024-06-01T00:00 (over two days), D (IFCB124) and I (IFCB5)
    alternating, in day folders."""
    root = tmp_path_factory.mktemp("filters") / "data"
    ids = write_dataset(root, n_bins=80, n_triggers=8, seed=2, style="mixed", mtime=MTIME)
    return root, ids


def test_the_meaning_of_each_filter():
    d = parse_bin_id("D20240601T120000_IFCB124")
    i = parse_bin_id("IFCB5_2024_153_120000")  # the same moment, day 153 = 1 June
    noon = datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert BinFilter(since=noon).matches(d)  # since is inclusive
    assert not BinFilter(until=noon).matches(d)  # until is exclusive
    assert BinFilter(since=noon, until=datetime(2024, 6, 1, 12, 0, 1, tzinfo=UTC)).matches(i)
    assert BinFilter(instruments=frozenset({124})).matches(d) and not BinFilter(instruments=frozenset({124})).matches(i)
    assert BinFilter(patterns=("IFCB5_*",)).matches(i) and not BinFilter(patterns=("IFCB5_*",)).matches(d)
    assert BinFilter().matches(d) and not BinFilter() and BinFilter(since=noon)


def test_dates_and_instruments_parse_as_utc_iso_8601():
    noon = datetime(2024, 6, 1, 12, tzinfo=UTC)
    for text in ("2024-06-01T12:00", "2024-06-01T12:00:00Z", "2024-06-01T14:00:00+02:00", "2024-06-01 12:00z"):
        assert parse_date(text) == noon, text
    assert parse_date("2024-06-01") == datetime(2024, 6, 1, tzinfo=UTC)
    assert parse_instruments("124") == {124} and parse_instruments("5:124:5") == {5, 124}
    for bad in ("yesterday", "2024-02-30", "", "2024-06-01T25:00"):
        with pytest.raises(ValueError, match="is not a date"):
            parse_date(bad)
    for bad in ("", "IFCB5", "5,124", "5:", "-1", "١٢"):
        with pytest.raises(ValueError, match="instrument numbers"):
            parse_instruments(bad)
    with pytest.raises(ValueError, match="is not before"):
        BinFilter(since=noon, until=noon)


def walk(ns, ino=ROOT_INO):
    for node in ns.listing(ino):
        yield node
        if node.kind == DIR:
            yield from walk(ns, node.ino)


def shown(root, **window) -> tuple[list[str], list]:
    ns = Namespace(DataRoot(str(root), bin_filter=BinFilter(**window)))
    nodes = list(walk(ns))
    return sorted(n.name for n in nodes if n.kind == BIN), [n for n in nodes if n.kind == DIR]


def test_only_matching_bins_and_the_folders_that_lead_to_them(days):
    root, ids = days
    window = dict(since=parse_date("2024-06-01T12:00"), until=parse_date("2024-06-02"),
                  instruments=frozenset({124}))
    bins, folders = shown(root, **window)
    want = sorted(b for b in ids if BinFilter(**window).matches(parse_bin_id(b)))
    assert bins == want and len(want) == 18
    assert bins[0] == "D20240601T120000_IFCB124" and bins[-1] == "D20240601T232000_IFCB124"
    assert [f.path for f in folders] == ["2024", "2024/D20240601"]  # no IFCB5 day, no 2 June
    bins, folders = shown(root, since=parse_date("2024-06-02T00:00"), instruments=frozenset({5}))
    assert bins and all(b.startswith("IFCB5_2024_154_") for b in bins)
    assert [f.path for f in folders] == ["IFCB5_2024_154"]
    assert shown(root, since=parse_date("2025-01-01")) == ([], [])


@pytest.mark.mount
def test_a_filtered_mount_and_export_give_the_same_tree(days, tmp_path):
    root, ids = days
    check_same_as_mount(root, tmp_path, "mirror",
                        mount=("since=2024-06-01T10:00:00Z", "until=2024-06-02T02:00", "instrument=5:124"),
                        export=("--since", "2024-06-01T10:00:00Z", "--until", "2024-06-02T02:00", "--instrument", "5:124"))
    exported = sorted(p.name for p in (tmp_path / "export").rglob("*") if (p / "hdr.json").is_file())
    assert exported == sorted(ids[30:78])
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["2024", "IFCB5_2024_153", "IFCB5_2024_154"]


@pytest.mark.parametrize("option, message", [
    ("since=yesterday", "since: 'yesterday' is not a date"),
    ("until=2024-02-30", "until: '2024-02-30' is not a date"),
    ("since", "since needs a value"),
    ("instrument=IFCB5", "instrument: 'IFCB5' is not a list of instrument numbers"),
    ("instrument=", "instrument: '' is not a list"),
    ("since=2024-06-02,until=2024-06-01", "is not before until"),
])
def test_bad_filters_are_one_line_errors(option, message):
    with pytest.raises(cli.UsageError) as err:
        cli.parse_args(["/a", "/b", "-o", option])
    assert message in str(err.value) and err.value.status == 2 and "\n" not in str(err.value)


def test_the_mount_and_the_export_parse_filters_alike():
    cfg = cli.parse_args(["/a", "/b", "-o", "since=2024-06-01,until=2024-06-02T00:00:00Z,instrument=5:124"])
    args = export.make_parser().parse_args(["/a", "/b", "--since", "2024-06-01", "--until", "2024-06-02T00:00:00Z",
                                            "--instrument", "5", "--instrument", "124"])
    assert cfg.bin_filter == export.bin_filter(args) == BinFilter(
        datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC), frozenset({5, 124}))
    assert cli.parse_args(["/a", "/b"]).bin_filter == BinFilter()
