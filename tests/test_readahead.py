"""Read-ahead for remote sources: exact reads until a reader walks a file in order, then
bounded windows, never bytes of another version of the file."""
from ifcbfs.core.readahead import ReadAhead
from ifcbfs.core.source import SourceFile

DATA = bytes(range(256)) * 64  # 16 KiB


class Fetches:
    """A file's bytes by ranged fetch, remembering every (start, length) asked for."""

    def __init__(self, data: bytes = DATA):
        self.data, self.asked = data, []

    def __call__(self, start: int, length: int) -> bytes:
        self.asked.append((start, length))
        return self.data[start:start + length]


def test_single_reads_and_pairs_are_exact_and_a_walk_in_order_reads_ahead():
    f, fetch, ahead = SourceFile("k", len(DATA), 0, '"a"'), Fetches(), ReadAhead(window=4096, after=2)
    assert ahead.read(f, 1000, 100, fetch) == DATA[1000:1100]
    assert ahead.read(f, 1100, 50, fetch) == DATA[1100:1150]  # the second part of a pair
    assert fetch.asked == [(1000, 100), (1100, 50)]
    assert ahead.read(f, 1150, 10, fetch) == DATA[1150:1160]  # the third in a row: a window
    assert fetch.asked[-1] == (1150, 4096) and ahead.holds(f, 1160, 200)
    fetch.asked.clear()
    start = 1160
    while start + 100 <= 1150 + 4096:
        assert ahead.read(f, start, 100, fetch) == DATA[start:start + 100]
        start += 100
    assert fetch.asked == [] and ahead.hits == 40
    assert ahead.read(f, 500, 10, fetch) == DATA[500:510] and fetch.asked == [(500, 10)]  # backwards: exact


def test_windows_stop_at_the_end_of_the_file_and_stay_bounded():
    ahead, fetch = ReadAhead(window=4096, files=2, after=1), Fetches()
    files = [SourceFile(f"k{i}", len(DATA), 0, '"a"') for i in range(3)]
    for f in files:
        for start in (len(DATA) - 300, len(DATA) - 200):
            assert ahead.read(f, start, 100, fetch) == DATA[start:start + 100]
    assert fetch.asked[-1] == (len(DATA) - 200, 200)
    assert len(ahead._held) == 2 and not ahead.holds(files[0], len(DATA) - 100, 100)


def test_another_version_of_a_file_never_gets_the_old_one_s_bytes():
    ahead, old, new = ReadAhead(window=4096, after=1), Fetches(), Fetches(DATA[::-1])
    v1, v2 = SourceFile("k", len(DATA), 0, '"a"'), SourceFile("k", len(DATA), 1, '"b"')
    ahead.read(v1, 0, 10, old)
    ahead.read(v1, 10, 10, old)
    assert ahead.holds(v1, 20, 10) and not ahead.holds(v2, 20, 10)
    assert ahead.read(v2, 20, 10, new) == DATA[::-1][20:30] and new.asked == [(20, 10)]
