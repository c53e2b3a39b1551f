"""One bin: which files it serves, their exact sizes, and their bytes on demand.

`Bin.load` reads the header and the ADC file and looks at the size of the `.roi`; it reads no
pixel. It decides, in one place, which images the bin serves (`core.records.plan_images`), and
listing, sizes and reads all use that decision. The stitch mode (`STITCH_MODES`) chooses between the
stitched images (on), every ROI as cut (off), and the stitched images with a `stitching/` folder
that shows each one's raw composite and gap (qc). Opt-in views add `mosaic/` pages with their
`coordinates.csv` (SPEC section 10) and the dashboard zip `{bin}.zip` (SPEC section 11), whose
sizes also need no pixel; the zip is produced by byte range (`read_range`).
Product files found beside the bin add their records (`core.beside`): features and multiblob
CSVs, class_scores.csv, classes.csv and blobs/.
"""
from __future__ import annotations

import json
import zlib
import threading
from bisect import bisect_left
from itertools import repeat
from operator import add, itemgetter, mul, or_

from . import adc as adc_mod
from . import beside
from . import listing as listing_mod
from .binzip import adc_csv_size, bin_zip
from .damage import problems
from .errors import ImageMissing
from .hdr import parse_hdr
from .ids import timestamp_iso
from .metrics import bin_metrics
from .mosaic import COORDINATES, Mosaic, coordinates_csv, layout, page_count, page_name, page_placements, render_page
from .png import encode_png, png_size
from .records import (ADC_CSV, CODE_ADC_CSV, CODE_CLASS_SCORES, CODE_CLASSES, CODE_COORDINATES, CODE_HDR_JSON,
                      CODE_MASK, CODE_RAW_HDR, CODE_ZIP, HDR_JSON, KIND_BLOB, KIND_FEATURES, KIND_FOLDER, KIND_GAP,
                      KIND_IMAGE, KIND_MULTIBLOB, KIND_PAGE, KIND_RAW, KIND_SHIFT, MOSAIC_FOLDER, QC_FOLDER,
                      STITCH_MODES, Entry, Image, Plan, image_entries, plan_images)
from .roi import read_pixels
from .source import BinFiles, SourceFile
from .stitch import composite
from .storedzip import CrcTable, StoredZip

_COPIES = {beside.FEATURES: KIND_FEATURES, beside.MULTIBLOB: KIND_MULTIBLOB}
_COPY_KINDS = {code: kind for kind, code in _COPIES.items()}
_RECORDS = frozenset({"images", "entries", "by_name", "by_code"})  # made on first use for a model from the index
_EXPANDING = threading.Lock()
BYTES_PER_ENTRY = 680  # what one entry of a loaded bin costs in memory (tracemalloc, 2000 images)
BYTES_PER_ZIP_MEMBER = 640  # what a zip that has been read keeps per member (tracemalloc, 1288 images)


def _read_source(files: BinFiles, f: SourceFile | None) -> bytes:
    """The first `size` bytes of a source file: as it was seen, never what was appended since."""
    return files.source.read(f) if f is not None else b""


