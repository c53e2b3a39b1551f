"""ADC (`.adc`) bytes to image records and the canonical `adc.csv`, through one parse path."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter, mul
from typing import NamedTuple, Sequence

V1_COLUMNS = (
    "trigger", "processingEndTime", "fluorescenceLow", "fluorescenceHigh", "scatteringLow",
    "scatteringHigh", "comparatorPulse", "triggerOpenTime", "frameGrabTime", "roiX", "roiY",
    "roiWidth", "roiHeight", "startByte", "valveStatus",
)
V2_COLUMNS = (
    "trigger", "adcTime", "pmtA", "pmtB", "pmtC", "pmtD", "peakA", "peakB", "peakC", "peakD",
    "timeOfFlight", "grabTimeStart", "grabTimeEnd", "roiX", "roiY", "roiWidth", "roiHeight",
    "startByte", "comparatorOut", "startPoint", "signalLength", "status", "runTime", "inhibitTime",
)
COLUMNS = {"v1": V1_COLUMNS, "v2": V2_COLUMNS}
# index of roiX; roiY, roiWidth, roiHeight and startByte follow it
_ROI_FIELDS = {"v1": 9, "v2": 13}
# Larger images are treated as no image: no real camera comes near, and it bounds memory.
MAX_IMAGE_PIXELS = 1 << 24
MAX_SIDE = 1 << 15


class Roi(NamedTuple):
    """One image line of an ADC file: where its pixels are in the `.roi` file.

    (A NamedTuple: a bin has thousands, and they are built while a folder is listed.)"""

    target: int  # 1-based ADC line number
    trigger: int
    x: int
    y: int
    width: int
    height: int
    start: int

    @property
    def end(self) -> int:
        """Offset just past the image's last byte in the `.roi` file."""
        return self.start + self.width * self.height


@dataclass(frozen=True, slots=True)
class Adc:
    """A parsed ADC file: its image records and its canonical CSV rows."""

    schema: str
    n_triggers: int  # lines that parse, i.e. rows of adc.csv
    roi_columns: tuple[list[int], ...]  # the image lines as Roi's seven fields, each a column
    numbers: Sequence[int]  # the line number of each adc.csv row, in order
    lines: Sequence[str]  # each row's ADC line as kept (after its number)
    csv_size: int  # len(csv), known without building it
    skipped: int  # non-blank lines that do not parse
    unfinished: bool = False  # a last line without its newline was held back (see parse_lines)
    table: tuple[list[str], int] | None = field(default=None, compare=False, repr=False)
    # (every field of every line in order, fields per line) when all lines have the same fields

    @property
    def rois(self) -> tuple[Roi, ...]:
        """The image lines, in file order."""
        return tuple(map(tuple.__new__, repeat(Roi), zip(*self.roi_columns)))

    @property
    def n_rois(self) -> int:
        return len(self.roi_columns[0])

    @property
    def rows(self) -> tuple[str, ...]:
        """The adc.csv rows without their newline, header row first."""
        return (_header(self.schema), *map("{},{}".format, self.numbers, self.lines))

    @property
    def csv(self) -> bytes:
        """The canonical `adc.csv` (SPEC section 7): header row, then one row per ADC line."""
        return ("\n".join(self.rows) + "\n").encode("ascii")

    def columns(self, *indexes: int) -> list[list[str]] | None:
        """The fields at `indexes` (0-based, as in the ADC file) of every ADC line with an adc.csv
        row, as text columns in file order; None when a line is shorter. For metrics: one parser."""
        if self.table is not None:
            fields, width = self.table
            return [fields[i::width] for i in indexes] if max(indexes) < width else None
        top = max(indexes) + 1  # a row starts with its line number, so field i is part i + 1
        get = itemgetter(*(i + 1 for i in indexes))
        try:
            picked = [get(row.split(",", top + 1)) for row in self.rows[1:]]
        except IndexError:  # a line too short
            return None
        if len(indexes) == 1:
            return [picked]
        return [list(column) for column in zip(*picked)] or [[] for _ in indexes]


def _header(schema: str) -> str:
    return "roi_number," + ",".join(COLUMNS[schema])


_BLANKS = " \t\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.strip() removes, but the newline (ASCII)


def parse_adc(data: bytes, schema: str, final: bool = False) -> Adc:
    """Parse ADC bytes (LF or CRLF) of a schema ('v1' or 'v2'). Never fails: bad lines are skipped.
    The usual file (every line whole and alike) takes a fast path with the same result."""
    return _parse_plain(data, schema) or parse_lines(data, schema, final)


