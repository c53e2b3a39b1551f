"""ADC (`.adc`) bytes to image records and the canonical `adc.csv`, through one parse path."""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Roi:
    """One image line of an ADC file: where its pixels are in the `.roi` file."""

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
    csv: bytes
    skipped: int  # non-blank lines that do not parse


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_adc(data: bytes, schema: str) -> Adc:
    """Parse ADC bytes (LF or CRLF) of a schema ('v1' or 'v2'). Never fails: bad lines are skipped.

    A line parses when it is ASCII and its first field (the trigger) is an integer; it has an
    image when trigger, x, y, width, height and start byte are integers, width and height are
    positive and the image is not absurdly large. A last line without its newline counts only
    when it already holds the field after the start byte (an instrument may be writing it).
    """
    columns = COLUMNS[schema]
    ix = _ROI_FIELDS[schema]
    rows = [("roi_number," + ",".join(columns) + "\n").encode()]
    rois: list[Roi] = []
    skipped = 0
    lines = data.split(b"\n")
    last = len(lines) - 1  # lines[last] is what follows the final newline
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            skipped += 1
            continue
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) > 1 and fields[-1] == "" and line.endswith(","):
            fields.pop()
        trigger = _int(fields[0])
        if trigger is None or (number - 1 == last and len(fields) < ix + 6):
            skipped += 1
            continue
        rows.append(f"{number},{','.join(fields)}\n".encode())
        if len(fields) > ix + 4:
            roi = _roi(number, trigger, fields[ix:ix + 5])
            if roi is not None:
                rois.append(roi)
    return Adc(schema, len(rows) - 1, tuple(rois), b"".join(rows), skipped)


def _roi(number: int, trigger: int, fields: list[str]) -> Roi | None:
    x, y, w, h, start = (_int(f) for f in fields)
    if None in (x, y, w, h, start) or w <= 0 or h <= 0 or start < 0:
        return None
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_IMAGE_PIXELS:
        return None
    return Roi(number, trigger, x, y, w, h, start)
