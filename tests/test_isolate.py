"""Product readers in a child process: a reader that crashes or hangs on damaged bytes costs one
ProductError, and the next read works. The damaged files are real cases found by mutating
products: one byte that makes libhdf5 loop for ever, one that makes scipy's reader crash."""
from __future__ import annotations

import importlib.util
import io
import os
import signal
import time

import pytest

from ifcbfs.core.classes import read_class_file
from ifcbfs.core.annotations import read_manual_mat
from ifcbfs.core.errors import ProductError
from ifcbfs.core.isolate import Isolated
from ifcbfs.core.products import CLASS_H5

REAL_CLASS = "D20220522T003051_IFCB134_class.h5"
needs_h5py = pytest.mark.skipif(importlib.util.find_spec("h5py") is None,
                                reason="h5py not installed (pip install 'ifcbfs[products]')")
needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None,
                                 reason="scipy not installed (pip install 'ifcbfs[products]')")


def crash() -> None:
    """Die the way a C library does on bad memory."""
    os.kill(os.getpid(), signal.SIGSEGV)


def allocate(n: int) -> int:
    return len(bytearray(n))


@pytest.fixture
def iso():
    with Isolated(timeout=120) as reader:
        assert reader.call(os.getpid) != os.getpid()  # started, and really another process
        yield reader


def test_values_and_errors_pass_through(iso):
    assert iso.call(divmod, 7, 2) == (3, 1)
    with pytest.raises(ProductError, match="not a class file kind|ZeroDivisionError"):
        iso.call(divmod, 1, 0, what="x")
    with pytest.raises(ProductError, match="blobs zip: bad central directory"):
        from ifcbfs.core.blobs import blob_members
        iso.call(blob_members, b"not a zip", "D20240601T000000_IFCB124")


def test_a_crash_is_one_product_error_and_the_next_call_works(iso):
    first = iso.pid
    with pytest.raises(ProductError, match=r"^x\.h5: the reader crashed on it \(signal 11\); left out$"):
        iso.call(crash, what="x.h5")
    assert iso.pid is None
    assert iso.call(divmod, 9, 4) == (2, 1)
    assert iso.pid not in (None, first)


def test_a_hang_is_one_product_error_and_the_next_call_works(iso):
    iso.timeout = 1
    with pytest.raises(ProductError, match=r"^x: reading took longer than 1 s; left out$"):
        iso.call(time.sleep, 600, what="x")
    iso.timeout = 120
    assert iso.call(divmod, 9, 4) == (2, 1)


def test_memory_is_bounded():
    with Isolated(timeout=120, memory=1 << 30) as reader:
        with pytest.raises(ProductError, match="MemoryError"):
            reader.call(allocate, 2 << 30)
        assert reader.call(allocate, 1 << 20) == 1 << 20


@needs_h5py
def test_real_class_file_reads_the_same_in_the_child(iso, ifcb_data):
    data = (ifcb_data / "products" / REAL_CLASS).read_bytes()
    here, there = read_class_file(data, CLASS_H5), iso.call(read_class_file, data, CLASS_H5)
    assert (there.labels, there.roi_numbers, there.above_threshold) == (here.labels, here.roi_numbers,
                                                                        here.above_threshold)
    assert there.scores.dtype == here.scores.dtype and (there.scores == here.scores).all()


@needs_h5py
def test_damaged_h5_that_hangs_libhdf5(iso, ifcb_data):
    data = bytearray((ifcb_data / "products" / REAL_CLASS).read_bytes())
    data[8264] = 182  # in the heap of class_labels: reading it loops in libhdf5 (h5py 3.16)
    iso.timeout = 5
    try:
        iso.call(read_class_file, bytes(data), CLASS_H5, what=REAL_CLASS)
    except ProductError as err:
        assert REAL_CLASS in str(err)
    iso.timeout = 120
    assert iso.call(read_class_file, bytes((ifcb_data / "products" / REAL_CLASS).read_bytes()), CLASS_H5)


@needs_scipy
def test_damaged_mat_that_crashes_scipy(iso):
    import numpy as np
    import scipy.io
    cells = np.empty((2, 1), dtype=object)
    cells[0, 0], cells[1, 0] = "x", "y"
    buf = io.BytesIO()
    classlist = np.c_[np.arange(1, 21.0), np.ones(20), np.full(20, np.nan)]
    scipy.io.savemat(buf, dict(classlist=classlist, class2use_manual=cells))
    data = bytearray(buf.getvalue())
    assert iso.call(read_manual_mat, bytes(data)).labels == {r: "x" for r in range(1, 21)}
    data[848] = 64  # the type of the last string's data element: scipy 1.17 crashes on it
    try:
        iso.call(read_manual_mat, bytes(data), what="D.mat")
    except ProductError as err:
        assert str(err).startswith("D.mat") or str(err).startswith("manual .mat")
    assert iso.call(divmod, 1, 1) == (1, 0)
