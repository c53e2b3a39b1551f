"""Products beside a bin as files of its folder (SPEC section 9): which product file gives each
file, their exact sizes when the bin is listed, and their bytes when read.

A bin's product files (`BinFiles.products`, found by name in the product trees) give:
- `features_vN.csv` and `multiblob_vN.csv`: the product file's bytes, unchanged;
- `class_scores.csv` and `classes.csv`: generated from the class file of the highest version;
- `blobs/{bin}_{NNNNN}.png` (with `-o blobs`): each mask's bytes from the blobs zip, unchanged.

Class files and manual `.mat` files are read in a child process (`core.isolate`): damaged ones
can hang libhdf5 or crash scipy. A product that cannot be read adds no file and one problem line;
a missing optional package (h5py, scipy) is said once for the whole process (`missing`).
"""
from __future__ import annotations

import errno
import importlib.util
import os
import threading
from typing import Container, Iterable, NamedTuple

from . import adc as adc_mod
from .annotations import read_manual_csv, read_manual_mat
from .blobs import BlobMember, blob_members, inflate
from .classes import assigned_labels, class_scores_csv, classes_csv, read_class_file, roi_problem
from .errors import BinError, ProductDependencyMissing, ProductError, ProductUnavailable
from .isolate import Isolated
from .matlab import EXTRA_HINT
from .products import (BLOBS, BLOBS_FOLDER, CLASS_H5, CLASS_KINDS, CLASS_MAT, CLASS_SCORES_CSV, CLASSES_CSV,
                       FEATURES, MANUAL_CSV, MANUAL_MAT, MULTIBLOB, features_problem)
from .source import ProductFile, SourceUnreadable

MANUAL = "manual"  # the classifier that manual annotations make (SPEC section 12)
_NEEDS = {CLASS_H5: "h5py", CLASS_MAT: "scipy", MANUAL_MAT: "scipy"}
_WHAT = {CLASS_H5: "class scores .h5", CLASS_MAT: "class scores .mat", MANUAL_MAT: "manual .mat"}
FEATURES_HEAD = 4096  # bytes of a features file read to check its first row

_reader: tuple[int, Isolated] | None = None  # (the process it belongs to, the reader)
_reader_lock = threading.Lock()
reads = 0  # class and annotation files read so far in this process (tests count them)


class Shown(NamedTuple):
    """What a bin's product files add to its folder: (kind, version, size, mtime_ns) of each
    features and multiblob file, the sizes of class_scores.csv and classes.csv (or None) and
    the class file's mtime, the blob masks by target, and the problems, one line each."""

    copies: list[tuple[str, int, int, int]]
    class_sizes: tuple[int, int] | None
    class_mtime: int
    blobs: dict[int, tuple]
    blobs_mtime: int
    problems: list[str]
    missing: str | None  # "WHAT files: why": a package this process lacks, said once per kind
    passing: bool  # a file could not be read this time (see passing): the answer is not final


def passing(err: BaseException) -> bool:
    """True for a failure worth trying again (a source that did not answer, as in an object
    store's outage, or a file that came short): what it leaves out must not be remembered as the
    file's answer. A file that is forbidden or gone is not worth it."""
    return isinstance(err, ProductUnavailable) or isinstance(err, SourceUnreadable) and err.errno == errno.EIO


def _counted() -> None:
    global reads
    with _reader_lock:
        reads += 1


def call(func, *args, what: str):
    """`func(*args)` in this process's product reader (started on first use, shared by
    threads; a forked process, such as an export worker, starts its own)."""
    global _reader
    _counted()
    with _reader_lock:
        if _reader is None or _reader[0] != os.getpid():
            _reader = (os.getpid(), Isolated())
    return _reader[1].call(func, *args, what=what)


def close_reader() -> None:
    """Stop this process's product reader, if it started one."""
    global _reader
    with _reader_lock:
        if _reader is not None and _reader[0] == os.getpid():
            _reader[1].close()
        _reader = None


def missing_package(kind: str) -> str | None:
    """The line saying which package reading files of `kind` needs, when it is not installed."""
    module = _NEEDS.get(kind)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return f"{_WHAT[kind]} files: cannot be read without {module}: {EXTRA_HINT}"


def adc_targets(adc: adc_mod.Adc | None) -> frozenset[int]:
    """The target (line) numbers of an ADC's lines: the roi numbers products may name."""
    if adc is None:
        return frozenset()
    return frozenset(int(row.partition(",")[0]) for row in adc.rows[1:])


def first(products: Iterable[ProductFile], kind: str, version: int | None) -> ProductFile | None:
    """The product file of a kind and version that is shown (the first found: roots in option order)."""
    return next((p for p in products if p.kind == kind and p.version == version), None)


def class_file(products: Iterable[ProductFile]) -> ProductFile | None:
    """The class file that gives class_scores.csv: the highest version wins, then `.h5` over
    `.mat`, then the first found."""
    best = None
    for p in products:
        if p.kind in CLASS_KINDS and (best is None or (p.version, p.kind == CLASS_H5) > (best.version, best.kind == CLASS_H5)):
            best = p
    return best


def classifier_files(products: Iterable[ProductFile]) -> dict[str, ProductFile]:
    """The file each classifier assigns this bin's images from (SPEC section 12): per product
    root its best class file, and for `manual` the first annotation file (`.mat` before `.csv`)."""
    products = list(products)
    out: dict[str, ProductFile] = {}
    for root in dict.fromkeys(p.root for p in products):
        best = class_file(p for p in products if p.root == root)
        if best is not None:
            out[root] = best
    manual = [p for p in products if p.kind in (MANUAL_MAT, MANUAL_CSV)]
    if manual:
        out[MANUAL] = min(manual, key=lambda p: p.kind != MANUAL_MAT)
    return out