def parse_lines(data: bytes, schema: str, final: bool = False) -> Adc:
    """Parse ADC bytes (LF or CRLF) of a schema ('v1' or 'v2'). Never fails: bad lines are skipped.

    A line parses when it is ASCII and its first field (the trigger) is an integer; it has an
    image when trigger, x, y, width, height and start byte are integers, width and height are
    positive and the image is not absurdly large. A last line without its newline (an
    instrument may be writing it) gets no adc.csv row until the newline comes, since its last
    field may still grow (`unfinished` says so), unless the file is `final` (its bin has
    settled: nothing more will be written), when it gets its row like any other line. Either
    way it has an image only once it holds the field after the start byte: before that, the
    image's fields may be cut short.
    """
    ix = _ROI_FIELDS[schema]
    numbers: list[int] = []
    kept: list[str] = []
    size = len(_header(schema)) + 1
    rois: list[Roi] = []
    skipped = 0
    if data.isascii():
        text = data.decode("ascii").replace("\r\n", "\n")
        lines = text.split("\n")
        plain = not any(c in text for c in _BLANKS)  # then no line needs stripping (the usual case)
    else:
        lines = [raw.decode("ascii") if raw.isascii() else None for raw in data.split(b"\n")]
        plain = False
    last = len(lines)  # the piece after the final newline, or an unterminated line
    unfinished = False
    for number, line in enumerate(lines, 1):
        if line is None:
            skipped += 1
            continue
        if plain:
            if not line:
                continue
            if line[-1] == ",":
                line = line[:-1]
            fields = line.split(",", ix + 5)  # the rest of the line is not looked at
        else:
            line = line.strip()
            if not line:
                continue
            fields = [f.strip() for f in line.split(",")]
            if fields[-1] == "" and len(fields) > 1:
                fields.pop()
            line = ",".join(fields)
        n = len(fields)
        cut = number == last and n < ix + 6  # before the field after the start byte: may be cut short
        if cut and not final:
            skipped += 1  # still being written
            unfinished = True
            continue
        first = fields[0]
        try:
            if "_" in first:  # int() takes '1_000'; an integer in a CSV file is digits only
                raise ValueError(first)
            trigger = int(first)  # ValueError too past 4300 digits (sys.get_int_max_str_digits)
        except ValueError:
            skipped += 1
            continue
        if number != last or final:  # an unterminated line may still grow: no row until its newline
            numbers.append(number)
            kept.append(line)
            size += len(str(number)) + len(line) + 2
        else:
            unfinished = True
        if not cut and n > ix + 4 and fields[ix + 2] != "0" and fields[ix + 3] != "0":
            try:
                x, y, w, h, start = (int(fields[ix]), int(fields[ix + 1]), int(fields[ix + 2]),
                                     int(fields[ix + 3]), int(fields[ix + 4]))
            except ValueError:
                continue
            if "_" in line and any("_" in f for f in fields[ix:ix + 5]):
                continue  # not integers in a CSV file, although int() takes them
            if 0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE and start >= 0 and w * h <= MAX_IMAGE_PIXELS:
                rois.append(Roi(number, trigger, x, y, w, h, start))
    columns = tuple(map(list, zip(*rois))) or _no_rois()
    return Adc(schema, len(numbers), columns, tuple(numbers), tuple(kept), size, skipped, unfinished)


def _parse_plain(data: bytes, schema: str) -> Adc | None:
    """parse_lines' result for the usual file, by whole columns; None for any other file.

    The usual file is ASCII, ends with a newline, has no blank line, no whitespace and no '_',
    every line has as many commas (each may end with one more, all or none), every trigger and
    every image line's five fields are integers. Then no line is skipped, and each line's fields
    are the same whether the file is split by lines or all at once.
    """
    if not data.isascii() or not data.endswith(b"\n") or b"_" in data:
        return None
    text = data.decode("ascii")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if any(c in text for c in _BLANKS) or "\n\n" in text or text[0] == "\n":
        return None
    if ",\n" in text:  # one trailing comma per line is dropped, if every line has one
        if text.count(",\n") != text.count("\n"):
            return None
        text = text.replace(",\n", "\n")
    body = text[:-1]
    lines = body.split("\n")
    n = len(lines)
    commas = lines[0].count(",")
    if list(map(str.count, lines, repeat(","))).count(commas) != n:
        return None
    width = commas + 1
    fields = body.replace("\n", ",").split(",")
    try:
        triggers = list(map(int, fields[0::width]))
    except ValueError:  # (and past int()'s digit limit)
        return None
    rois = _plain_rois(fields, width, _ROI_FIELDS[schema], triggers)
    if rois is None:
        return None
    size = len(_header(schema)) + 1 + len(body) + 1 + n + _digits(n)
    return Adc(schema, n, rois, tuple(range(1, n + 1)), tuple(lines), size, 0, table=(fields, width))


def _plain_rois(fields: list[str], width: int, ix: int, triggers: list[int]) -> tuple[list[int], ...] | None:
    """The image lines of a usual file as columns (see _parse_plain), or None when a line needs
    parse_lines."""
    if width < ix + 5:
        return _no_rois()
    cols = [fields[ix + j::width] for j in range(5)]
    targets = range(1, len(triggers) + 1)
    if "0" in cols[2] or "0" in cols[3]:  # lines whose width or height is "0" have no image
        keep = [i for i, w, h in zip(range(len(triggers)), cols[2], cols[3]) if w != "0" and h != "0"]
        if not keep:
            return _no_rois()
        cols = [[col[i] for i in keep] for col in cols]
        targets = [i + 1 for i in keep]
        triggers = [triggers[i] for i in keep]
    try:
        x, y, w, h, start = (list(map(int, col)) for col in cols)
    except ValueError:
        return None
    columns = (list(targets), triggers, x, y, w, h, start)
    if (min(w) > 0 and max(w) <= MAX_SIDE and min(h) > 0 and max(h) <= MAX_SIDE and min(start) >= 0
            and max(map(mul, w, h)) <= MAX_IMAGE_PIXELS):
        return columns
    kept = [r for r in zip(*columns) if 0 < r[4] <= MAX_SIDE and 0 < r[5] <= MAX_SIDE and r[6] >= 0
            and r[4] * r[5] <= MAX_IMAGE_PIXELS]
    return tuple(map(list, zip(*kept))) or _no_rois()


def _no_rois() -> tuple[list[int], ...]:
    return tuple([] for _ in Roi._fields)


def _digits(n: int) -> int:
    """The digits of the numbers 1..n written out, all together."""
    total, low, d = 0, 1, 1
    while low <= n:
        total += (min(n, low * 10 - 1) - low + 1) * d
        low, d = low * 10, d + 1
    return total
