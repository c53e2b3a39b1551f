"""The dashboard zip of a bin (SPEC section 11): its members, in the IFCB dashboard's order.

Members, all stored: `metadata.json`, `{bin}_headers.json`, `{bin}.csv`, then `{bin}_NNNNN.png`
for every image in target order. Their bytes mirror what pyifcb's `ZipBin` reads back:

- `metadata.json` is `json.dumps` of `{"lid", "schema", "timestamp"}` (schema 1 for I-style
  bins, 2 for D-style; the timestamp as in `hdr.json`, e.g. `2013-05-26T09:52:07Z`);
- `{bin}_headers.json` is `json.dumps` of the header properties (SPEC section 2);
- `{bin}.csv` holds one line per row of `adc.csv`, in file order: that row's ADC fields exactly
  as `adc.csv` gives them (whitespace and CR removed, the empty field after a trailing comma
  dropped), without `adc.csv`'s header row and without its `roi_number` column, each line
  ending in LF. pyifcb reads it with `header=None, index_col=False` and numbers the rows from 1,
  so the ADC columns keep their positions;
- PNGs are the bytes of SPEC section 6, exactly as the bin folder serves them.
"""
from __future__ import annotations

import json
from typing import Callable, Optional, Sequence, Union

from .adc import Adc
from .ids import BinId, target_id, timestamp_iso
from .png import png_size
from .storedzip import Member, StoredZip

METADATA = "metadata.json"


def metadata_json(bin_id: BinId) -> bytes:
    """`metadata.json`: the bin's id, ADC schema number and time."""
    doc = {"lid": str(bin_id), "schema": 1 if bin_id.schema == "v1" else 2,
           "timestamp": timestamp_iso(bin_id)}
    return json.dumps(doc).encode("ascii")


def headers_json(header: dict) -> bytes:
    """`{bin}_headers.json`: the header properties, as one line of ASCII JSON."""
    return json.dumps(header, allow_nan=False).encode("ascii")


def _fields(row: str) -> str:
    """An `adc.csv` row without its leading roi_number."""
    return row[row.index(",") + 1:] if "," in row else ""


def adc_csv(adc: Adc | None) -> bytes:
    """`{bin}.csv`: the ADC lines' fields, one line per `adc.csv` row, without roi numbers."""
    if adc is None:
        return b""
    return "".join(_fields(row) + "\n" for row in adc.rows[1:]).encode("ascii")


def adc_csv_size(adc: Adc | None) -> int:
    """Exact size of `adc_csv(adc)`, without building it."""
    if adc is None:
        return 0
    return sum(len(row) - row.index(",") if "," in row else 1 for row in adc.rows[1:])


AdcSource = Union[Adc, None, Callable[[], Optional[Adc]]]


def members(bin_id: BinId, header: dict, adc: AdcSource, images: Sequence[tuple[int, int, int]],
            png: Callable[[int], bytes], csv_size: int | None = None) -> list[Member]:
    """The zip's members, in order. `images` are (target, width, height) of the served images,
    in target order; `png(target)` returns that image's PNG bytes. `adc` is the parsed ADC, or a
    callable that parses it again when `{bin}.csv` is read, so that a kept zip holds no ADC
    rows; with a callable, `csv_size` is the member's size (`adc_csv_size` when it was parsed)."""
    stem = str(bin_id)
    meta, head = metadata_json(bin_id), headers_json(header)
    if callable(adc):
        if csv_size is None:
            raise TypeError("members: an ADC given as a callable needs its csv_size")
        csv = lambda: adc_csv(adc())  # noqa: E731
    else:
        csv_size, csv = adc_csv_size(adc), lambda: adc_csv(adc)
    out = [
        Member(METADATA, len(meta), lambda: meta),
        Member(f"{stem}_headers.json", len(head), lambda: head),
        Member(f"{stem}.csv", csv_size, csv),
    ]
    for target, width, height in images:
        out.append(Member(f"{target_id(stem, target)}.png", png_size(width, height),
                          lambda t=target: png(t)))
    return out


def bin_zip(bin_id: BinId, header: dict, adc: AdcSource, images: Sequence[tuple[int, int, int]],
            png: Callable[[int], bytes], mtime: float, csv_size: int | None = None) -> StoredZip:
    """The dashboard zip of a bin: `.size` without pixels, `.read(offset, length, crcs)` by range.

    `mtime` is the bin's mtime in seconds (BinFiles.mtime_ns // 10**9): every member's time.
    `adc` and `csv_size` as for `members`."""
    return StoredZip(members(bin_id, header, adc, images, png, csv_size), mtime)
