"""ADC (`.adc`) bytes to image records and the canonical `adc.csv`, through one parse path."""
from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

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
    rois: tuple[Roi, ...]
    rows: tuple[str, ...]  # adc.csv rows without their newline, header row first
    csv_size: int  # len(csv), known without building it
    skipped: int  # non-blank lines that do not parse
    unfinished: bool = False  # a last line without its newline was held back (see parse_adc)

    @property
    def csv(self) -> bytes:
        """The canonical `adc.csv` (SPEC section 7): header row, then one row per ADC line."""
        return ("\n".join(self.rows) + "\n").encode("ascii")

    def columns(self, *indexes: int) -> list[list[str]] | None:
        """The fields at `indexes` (0-based, as in the ADC file) of every ADC line with an adc.csv
        row, as text columns in file order; None when a line is shorter. For metrics: one parser."""
        top = max(indexes) + 1  # a row starts with its line number, so field i is part i + 1
        get = itemgetter(*(i + 1 for i in indexes))
        try:
            picked = [get(row.split(",", top + 1)) for row in self.rows[1:]]
        except IndexError:  # a line too short
            return None
        if len(indexes) == 1:
            return [picked]
        return [list(column) for column in zip(*picked)] or [[] for _ in indexes]


_BLANKS = " \t\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.strip() removes, but the newline (ASCII)


def parse_adc(data: bytes, schema: str, final: bool = False) -> Adc:
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
    header = "roi_number," + ",".join(COLUMNS[schema])
    rows = [header]
    size = len(header) + 1
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
            row = f"{number},{line}"
            rows.append(row)
            size += len(row) + 1
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
    return Adc(schema, len(rows) - 1, tuple(rois), tuple(rows), size, skipped, unfinished)