def _bytes(p: ProductFile) -> bytes:
    data = p.source.read(p.file)
    if len(data) != p.file.size:
        raise ProductUnavailable(f"{p.file.path}: {len(data)} bytes read of {p.file.size}")
    return data


def _scores(p: ProductFile):
    """A class file's scores, read in the reader process."""
    return call(read_class_file, _bytes(p), p.kind, what=p.file.path)


def shown(bin_id: str, products: tuple[ProductFile, ...], targets: Container[int], blobs: bool) -> Shown:
    """What the product files of a bin add to its folder, with `targets` its ADC's target numbers.
    Reads the class file (for the CSV sizes), the start of features files and the blobs zip."""
    copies, problems = [], []
    missing, again = None, False
    for kind in (FEATURES, MULTIBLOB):
        for version in sorted({p.version for p in products if p.kind == kind}):
            p = first(products, kind, version)
            copies.append((kind, version, p.file.size, p.file.mtime_ns))
            if kind == FEATURES:
                try:
                    head = p.source.read_range(p.file, 0, min(p.file.size, FEATURES_HEAD))
                except Exception as err:  # SourceUnreadable, ImageMissing: said when the file is read
                    problems.append(f"{_name(p)}: cannot be read ({err})")
                    again = again or passing(err)
                    head = b"roi_number"
                problem = features_problem(head)
                if problem:
                    problems.append(f"{_name(p)}: {problem}")
    sizes, class_mtime = None, 0
    chosen = class_file(products)
    if chosen is not None:
        missing = missing_package(chosen.kind)
        if missing is None:
            try:
                cs = _scores(chosen)
                sizes = (len(class_scores_csv(bin_id, cs, targets)), len(classes_csv(bin_id, cs, targets)))
                class_mtime = chosen.file.mtime_ns
                problem = roi_problem(bin_id, cs, targets)
                if problem:
                    problems.append(f"{_name(chosen)}: {problem}")
            except BinError as err:  # ProductError, or the file gone or unreadable since it was found
                problems.append(f"{_name(chosen)}: {err} (no class_scores.csv, classes.csv)")
                again = again or passing(err)
    masks, blobs_mtime = {}, 0
    zipped = first(products, BLOBS, max((p.version for p in products if p.kind == BLOBS), default=None))
    if blobs and zipped is not None:
        try:
            found = blob_members(_bytes(zipped), bin_id, targets)
            masks = {t: tuple(m) for t, m in found.members.items()}
            blobs_mtime = zipped.file.mtime_ns
            if found.problem:
                problems.append(f"{_name(zipped)}: {found.problem}")
        except BinError as err:
            problems.append(f"{_name(zipped)}: {err} (no blobs/)")
            again = again or passing(err)
    return Shown(copies, sizes, class_mtime, masks, blobs_mtime, problems, missing, again)


def _name(p: ProductFile) -> str:
    return p.file.path.rpartition("/")[2]


def copy_bytes(products: tuple[ProductFile, ...], kind: str, version: int) -> bytes:
    """The bytes of a features or multiblob file, unchanged."""
    p = first(products, kind, version)
    if p is None:
        raise ProductError(f"no {kind} file of version {version}")
    return _bytes(p)


def class_csv(bin_id: str, products: tuple[ProductFile, ...], targets: Container[int], scores: bool) -> bytes:
    """class_scores.csv (`scores`) or classes.csv, generated again from the class file."""
    chosen = class_file(products)
    if chosen is None:
        raise ProductError("no class file")
    cs = _scores(chosen)
    return (class_scores_csv if scores else classes_csv)(bin_id, cs, targets)


def blob_png(products: tuple[ProductFile, ...], member: tuple) -> bytes:
    """A mask's PNG bytes, from its byte range of the blobs zip (checked against its CRC)."""
    zipped = first(products, BLOBS, max((p.version for p in products if p.kind == BLOBS), default=None))
    if zipped is None:
        raise ProductError("no blobs zip")
    m = BlobMember(*member)
    return inflate(m, zipped.source.read_range(zipped.file, m.offset, m.stored_size))


def labels_of(p: ProductFile, bin_id: str, targets: Container[int]) -> tuple[dict[int, str], str | None]:
    """The label a classifier file gives each target (after thresholds, else the winner), and
    the line to log for what it leaves out. Raises ProductError when it cannot be read."""
    missing = missing_package(p.kind)
    if missing:
        raise ProductDependencyMissing(missing)
    if p.kind in CLASS_KINDS:
        cs = _scores(p)
        return assigned_labels(cs, targets), roi_problem(bin_id, cs, targets)
    if p.kind == MANUAL_MAT:
        found = call(read_manual_mat, _bytes(p), what=p.file.path)
    else:
        _counted()
        found = read_manual_csv(_bytes(p), bin_id)
    labels = {t: label for t, label in found.labels.items() if t in targets}
    unknown = sorted(t for t in found.labels if t not in targets)
    problems = [found.problem] if found.problem else []
    if unknown:
        shown_ = ", ".join(map(str, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        problems.append(f"{len(unknown)} roi numbers not in the ADC ({shown_}) left out")
    return labels, "; ".join(problems) or None