class Bin:
    """The files one bin serves, for one snapshot of its raw files."""

    product_again = False  # a product file could not be read this time: not for the index, read again

    def __init__(self, files: BinFiles, header: dict, adc: adc_mod.Adc | None, plan: Plan, qc: bool = False,
                 mosaic: Mosaic | None = None, zip: bool = False, settled: bool = False,
                 problems: tuple[str, ...] = (), blobs: bool = False):
        self._summary(files, header, adc, plan.pairs, len(plan.images), settled, problems)
        self.images = images = plan.images
        stem = str(files.bin_id)
        entries = image_entries(stem, [im for im in images if im.target < 1 << KIND_SHIFT]
                                 if images and images[-1].target >= 1 << KIND_SHIFT else images)
        if qc:
            entries += [Entry(f"{QC_FOLDER}/{stem}_{im.target:05d}_{view}.png", png_size(im.width, im.height), im,
                              kind << KIND_SHIFT | im.target, False, view)
                        for im in images if len(im.parts) == 2 and im.target < 1 << KIND_SHIFT
                        for kind, view in ((KIND_RAW, "raw"), (KIND_GAP, "gap"))]
        entries += self._extras(adc)
        if mosaic is not None:
            self.mosaic = mosaic
            entries += self._mosaic_entries(mosaic)
        if zip:
            self.zip_csv_size = adc_csv_size(adc)
            entries.append(Entry(f"{stem}.zip", self._zip_file().size, None, CODE_ZIP, True))
        if files.products:
            entries += self._products(stem, beside.adc_targets(adc), blobs)
        self._index(entries)

    @classmethod
    def _unstitched(cls, files: BinFiles, header: dict, adc: adc_mod.Adc, roi_size: int, settled: bool,
                    problems: tuple[str, ...]) -> "Bin":
        """The model of a bin whose every ROI is its own image and that shows no view and no
        product, from columns: its listing is made at once, its records (images, entries) on
        first use, as for a model from the index."""
        columns = adc.roi_columns
        ends = list(map(add, columns[6], map(mul, columns[4], columns[5])))
        if ends and max(ends) > roi_size:  # images whose bytes are missing are not served
            keep = [i for i, end in enumerate(ends) if end <= roi_size]
            columns = tuple([column[i] for i in keep] for column in columns)
        targets, widths, heights = columns[0], columns[4], columns[5]
        model = cls.__new__(cls)
        model._summary(files, header, adc, [], len(targets), settled, problems)
        listed = bisect_left(targets, 1 << KIND_SHIFT)  # (targets ascend)
        names = list(map(f"{files.bin_id}_{{:05d}}.png".format, targets[:listed]))  # (a bin id has no braces)
        sizes = list(map(png_size, widths[:listed], heights[:listed]))
        codes = list(map(or_, repeat(KIND_IMAGE << KIND_SHIFT), targets[:listed]))
        model._listing, rest = listing_mod.of_columns(names, sizes, codes, model._extras(adc), Entry)
        model._packed = listing_mod.packed(((targets, widths, heights), None, columns, rest))
        model.n_images = len(targets)
        model.footprint = model._footprint(len(model._listing.codes))
        return model

    def _summary(self, files: BinFiles, header: dict, adc: adc_mod.Adc | None, pairs: list, n_images: int,
                 settled: bool, problems: tuple[str, ...]) -> None:
        """What every model holds beside its records; the views and products shown none."""
        self.files = files
        self.header = header
        self.pairs = pairs  # [] when unstitched: what hdr.json reports as `stitched`
        self.settled = settled  # loaded as final: a last ADC line without its newline has its row
        self.problems = problems  # what is wrong with it (core.damage), judged once settled
        self.n_triggers = adc.n_triggers if adc else 0
        self.skipped_lines = adc.skipped if adc else 0
        self.n_images = n_images
        self.hdr_json = self._hdr_json(adc, n_images)
        self.mosaic, self.coordinates, self.zip_csv_size = None, b"", -1
        self.mtimes: dict[int, int] = {}  # product records: their own mtime (not the raw files')
        self.blobs: dict[int, tuple] = {}  # blob masks by target: core.blobs.BlobMember fields
        self.product_problems: tuple[str, ...] = ()
        self.product_missing: str | None = None
        self._zipped: tuple[StoredZip, CrcTable] | None = None  # the zip, once read: built once
        self._targets: dict[int, Image] | None = None  # images by target, once a view needs them
        self._last_png: tuple[int, bytes] | None = None  # the zip member a ranged read made last

    def _extras(self, adc: adc_mod.Adc | None) -> list[Entry]:
        """The entries that are not images: hdr.json, the raw header, adc.csv."""
        extras = [Entry(HDR_JSON, len(self.hdr_json), None, CODE_HDR_JSON, True)]
        if self.files.hdr is not None:  # the header file, bytes unchanged (an instrument may rewrite it)
            extras.append(Entry(f"{self.files.bin_id}.hdr", self.files.hdr.size, None, CODE_RAW_HDR, True))
        if adc is not None:
            extras.append(Entry(ADC_CSV, adc.csv_size, None, CODE_ADC_CSV, True))
        return extras

    def _mosaic_entries(self, mosaic: Mosaic) -> list[Entry]:
        """`mosaic/coordinates.csv` and the pages it lays out: sizes from the images' sizes alone.
        Like the zip, they change as a bin grows, so they are read past the page cache (`grows`)."""
        self.coordinates = coordinates_csv(layout(((im.target, im.width, im.height) for im in self.images), *mosaic))
        page = png_size(mosaic.width, mosaic.height)
        return [Entry(f"{MOSAIC_FOLDER}/{COORDINATES}", len(self.coordinates), None, CODE_COORDINATES, True)] + [
            Entry(f"{MOSAIC_FOLDER}/{page_name(n)}", page, None, KIND_PAGE << KIND_SHIFT | n, True)
            for n in range(1, page_count(self.coordinates) + 1)]

    def _products(self, stem: str, targets: frozenset[int], blobs: bool) -> list[Entry]:
        """The records the bin's product files add (reads the class file and the blobs zip)."""
        found = beside.shown(stem, self.files.products, targets, blobs)
        raw = self.files.mtime_ns
        entries = []
        for kind, version, size, mtime in found.copies:
            code = _COPIES[kind] << KIND_SHIFT | version
            entries.append(Entry(f"{kind}_v{version}.csv", size, None, code))
            self.mtimes[code] = max(mtime, raw)
        if found.class_sizes is not None:
            for code, name, size in zip((CODE_CLASS_SCORES, CODE_CLASSES), (beside.CLASS_SCORES_CSV, beside.CLASSES_CSV),
                                        found.class_sizes):
                entries.append(Entry(name, size, None, code, not self.settled))  # rows follow the ADC
                self.mtimes[code] = max(found.class_mtime, raw)
        self.blobs = found.blobs
        for target, member in found.blobs.items():
            if target < 1 << KIND_SHIFT:
                entries.append(Entry(f"{beside.BLOBS_FOLDER}/{stem}_{target:05d}.png", member[4], None,
                                     KIND_BLOB << KIND_SHIFT | target))
                self.mtimes[KIND_BLOB << KIND_SHIFT | target] = max(found.blobs_mtime, raw)
        self.product_problems, self.product_missing = tuple(found.problems), found.missing
        self.product_again = found.passing
        return entries

    def state(self) -> tuple:
        """Everything the model holds but its source files, as plain values that `marshal` takes
        (for the index; see core.listing)."""
        records = self.__dict__.get("_packed")
        if records is None:
            records = listing_mod.records_of(self.images, self.entries)
        others = (self.settled, self.problems, tuple(self.mosaic) if self.mosaic else None, self.coordinates,
                  self.zip_csv_size, self.mtimes, self.blobs, self.product_problems, self.product_missing,
                  self.n_images)
        return listing_mod.pack(self.header, self.pairs, self.n_triggers, self.skipped_lines, self.hdr_json,
                                self.listing(), records) + (others,)

    @classmethod
    def from_state(cls, files: BinFiles, state: tuple) -> "Bin":
        """The model `state()` was taken from, for the same source files. Its listing is there at
        once; its records (images, entries) are made on first use."""
        model = cls.__new__(cls)
        model.files = files
        *packed, others = state
        (model.header, model.pairs, model.n_triggers, model.skipped_lines, model.hdr_json, model._listing,
         model._packed) = listing_mod.unpack(tuple(packed))
        (model.settled, model.problems, mosaic, model.coordinates, model.zip_csv_size, model.mtimes, model.blobs,
         model.product_problems, model.product_missing, model.n_images) = others
        model.mosaic = Mosaic(*mosaic) if mosaic else None
        model._zipped = model._targets = model._last_png = None
        model.footprint = model._footprint(len(model._listing.codes))
        return model

    def __getattr__(self, name: str):
        """The records of a model from the index, made when first asked for."""
        if name in _RECORDS:
            with _EXPANDING:
                packed = self.__dict__.pop("_packed", None)
                if packed is not None:
                    images, entries = listing_mod.expand(packed, self._listing, Image, Entry)
                    self.images = images
                    self._index(entries)
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def listing(self) -> listing_mod.Listing:
        """The bin folder's entries as columns (all a listing needs)."""
        found = self.__dict__.get("_listing")
        if found is None:
            found = self._listing = listing_mod.listing_of(self.entries)
        return found

    def _index(self, entries: list[Entry]) -> None:
        self.entries = sorted(entries, key=itemgetter(0))  # by name
        self.by_name = dict(zip(map(itemgetter(0), self.entries), self.entries))
        self.by_code = dict(zip(map(itemgetter(3), self.entries), self.entries))
        self.footprint = self._footprint(len(self.entries))

    def _footprint(self, n_entries: int) -> int:
        """What the model costs in memory once its records are made (for the bin cache's budget)."""
        size = 1024 + BYTES_PER_ENTRY * n_entries + len(self.coordinates)
        if self.zip_csv_size >= 0:
            size += BYTES_PER_ZIP_MEMBER * (self.n_images + 3)
        return size

    def mtime_of(self, entry: Entry) -> int | None:
        """A record's own mtime when it has one (a product's), else None: the bin's."""
        return self.mtimes.get(entry.code) if self.mtimes else None

    @staticmethod
    def folder_code(name: str) -> int:
        """The code of a sub-folder of the bin folder (stable: from its name)."""
        return KIND_FOLDER << KIND_SHIFT | zlib.crc32(name.encode()) & ((1 << KIND_SHIFT) - 1)

    def folders(self) -> frozenset[str]:
        """The names of the bin folder's sub-folders (found once, on first use)."""
        found = self.__dict__.get("_folders")
        if found is None:
            found = self._folders = frozenset(e.name.rpartition("/")[0] for e in self.entries if "/" in e.name)
        return found

    def folder_of_code(self, code: int) -> str | None:
        """The sub-folder with this code, if the bin has one."""
        for entry in self.entries:
            head, slash, _ = entry.name.rpartition("/")
            if slash and self.folder_code(head) == code:
                return head
        return None

    def is_cheap(self, entry: Entry, limit: int) -> bool:
        """True when producing `entry` costs less than handing it to a worker thread (~100 us):
        `hdr.json`, or an image of one ROI under `limit` bytes (most images) whose bytes the
        source holds (a local file; for a remote one, bytes it has already fetched)."""
        if entry.image is None:
            return entry.code in (CODE_HDR_JSON, CODE_COORDINATES)
        if entry.size >= limit or len(entry.image.parts) != 1:
            return False
        part, source, roi = entry.image.parts[0], self.files.source, self.files.roi
        return source is None or roi is not None and source.holds(roi, part.start, part.width * part.height)

    def is_ranged(self, entry: Entry) -> bool:
        """True for a record read by byte range (`read_range`), never produced whole: the zip."""
        return entry.code == CODE_ZIP

    def decodes(self, entry: Entry) -> bool:
        """True when producing `entry` reads pixels (images, mosaic pages, the zip)."""
        return entry.image is not None or entry.code >> KIND_SHIFT == KIND_PAGE or entry.code == CODE_ZIP

    @classmethod
    def load(cls, files: BinFiles, stitch: str = "on", mosaic: Mosaic | None = None, zip: bool = False,
             settled: bool = False, blobs: bool = False) -> "Bin":
        """Parse a bin's header and ADC, `settled` (no longer growing: see core.settle) or not;
        raises SourceUnreadable when a file cannot be read. `stitch` is one of STITCH_MODES;
        D-style bins are never stitched, whatever it says. `mosaic` (a page shape) adds the
        mosaic views, `zip` the dashboard zip, `blobs` the blob masks of its products; products
        that cannot be read are left out (`product_problems`)."""
        if stitch not in STITCH_MODES:
            raise ValueError(f"stitch={stitch!r}: expected one of {', '.join(STITCH_MODES)}")
        hdr = _read_source(files, files.hdr)
        header = parse_hdr(hdr)
        adc = None
        if files.adc is not None:
            adc = adc_mod.parse_adc(_read_source(files, files.adc), files.bin_id.schema, final=settled)
        damage = problems(files, hdr, adc) if settled else ()
        if adc is None:
            return cls(files, header, None, Plan([], []), stitch == "qc", mosaic, zip, settled, damage, blobs)
        roi_size = files.roi.size if files.roi is not None else 0  # no .roi: no image, pairs still
        stitching = files.bin_id.style == "I" and stitch != "off"
        if stitching or mosaic is not None or zip or files.products:  # records made now
            plan = plan_images(adc.rois, roi_size, stitching)
            return cls(files, header, adc, plan, stitch == "qc", mosaic, zip, settled, damage, blobs)
        return cls._unstitched(files, header, adc, roi_size, settled, damage)

    def _hdr_json(self, adc: adc_mod.Adc | None, n_images: int) -> bytes:
        bin_id = self.files.bin_id
        doc = {
            "bin_id": str(bin_id),
            "timestamp": timestamp_iso(bin_id),
            "instrument": bin_id.instrument,
            "schema": bin_id.schema,
            "n_triggers": self.n_triggers,
            "n_images": n_images,
            "header": self.header,
            **bin_metrics(bin_id, self.header, adc, self.pairs),
        }
        return (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")

    def pixels(self, image: Image, view: str = "") -> bytes:
        """The image's pixels (stitched when it has two parts), or of a stitch its raw composite
        (view "raw") or gap mask ("gap"). Raises ImageMissing if gone."""
        files = self.files
        if files.roi is None:
            raise ImageMissing(f"{files.bin_id}: no .roi file")
        data = [read_pixels(files.source, files.roi, p.start, p.width, p.height) for p in image.parts]
        if len(data) == 1:
            return data[0]
        pasted = composite(image.parts[0], data[0], image.parts[1], data[1])
        return pasted.raw if view == "raw" else pasted.gap_mask() if view == "gap" else pasted.stitched()

    def read(self, entry: Entry | str) -> bytes:
        """The bytes of one entry (or entry name). Raises ImageMissing when it can no longer be
        produced as listed."""
        if isinstance(entry, str):
            name, entry = entry, self.by_name.get(entry)
            if entry is None:
                raise ImageMissing(f"{self.files.bin_id}: no file {name}")
        if entry.image is not None:
            data = encode_png(entry.image.width, entry.image.height, self.pixels(entry.image, entry.view))
        elif entry.code >> KIND_SHIFT == KIND_PAGE:
            data = self._page(entry.code & CODE_MASK)
        elif entry.code == CODE_ZIP:
            data = self.read_range(entry, 0, entry.size)
        elif entry.code == CODE_COORDINATES:
            data = self.coordinates
        elif entry.code == CODE_HDR_JSON:
            data = self.hdr_json
        elif entry.code == CODE_RAW_HDR:
            data = _read_source(self.files, self.files.hdr)
        elif entry.code >> KIND_SHIFT in (KIND_FEATURES, KIND_MULTIBLOB, KIND_BLOB) or entry.code in (CODE_CLASS_SCORES, CODE_CLASSES):
            data = self._product(entry)
        else:
            data = self._adc().csv
        if len(data) != entry.size:
            raise ImageMissing(f"{self.files.bin_id}: {entry.name} changed in the source since it was listed")
        return data

    def _product(self, entry: Entry) -> bytes:
        """The bytes of a product record (raises ProductError when they cannot be made)."""
        kind, number = entry.code >> KIND_SHIFT, entry.code & ((1 << KIND_SHIFT) - 1)
        products = self.files.products
        if kind in _COPY_KINDS:
            return beside.copy_bytes(products, _COPY_KINDS[kind], number)
        if kind == KIND_BLOB:
            return beside.blob_png(products, self.blobs[number])
        targets = beside.adc_targets(self._adc())
        return beside.class_csv(str(self.files.bin_id), products, targets, entry.code == CODE_CLASS_SCORES)

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) of an entry (fewer at its end). A ranged record produces
        only the zip members the range overlaps; any other entry is produced whole and sliced."""
        if not self.is_ranged(entry):
            return self.read(entry)[offset:offset + length]
        zipped = self._zipped
        if zipped is None:
            made = self._zip_file()
            zipped = self._zipped = (made, CrcTable(len(made.members)))
        if zipped[0].size != entry.size:
            raise ImageMissing(f"{self.files.bin_id}: {entry.name} changed in the source since it was listed")
        return zipped[0].read(offset, length, zipped[1])

    def _adc(self) -> adc_mod.Adc | None:
        """The ADC parsed again, as it was seen (`adc.csv` and the zip's `{bin}.csv` are made from
        it when read, so a kept model holds no ADC rows)."""
        files = self.files
        return adc_mod.parse_adc(_read_source(files, files.adc), files.bin_id.schema, final=self.settled) if files.adc else None

    def _zip_file(self) -> StoredZip:
        """The dashboard zip: its `{bin}.csv` from the ADC parsed again, its PNGs the images'."""
        images = [(im.target, im.width, im.height) for im in self.images]
        return bin_zip(self.files.bin_id, self.header, self._adc, images, self._png,
                       self.files.mtime_ns // 10**9, self.zip_csv_size)

    def _png(self, target: int) -> bytes:
        """An image's PNG for the zip. The last one is kept: the next ranged read may start inside it."""
        last = self._last_png
        if last is not None and last[0] == target:
            return last[1]
        image = self._image(target)
        data = encode_png(image.width, image.height, self.pixels(image))
        self._last_png = (target, data)
        return data

    def _image(self, target: int) -> Image:
        if self._targets is None:
            self._targets = {im.target: im for im in self.images}
        return self._targets[target]

    def _page(self, number: int) -> bytes:
        """Mosaic page `number`: its tiles, as `coordinates.csv` places them, drawn from the images."""
        width, height, _ = self.mosaic

        def pixels_of(target: int) -> tuple[int, int, bytes]:
            image = self._image(target)
            return image.width, image.height, self.pixels(image)

        placements = page_placements(self.coordinates, number)
        return encode_png(width, height, render_page(placements, width, height, pixels_of))
