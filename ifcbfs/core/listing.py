"""A bin folder as columns: its listing without a record per file, and a model as the index keeps it.

Listing a bin folder needs each file's name, size and code, nothing more. `Listing` holds those
as columns, so a listing is built from a parse, or read back from the index, without making a
record per file. `pack` turns a model's records into plain values that `marshal` takes (records
become columns, an entry's image its position among the images); `unpack` reads back the
listing at once and leaves the records packed until `expand` is asked for them, on the first
read or lookup.
"""
from __future__ import annotations

import marshal
from array import array
from itertools import accumulate, chain, repeat
from operator import itemgetter
from typing import NamedTuple, Sequence

from .adc import Roi

MARSHAL_VERSION = 4


class Listing(NamedTuple):
    """A bin folder's entries in name order, as columns of a few objects (little memory, and
    none scattered among the objects the next parse frees)."""

    names: bytes  # UTF-8, each followed by NUL (a name with '/' is in a sub-folder)
    sizes: array  # of 'q'
    codes: array  # of 'q'
    flat: bool  # no entry is in a sub-folder

    def name_list(self) -> list[bytes]:
        return self.names.split(b"\0")[:-1]


def _listing(names: list[str], sizes: Sequence[int], codes: Sequence[int]) -> Listing:
    return Listing(("\0".join(names) + "\0").encode() if names else b"", array("q", sizes), array("q", codes),
                   "/" not in "".join(names))


def fields(items: Sequence[tuple], *indexes: int) -> list[list]:
    """The fields at `indexes` of every item, as columns."""
    return [list(map(itemgetter(i), items)) for i in indexes]


def listing_of(entries: Sequence[tuple]) -> Listing:
    """The listing of records (core.records.Entry: name, size, image, code, ...) in name order."""
    return _listing(*fields(entries, 0, 1, 3))


def records_of(images: list, entries: list) -> tuple:
    """A model's records as columns: (target, width, height of each image), the parts of each
    image (None: one each), the parts' fields, and the entries' fields but name, size and code
    (those are the listing's), an entry's image as its position among the images (-1: none)."""
    parts = list(map(itemgetter(3), images))
    counts = list(map(len, parts))
    rois = list(chain.from_iterable(parts))
    at = dict(zip(map(id, images), range(len(images))))
    columns = fields(entries, *range(len(entries[0]) if entries else 0))
    rest = [list(map(at.get, map(id, columns[2]), repeat(-1))), *columns[4:]] if columns else []
    return (fields(images, 0, 1, 2), None if counts.count(1) == len(counts) else counts,
            fields(rois, *range(len(Roi._fields))), rest)


def of_columns(names: list[str], sizes: list[int], codes: list[int], extras: list[tuple],
               entry_type: type) -> tuple[Listing, list]:
    """The listing of image entries given as columns (the i-th is image i's) and a few entries
    given as records, with the `rest` columns of their records (see records_of), in name order."""
    n = len(names)
    names = names + [e[0] for e in extras]
    order = sorted(range(len(names)), key=names.__getitem__)

    def ordered(column: list) -> list:
        return list(map(column.__getitem__, order))

    rest = [[i if i < n else -1 for i in order]]
    for k, name in enumerate(entry_type._fields[4:], 4):  # image entries have the defaults
        rest.append(ordered([entry_type._field_defaults[name]] * n + [e[k] for e in extras]))
    return _listing(ordered(names), ordered(sizes + [e[1] for e in extras]), ordered(codes + [e[3] for e in extras])), rest


def pack(header: dict, pairs, n_triggers: int, skipped: int, hdr_json: bytes, listing: Listing,
         records: "tuple | bytes") -> tuple:
    """A model as plain values for `marshal`: the small ones and the listing first, then the
    records (see records_of) packed."""
    return (header, list(map(tuple, pairs)), n_triggers, skipped, hdr_json, listing.names,
            listing.sizes.tobytes(), listing.codes.tobytes(), listing.flat, packed(records))


def packed(records: "tuple | bytes") -> bytes:
    """Records (see records_of) as bytes: one object, however many records."""
    return records if isinstance(records, bytes) else marshal.dumps(records, MARSHAL_VERSION)


def unpack(state: tuple) -> tuple:
    """(header, pairs, n_triggers, skipped, hdr_json, listing, packed records) of a packed model."""
    header, pairs, n_triggers, skipped, hdr_json, names, sizes, codes, flat, records = state
    listing = Listing(names, array("q", sizes), array("q", codes), flat)
    return header, list(map(tuple, pairs)), n_triggers, skipped, hdr_json, listing, records


def expand(records: "tuple | bytes", listing: Listing, image_type: type, entry_type: type) -> tuple[list, list]:
    """The images and entries (in name order) of records (see records_of), packed or not."""
    if isinstance(records, bytes):
        records = marshal.loads(records)
    (targets, widths, heights), counts, roi_columns, rest = records
    rois = list(map(tuple.__new__, repeat(Roi), zip(*roi_columns)))
    if counts is None:
        parts = zip(rois)
    else:
        parts = [tuple(rois[end - n:end]) for n, end in zip(counts, accumulate(counts))]
    images = list(map(tuple.__new__, repeat(image_type), zip(targets, widths, heights, parts)))
    if not listing.names:
        return images, []
    names = listing.names.decode().split("\0")[:-1]
    image_at, *others = rest
    columns = [names, list(listing.sizes), list(map([*images, None].__getitem__, image_at)), list(listing.codes), *others]
    return images, list(map(tuple.__new__, repeat(entry_type), zip(*columns)))
