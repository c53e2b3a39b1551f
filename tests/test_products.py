"""Products beside a bin (SPEC section 9) and manual annotations (section 12), as pure functions
over bytes: file names, class score files to CSVs, blob zips, annotation files, label names.

The real features file and `_class.h5` of ifcb-data/products are checked against values read
directly with h5py; the other products are written here with h5py, scipy.io.savemat (v5) and
zipfile. Tests that need h5py or scipy skip when the `products` extra is not installed.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import os
import sys
import urllib.parse
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ifcbfs.core.adc import parse_adc
from ifcbfs.core.annotations import read_manual_csv, read_manual_mat
from ifcbfs.core.blobs import blob_bytes, blob_members, inflate
from ifcbfs.core.classes import (
    ClassScores, assigned_labels, class_scores_csv, classes_csv, read_class_file, roi_problem, winners,
)
from ifcbfs.core.errors import BinError, ProductDependencyMissing, ProductError
from ifcbfs.core.products import (
    BLOBS, CLASS_H5, CLASS_MAT, FEATURES, MANUAL_CSV, MANUAL_MAT, MULTIBLOB, ProductName,
    features_problem, product_kind, safe_label,
)

REAL_BIN = "D20220522T003051_IFCB134"
D_BIN, I_BIN = "D20240601T000000_IFCB124", "IFCB5_2012_028_081515"
HAVE_H5PY = importlib.util.find_spec("h5py") is not None
HAVE_SCIPY = importlib.util.find_spec("scipy") is not None
needs_h5py = pytest.mark.skipif(not HAVE_H5PY, reason="h5py not installed (pip install 'ifcbfs[products]')")
needs_scipy = pytest.mark.skipif(not HAVE_SCIPY, reason="scipy not installed (pip install 'ifcbfs[products]')")
needs_numpy = pytest.mark.skipif(importlib.util.find_spec("numpy") is None,
                                 reason="numpy not installed (pip install 'ifcbfs[products]')")
ALL = range(1, 10**6)  # every target number: no roi is unknown


def rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


# --- file names ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected, shown", [
    (f"{D_BIN}_fea_v2.csv", (D_BIN, FEATURES, 2), ("features_v2.csv",)),
    (f"{D_BIN}_features_v4.csv", (D_BIN, FEATURES, 4), ("features_v4.csv",)),
    (f"{I_BIN}_fea_v02.csv", (I_BIN, FEATURES, 2), ("features_v2.csv",)),
    (f"{D_BIN}_multiblob_v2.csv", (D_BIN, MULTIBLOB, 2), ("multiblob_v2.csv",)),
    (f"{D_BIN}_class.h5", (D_BIN, CLASS_H5, 3), ("class_scores.csv", "classes.csv")),
    (f"{D_BIN}_class_v2.h5", (D_BIN, CLASS_H5, 2), ("class_scores.csv", "classes.csv")),
    (f"{I_BIN}_class_v1.mat", (I_BIN, CLASS_MAT, 1), ("class_scores.csv", "classes.csv")),
    (f"{D_BIN}_blobs_v4.zip", (D_BIN, BLOBS, 4), ("blobs",)),
    (f"{D_BIN}.mat", (D_BIN, MANUAL_MAT, None), ()),
    (f"{I_BIN}.csv", (I_BIN, MANUAL_CSV, None), ()),
])
def test_product_names(name, expected, shown):
    p = product_kind(name)
    assert p == expected and isinstance(p, ProductName)
    assert p.shown == shown


@pytest.mark.parametrize("name", [
    "notes.csv", "x_class.h5", "D20241301T000000_IFCB1_class.h5",  # not a bin id (month 13)
    f"{D_BIN}.hdr", f"{D_BIN}.roi", f"{D_BIN}_fea_v2.txt", f"{D_BIN}_class_v.h5",
    f"{D_BIN}_class_v2.h5.bak", f"{D_BIN}_class.mat", f"{D_BIN}_fea.csv", f"{D_BIN}_blobs.zip",
    f"{D_BIN}_class_v２.h5", f"{D_BIN}_fea_v1234567.csv", f"{D_BIN}_00001.png", "", ".csv",
    f"{D_BIN}_CLASS.H5",
])
def test_not_product_names(name):
    assert product_kind(name) is None


def test_product_kind_of_real_files(ifcb_data):
    found = {p.name: product_kind(p.name) for p in (ifcb_data / "products").iterdir()}
    assert found == {f"{REAL_BIN}_class.h5": (REAL_BIN, CLASS_H5, 3),
                     f"{REAL_BIN}_fea_v2.csv": (REAL_BIN, FEATURES, 2)}


def test_highest_class_version_wins():
    from ifcbfs.core.beside import class_file
    from ifcbfs.core.source import ProductFile, SourceFile

    def found(*names: str, root: str = "cnn") -> list[ProductFile]:
        return [ProductFile(root, n.kind, n.version, SourceFile(name, 1, 0))
                for name in names if (n := product_kind(name)) is not None]

    def best(products):
        chosen = class_file(products)
        return chosen and (chosen.kind, chosen.version)

    files = found(f"{D_BIN}_class_v1.mat", f"{D_BIN}_class.h5", f"{D_BIN}_class_v2.h5", f"{D_BIN}_fea_v9.csv", f"{D_BIN}.mat")
    assert best(files) == best(files[::-1]) == (CLASS_H5, 3)
    tie = found(f"{D_BIN}_class_v4.mat", f"{D_BIN}_class_v4.h5")
    assert best(tie) == best(tie[::-1]) == (CLASS_H5, 4)  # .h5 over .mat of one version
    assert best(found(f"{D_BIN}_class_v7.mat") + files) == (CLASS_MAT, 7)
    assert best(found(f"{D_BIN}_fea_v2.csv")) is None
    twice = found(f"{D_BIN}_class_v5.h5", root="a") + found(f"{D_BIN}_class_v5.h5", root="b")
    assert class_file(twice).root == "a"  # then the first found (roots in option order)


# --- features --------------------------------------------------------------------------------
def test_real_features_file_is_of_the_usual_layout(ifcb_data):
    data = (ifcb_data / "products" / f"{REAL_BIN}_fea_v2.csv").read_bytes()
    assert data.startswith(b"roi_number,Area,")
    assert features_problem(data) is None


@pytest.mark.parametrize("data, says", [
    (b"roi,area\r\n1,2\r\n", "'roi'"),  # syke-pic
    (b"", "no header row"),
    (b"\n1,2\n", "no header row"),
])
def test_features_of_another_layout_are_named(data, says):
    assert says in features_problem(data)
    assert features_problem(b'"roiNumber",Area\n1,2\n') is None


# --- class scores: the real file -------------------------------------------------------------
@pytest.fixture(scope="module")
def real_class(ifcb_data):
    return (ifcb_data / "products" / f"{REAL_BIN}_class.h5").read_bytes()


@pytest.fixture(scope="module")
def real_targets(ifcb_data):
    adc = parse_adc((ifcb_data / "bins" / REAL_BIN / f"{REAL_BIN}.adc").read_bytes(), "v2")
    return range(1, adc.n_triggers + 1)


@needs_h5py
def test_real_class_file_against_h5py(ifcb_data, real_class, real_targets):
    import h5py
    import numpy as np
    with h5py.File(ifcb_data / "products" / f"{REAL_BIN}_class.h5", "r") as f:
        scores = f["output_scores"][()]
        labels = [s.decode() for s in f["class_labels"][()]]
        rois = f["roi_numbers"][()].tolist()
        thresholded = [s.decode() for s in f["class_name"][()]]
    cs = read_class_file(real_class, CLASS_H5)
    assert cs.labels == tuple(labels) and len(labels) == 45
    assert cs.roi_numbers == tuple(rois) == (2, 3)
    assert cs.scores.dtype == np.float64 and (cs.scores == scores).all()
    assert cs.above_threshold == tuple(thresholded)

    table = rows(class_scores_csv(REAL_BIN, cs, real_targets))
    assert table[0] == ["pid", *labels]
    assert [r[0] for r in table[1:]] == [f"{REAL_BIN}_00002", f"{REAL_BIN}_00003"]
    for row, expected in zip(table[1:], scores):
        assert [float(v) for v in row[1:]] == expected.tolist()  # exact round trip
        assert row[1:] == [repr(float(v)) for v in expected]

    classes = rows(classes_csv(REAL_BIN, cs, real_targets))
    assert classes[0] == ["pid", "class", "score", "class_above_threshold"]
    for row, expected, above in zip(classes[1:], scores, thresholded):
        j = int(np.argmax(expected))
        assert row[1:] == [labels[j], repr(float(expected[j])), above]
    assert [r[1] for r in classes[1:]] == ["Mesodinium_rubrum", "Mesodinium_rubrum"]
    assert roi_problem(REAL_BIN, cs, real_targets) is None
    assert assigned_labels(cs, real_targets) == {2: "Mesodinium_rubrum", 3: "Mesodinium_rubrum"}


@needs_h5py
def test_truncated_real_class_file(real_class):
    for cut in (0, 8, 512, len(real_class) // 2, len(real_class) - 1):
        with pytest.raises(ProductError, match="class scores .h5"):
            read_class_file(real_class[:cut], CLASS_H5)


# --- class scores: files written here --------------------------------------------------------
def write_h5(*, layout=3, scores, labels, rois, class_name=None, labels_attr=False) -> bytes:
    import h5py
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        ds = f.create_dataset("output_scores" if layout == 3 else "scores", data=scores)
        if labels_attr:
            ds.attrs["class_labels"] = [s.encode() for s in labels]
        elif labels is not None:
            f.create_dataset("class_labels", data=[s.encode() for s in labels], dtype=h5py.string_dtype("ascii"))
        if rois is not None:
            f.create_dataset("roi_numbers", data=rois)
        if class_name is not None:
            f.create_dataset("class_name", data=[s.encode() for s in class_name],
                             dtype=h5py.string_dtype())
    return buf.getvalue()


def write_mat(**variables) -> bytes:
    import scipy.io
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, format="5", do_compression=variables.pop("_compress", False))
    return buf.getvalue()


def cells(strings, column=True):
    import numpy as np
    out = np.empty((len(strings), 1) if column else (1, len(strings)), dtype=object)
    for i, s in enumerate(strings):
        out.flat[i] = s
    return out


@needs_h5py
@pytest.mark.parametrize("dtype", ["float32", "float64", ">f4", ">f8"])
def test_h5_scores_keep_their_float_type(dtype):
    import numpy as np
    values = np.array([[0.1, 0.7, 0.2], [1 / 3, 2 / 3, 1e-7], [0.5, 0.5, 0.0]], dtype=dtype)
    data = write_h5(scores=values, labels=["a", "b,c", "d"], rois=np.array([1, 5, 9], dtype="int32"))
    cs = read_class_file(data, CLASS_H5)
    assert cs.scores.dtype == np.dtype(dtype).newbyteorder("=") and cs.scores.dtype.isnative
    assert cs.above_threshold is None
    table = rows(class_scores_csv(D_BIN, cs, ALL))
    assert table[0] == ["pid", "a", "b,c", "d"]  # a label with a comma is quoted
    for row, expected in zip(table[1:], values):
        assert [np.dtype(dtype).type(v) for v in row[1:]] == list(expected)  # round trip in its type
        assert row[1:] == [str(v) for v in expected.astype(np.dtype(dtype).newbyteorder("="))]
    if np.dtype(dtype).itemsize == 4:
        assert table[1][1:] == ["0.1", "0.7", "0.2"]  # float32's own shortest, not float64's
        assert table[2][1:] == ["0.33333334", "0.6666667", "1e-07"]
    else:
        assert table[2][1:] == ["0.3333333333333333", "0.6666666666666666", "1e-07"]
    classes = rows(classes_csv(D_BIN, cs, ALL))
    assert [r[1] for r in classes[1:]] == ["b,c", "b,c", "a"]  # ties go to the first column
    assert [r[3] for r in classes[1:]] == ["", "", ""]
    assert assigned_labels(cs, ALL) == {1: "b,c", 5: "b,c", 9: "a"}


@needs_h5py
def test_h5_version_2_layout_with_labels_in_an_attribute():
    import numpy as np
    data = write_h5(layout=2, scores=np.eye(2, dtype="float32"), labels=["x", "y"], rois=[3, 4],
                    labels_attr=True)
    cs = read_class_file(data, CLASS_H5)
    assert cs.labels == ("x", "y") and cs.roi_numbers == (3, 4)
    assert rows(class_scores_csv(D_BIN, cs, ALL))[1] == [f"{D_BIN}_00003", "1.0", "0.0"]


@needs_h5py
def test_h5_thresholded_classes_and_trailing_unclassified():
    import numpy as np
    data = write_h5(scores=np.array([[0.9, 0.1], [0.4, 0.6]]), labels=["a", "b", "unclassified"],
                    rois=[1, 2], class_name=["a", "unclassified"])
    cs = read_class_file(data, CLASS_H5)
    assert cs.labels == ("a", "b")
    assert rows(class_scores_csv(D_BIN, cs, ALL))[0] == ["pid", "a", "b"]
    assert rows(classes_csv(D_BIN, cs, ALL))[1:] == [
        [f"{D_BIN}_00001", "a", "0.9", "a"], [f"{D_BIN}_00002", "b", "0.6", "unclassified"]]
    assert assigned_labels(cs, ALL) == {1: "a", 2: "unclassified"}


@needs_h5py
def test_unclassified_with_its_own_column_is_kept():
    import numpy as np
    data = write_h5(scores=np.array([[0.2, 0.8]]), labels=["a", "unclassified"], rois=[1])
    assert read_class_file(data, CLASS_H5).labels == ("a", "unclassified")


@needs_scipy
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("thresholds", [False, True])
def test_mat_class_file(dtype, thresholds):
    import numpy as np
    scores = np.array([[0.25, 0.75], [0.6, 0.4], [0.1, 0.9]], dtype=dtype)
    variables = dict(TBscores=scores, class2useTB=cells(["Diatom", "Ciliate", "unclassified"]),
                     roinum=np.array([[2.0], [4.0], [7.0]]), classifierName="rf")
    if thresholds:
        variables["TBclass_above_threshold"] = cells(["Ciliate", "unclassified", "Ciliate"])
    cs = read_class_file(write_mat(**variables), CLASS_MAT)
    assert cs.labels == ("Diatom", "Ciliate")
    assert cs.roi_numbers == (2, 4, 7)
    assert cs.scores.dtype == np.dtype(dtype)
    table = rows(class_scores_csv(I_BIN, cs, ALL))
    assert table == [["pid", "Diatom", "Ciliate"], [f"{I_BIN}_00002", "0.25", "0.75"],
                     [f"{I_BIN}_00004", "0.6", "0.4"], [f"{I_BIN}_00007", "0.1", "0.9"]]
    above = ["Ciliate", "unclassified", "Ciliate"] if thresholds else ["", "", ""]
    assert [r[3] for r in rows(classes_csv(I_BIN, cs, ALL))[1:]] == above
    expected = {2: "Ciliate", 4: "unclassified" if thresholds else "Diatom", 7: "Ciliate"}
    assert assigned_labels(cs, ALL) == expected


@needs_scipy
def test_mat_one_roi_char_matrix_labels_and_compression():
    import numpy as np
    data = write_mat(TBscores=np.array([[0.5, 0.25]], dtype="float32"),
                     class2useTB=np.array(["ab          ", "cdef        ", "unclassified"]),  # char matrix
                     roinum=np.array([[1]]), _compress=True)
    cs = read_class_file(data, CLASS_MAT)
    assert cs.labels == ("ab", "cdef")
    assert rows(class_scores_csv(D_BIN, cs, ALL)) == [["pid", "ab", "cdef"], [f"{D_BIN}_00001", "0.5", "0.25"]]


@needs_scipy
def test_mat_without_rois():
    import numpy as np
    data = write_mat(TBscores=np.zeros((0, 0)), class2useTB=cells(["a", "b", "unclassified"]),
                     roinum=np.zeros((0, 0)))
    cs = read_class_file(data, CLASS_MAT)
    assert cs.roi_numbers == () and cs.labels == ("a", "b")
    assert class_scores_csv(D_BIN, cs, ALL) == b"pid,a,b\n"
    assert classes_csv(D_BIN, cs, ALL) == b"pid,class,score,class_above_threshold\n"


def make_scores(values, labels=("a", "b", "c"), rois=None, above=None):
    import numpy as np
    s = np.array(values, dtype=float)
    return ClassScores(tuple(labels), tuple(rois or range(1, len(values) + 1)), s, above)


@needs_numpy
def test_nan_scores_never_win():
    nan, inf = float("nan"), float("inf")
    cs = make_scores([[nan, 0.2, 0.3], [nan, nan, nan], [nan, -inf, -inf], [0.5, nan, 0.5]])
    assert winners(cs) == [2, None, 1, 0]
    table = rows(classes_csv(D_BIN, cs, ALL))
    assert [r[1:3] for r in table[1:]] == [["c", "0.3"], ["", ""], ["b", "-inf"], ["a", "0.5"]]
    assert rows(class_scores_csv(D_BIN, cs, ALL))[2][1:] == ["nan", "nan", "nan"]
    assert 2 not in assigned_labels(cs, ALL)


@needs_numpy
def test_rois_not_in_the_adc_and_repeated_are_left_out_with_one_line():
    cs = make_scores([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]], rois=[1, 40, 2, 1, 99])
    known = range(1, 11)
    assert [r[0] for r in rows(class_scores_csv(D_BIN, cs, known))[1:]] == [f"{D_BIN}_00001", f"{D_BIN}_00002"]
    assert [r[1] for r in rows(classes_csv(D_BIN, cs, known))[1:]] == ["a", "c"]
    assert assigned_labels(cs, known) == {1: "a", 2: "c"}
    line = roi_problem(D_BIN, cs, known)
    assert line == f"{D_BIN} class scores: 2 roi numbers not in the ADC (40, 99) and 1 repeated roi numbers left out"
    assert "\n" not in line
    assert roi_problem(D_BIN, cs, ALL) == f"{D_BIN} class scores: 1 repeated roi numbers left out"


@needs_numpy
def test_csvs_are_deterministic_bytes():
    cs = make_scores([[0.1, 0.2, 0.7]], labels=("a", 'q"uote', "new\nline"))
    first = class_scores_csv(D_BIN, cs, ALL)
    assert first == class_scores_csv(D_BIN, cs, ALL)
    assert first == b'pid,a,"q""uote","new\nline"\n' + f"{D_BIN}_00001,0.1,0.2,0.7\n".encode()
    assert rows(first)[0] == ["pid", "a", 'q"uote', "new\nline"]


# --- class scores: bad input -----------------------------------------------------------------
@needs_h5py
@pytest.mark.parametrize("case, message", [
    ("not hdf5", "not an HDF5 file"),
    ("no datasets", "no output_scores"),
    ("no labels", "no class_labels"),
    ("labels mismatch", "3 class labels for 2 score columns"),
    ("rows mismatch", "3 rows of scores for 2 roi numbers"),
    ("fractional rois", "not whole numbers"),
    ("zero roi", "below 1"),
    ("string scores", "not a matrix"),
    ("3-d scores", "not a matrix"),
    ("thresholded mismatch", "1 thresholded classes for 2 roi numbers"),
    ("numbers as labels", "class_labels are not strings"),
    ("labels group", "class_labels is not a dataset"),
])
def test_bad_h5_files(case, message):
    import h5py
    import numpy as np
    two = np.array([[0.1, 0.9], [0.8, 0.2]])
    if case == "not hdf5":
        data = b"roi_number,Area\n1,2\n"
    elif case == "no datasets":
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            f.create_dataset("other", data=[1])
        data = buf.getvalue()
    elif case == "no labels":
        data = write_h5(scores=two, labels=None, rois=[1, 2])
    elif case == "labels mismatch":
        data = write_h5(scores=two, labels=["a", "b", "c"], rois=[1, 2])
    elif case == "rows mismatch":
        data = write_h5(scores=np.zeros((3, 2)), labels=["a", "b"], rois=[1, 2])
    elif case == "fractional rois":
        data = write_h5(scores=two, labels=["a", "b"], rois=[1.5, 2.0])
    elif case == "zero roi":
        data = write_h5(scores=two, labels=["a", "b"], rois=[0, 1])
    elif case == "string scores":
        data = write_h5(scores=np.array([[b"x", b"y"]]), labels=["a", "b"], rois=[1])
    elif case == "3-d scores":
        data = write_h5(scores=np.zeros((2, 2, 2)), labels=["a", "b"], rois=[1, 2])
    elif case == "thresholded mismatch":
        data = write_h5(scores=two, labels=["a", "b"], rois=[1, 2], class_name=["a"])
    else:
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            f["output_scores"], f["roi_numbers"] = two, [1, 2]
            if case == "labels group":
                f.create_group("class_labels")
            else:
                f["class_labels"] = [1.0, 2.0]
        data = buf.getvalue()
    with pytest.raises(ProductError, match=message) as err:
        read_class_file(data, CLASS_H5)
    assert "\n" not in str(err.value) and isinstance(err.value, BinError)


@needs_scipy
@pytest.mark.parametrize("case, message", [
    ("another layout", "another layout \\(no TBscores, roinum\\)"),
    ("labels mismatch", "1 class labels for 2 score columns"),
    ("numbers as labels", "expected strings"),
    ("garbage", "not a readable MATLAB .mat file"),
    ("truncated", "not a readable MATLAB .mat file"),
    ("v7.3", "v7.3"),
])
def test_bad_mat_files(case, message):
    import numpy as np
    good = dict(TBscores=np.array([[0.1, 0.9]]), class2useTB=cells(["a", "b", "unclassified"]),
                roinum=np.array([[1]]))
    if case == "another layout":
        data = write_mat(class2useTB=cells(["a"]), classlist=np.zeros((1, 3)))
    elif case == "labels mismatch":
        data = write_mat(**{**good, "class2useTB": cells(["a"])})
    elif case == "numbers as labels":
        data = write_mat(**{**good, "class2useTB": np.array([[1.0, 2.0]])})
    elif case == "garbage":
        data = b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 2
    elif case == "truncated":
        data = write_mat(**good)[:200]
    else:
        data = b"MATLAB 7.3 MAT-file".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + bytes(64)
    with pytest.raises(ProductError, match=message):
        read_class_file(data, CLASS_MAT)


def test_missing_dependency_names_the_extra(monkeypatch):
    for module in ("h5py", "scipy", "scipy.io"):
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    for kind, needed in ((CLASS_H5, "h5py"), (CLASS_MAT, "scipy")):
        with pytest.raises(ProductDependencyMissing, match=f"needs {needed}: pip install 'ifcbfs\\[products\\]'"):
            read_class_file(b"anything", kind)
    with pytest.raises(ProductDependencyMissing, match="manual .mat needs scipy"):
        read_manual_mat(b"anything")
    with pytest.raises(ValueError):
        read_class_file(b"", "features")


# --- manual annotations ----------------------------------------------------------------------
@needs_scipy
@pytest.mark.parametrize("compress", [False, True])
def test_manual_mat(compress):
    import numpy as np
    nan = float("nan")
    classlist = np.array([[1, 2, nan], [2, nan, 3], [3, 1, 1], [4, 3, nan], [5, 9, nan], [6, 2.5, nan],
                          [3, 2, nan]])
    data = write_mat(classlist=classlist, class2use_manual=cells(["unclassified", "Diatom", "Ciliate"], column=False),
                     _compress=compress)
    ann = read_manual_mat(data)
    assert ann.labels == {1: "Diatom", 3: "unclassified", 4: "Ciliate"}
    assert ann.problem == ("manual .mat: 3 rows left out (roi 5: class index 9 of 3; "
                           "roi 6: class index 2.5 of 3; roi 3 repeated)")


@needs_scipy
def test_manual_mat_bad_input():
    import numpy as np
    ok = read_manual_mat(write_mat(classlist=np.zeros((0, 0)), class2use_manual=cells(["a"])))
    assert ok == ({}, None)
    with pytest.raises(ProductError, match="another layout"):
        read_manual_mat(write_mat(TBscores=np.zeros((1, 1))))
    with pytest.raises(ProductError, match="two or more columns"):
        read_manual_mat(write_mat(classlist=np.array([[1.0], [2.0]]), class2use_manual=cells(["a"])))
    ann = read_manual_mat(write_mat(classlist=np.array([[0.5, 1], [2, 1]]), class2use_manual=cells(["", "b"])))
    assert ann.labels == {} and "roi number 0.5" in ann.problem and "roi 2: class index 1 of 2" in ann.problem


def test_manual_csv_as_written_by_r():
    data = ("\ufeff" + '"file_name","class_name","class_name_auto","score"\r\n'
            f'"{D_BIN}_00001.png","Diatom","Diatom",0.9\r\n'
            f'"{D_BIN}_00002.png","Ciliate_001","Ciliate",0.8\r\n'
            f'"{D_BIN}_00003.png",NA,NA,NA\r\n'
            f'"{D_BIN}_00004.png","",,\r\n'
            f'"{D_BIN}_00005","a/b, c",x,1\r\n'
            f'"{I_BIN}_00006.png","Diatom",x,1\r\n'
            f'"{D_BIN}_7.png","Diatom",x,1\r\n'
            f'"{D_BIN}_00001.png","Other",x,1\r\n'
            f'"{D_BIN}_00008.png","Chaetoceros_1234",x,1\r\n'
            '\r\n').encode("utf-8")
    ann = read_manual_csv(data, D_BIN)
    assert ann.labels == {1: "Diatom", 2: "Ciliate", 5: "a/b, c", 8: "Chaetoceros_1234"}
    assert ann.problem == (f"manual .csv: 3 rows left out ('{I_BIN}_00006.png' is not an image of {D_BIN}; "
                           f"'{D_BIN}_7.png' is not an image of {D_BIN}; '{D_BIN}_00001.png' repeated)")


def test_manual_csv_bad_input():
    with pytest.raises(ProductError, match="no file_name and class_name"):
        read_manual_csv(b"trigger,adcTime\n1,2\n", D_BIN)
    with pytest.raises(ProductError, match="no file_name and class_name"):
        read_manual_csv(b"", D_BIN)
    ann = read_manual_csv(b"class_name,file_name\nDiatom\n\xff\xfe,x\n", D_BIN)
    assert ann.labels == {} and ann.problem.startswith("manual .csv: 2 rows left out (short row 'Diatom'")
    ann = read_manual_csv(f"class_name,file_name\nDiatom,{D_BIN}_00000.png\nCiliate,{D_BIN}_00002.png\n".encode(), D_BIN)
    assert ann.labels == {2: "Ciliate"} and "is not an image of" in ann.problem  # there is no target 0


# --- blobs -----------------------------------------------------------------------------------
def png(width: int, height: int, value: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), value).save(out, format="PNG")
    return out.getvalue()


def blobs_zip(members, comment=b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data, method in members:
            info = zipfile.ZipInfo(name, date_time=(2024, 6, 1, 0, 0, 0))
            info.compress_type = method
            if name == "extra":
                info.extra = b"\x99\x99\x04\x00abcd"
            z.writestr(info, data)
        z.comment = comment
    return buf.getvalue()


def test_blob_members_stored_and_deflated():
    masks = {1: png(30, 20, 255), 2: png(64, 48, 0), 10: png(5, 5, 255)}
    data = blobs_zip([(f"{D_BIN}_00001.png", masks[1], zipfile.ZIP_STORED),
                      (f"{D_BIN}_00002.png", masks[2], zipfile.ZIP_DEFLATED),
                      ("subdir/", b"", zipfile.ZIP_STORED),
                      (f"{D_BIN}_00010.png", masks[10], zipfile.ZIP_DEFLATED)])
    blobs = blob_members(data, D_BIN)
    assert blobs.problem is None
    assert sorted(blobs.members) == [1, 2, 10]
    for target, member in blobs.members.items():
        assert member.size == len(masks[target]) and member.name == f"{D_BIN}_{target:05d}.png"
        assert blob_bytes(data, member) == masks[target]
        raw = data[member.offset:member.offset + member.stored_size]
        assert inflate(member, raw) == masks[target]
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert z.read(member.name) == masks[target]
    stored = blobs.members[1]
    assert data[stored.offset:stored.offset + stored.size] == masks[1]  # a plain byte range


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_blob_members_left_out_with_one_line():
    mask = png(4, 4, 255)
    data = blobs_zip([(f"{D_BIN}_00001.png", mask, zipfile.ZIP_STORED),
                      (f"{D_BIN}_00001.png", mask, zipfile.ZIP_STORED),
                      (f"{I_BIN}_00002.png", mask, zipfile.ZIP_STORED),
                      (f"{D_BIN}_0003.png", mask, zipfile.ZIP_STORED),
                      ("__MACOSX/._x", b"junk", zipfile.ZIP_STORED),
                      (f"{D_BIN}_00004.png", mask, zipfile.ZIP_BZIP2),
                      (f"{D_BIN}_00050.png", mask, zipfile.ZIP_STORED)])
    blobs = blob_members(data, D_BIN, known_targets=range(1, 11))
    assert list(blobs.members) == [1]
    assert blobs.problem.startswith("blobs zip: 6 members left out (")
    assert "\n" not in blobs.problem
    assert blob_members(data, D_BIN).problem.startswith("blobs zip: 5 members left out")


def test_bad_central_directory():
    data = blobs_zip([(f"{D_BIN}_00001.png", png(4, 4, 1), zipfile.ZIP_DEFLATED)])
    for bad in (data[:-10], data[:len(data) // 2], b"", b"PK\x05\x06" + bytes(10), png(2, 2, 0)):
        with pytest.raises(ProductError, match="bad central directory"):
            blob_members(bad, D_BIN)


def test_damaged_member_data_never_comes_out_wrong():
    mask = png(40, 40, 200)
    data = bytearray(blobs_zip([(f"{D_BIN}_00001.png", mask, zipfile.ZIP_DEFLATED),
                                (f"{D_BIN}_00002.png", mask, zipfile.ZIP_STORED)]))
    members = blob_members(bytes(data), D_BIN).members
    for member in members.values():
        damaged = bytearray(data)
        damaged[member.offset + member.stored_size // 2] ^= 0xFF
        with pytest.raises(ProductError, match=member.name):
            blob_bytes(bytes(damaged), member)
    with pytest.raises(ProductError, match="bytes read"):
        inflate(members[1], b"short")
    # a local header moved off its place: the member lies outside, the rest still serve
    first = members[1]
    broken = bytearray(data)
    header = first.offset - 30 - len(first.name)
    broken[header:header + 4] = b"XXXX"
    blobs = blob_members(bytes(broken), D_BIN)
    assert list(blobs.members) == [2] and "lies outside the file" in blobs.problem


def test_local_extra_field_moves_the_data():
    mask = png(3, 3, 9)
    data = bytearray(blobs_zip([(f"{D_BIN}_00001.png", mask, zipfile.ZIP_STORED)]))
    member = blob_members(bytes(data), D_BIN).members[1]
    # grow the local extra field only: the central directory still says where the header is
    header = member.offset - 30 - len(member.name)
    patched = (data[:header + 28] + (4).to_bytes(2, "little") + data[header + 30:member.offset]
               + b"\x99\x99\x00\x00" + data[member.offset:])
    cd = patched.rfind(b"PK\x05\x06")
    offset = int.from_bytes(patched[cd + 16:cd + 20], "little") + 4
    patched[cd + 16:cd + 20] = offset.to_bytes(4, "little")
    moved = blob_members(bytes(patched), D_BIN).members[1]
    assert moved.offset == member.offset + 4
    assert blob_bytes(bytes(patched), moved) == mask


# --- labels as folder names ------------------------------------------------------------------
@pytest.mark.parametrize("label, name", [
    ("Diatom", "Diatom"), ("Chaetoceros spp.", "Chaetoceros spp."), ("Guinardia_delicatula", "Guinardia_delicatula"),
    ("Katodinium-like", "Katodinium-like"), ("Ciliate (other)", "Ciliate (other)"), ("Ceratium été", "Ceratium été"),
    ("a/b", "a%2Fb"), ("..", "%2E."), (".", "%2E"), (".hidden", "%2Ehidden"), ("../../etc", "%2E.%2F..%2Fetc"),
    ("nul\x00byte", "nul%00byte"), ("100%", "100%25"), ("tab\tnew\nline", "tab%09new%0Aline"), ("", "%"),
    ("a.b.", "a.b."), ("del\x7f", "del%7F"),
])
def test_safe_label(label, name):
    assert safe_label(label) == name


def test_long_labels_stay_apart():
    a, b = "x" * 300, "x" * 299 + "y"
    assert len(safe_label(a).encode()) == 255 and safe_label(a) != safe_label(b)
    assert safe_label("é" * 200).encode().__len__() <= 255
    assert safe_label("y" * 255) == "y" * 255


@settings(max_examples=300, database=None, deadline=None)
@given(st.text(max_size=80))
def test_safe_label_is_one_folder_name_and_reversible(label):
    name = safe_label(label)
    assert name and name not in (".", "..") and not name.startswith(".")
    assert "/" not in name and "\x00" not in name and len(name.encode("utf-8", "surrogatepass")) <= 255
    assert (urllib.parse.unquote(name) if name != "%" else "") == label


# --- arbitrary bytes: nothing but ProductError comes out ---------------------------------------
FUZZ = settings(max_examples=int(os.environ.get("IFCBFS_FUZZ_EXAMPLES", "200")), database=None, deadline=None)
BASE_ZIP = blobs_zip([(f"{D_BIN}_00001.png", png(12, 9, 255), zipfile.ZIP_DEFLATED),
                      (f"{D_BIN}_00002.png", png(5, 7, 0), zipfile.ZIP_STORED)])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BASE_ZIP) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(BASE_ZIP)))
def test_damaged_blob_zips(mutations, cut):
    data = bytearray(BASE_ZIP)
    for offset, value in mutations:
        data[offset] = value
    data = bytes(data[:cut])
    try:
        blobs = blob_members(data, D_BIN)
    except ProductError:
        return
    for member in blobs.members.values():
        try:
            out = blob_bytes(data, member)
        except ProductError:
            continue
        assert len(out) == member.size and zipfile.crc32(out) == member.crc


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: ("file_name,class_name\n" + t).encode()))
def test_arbitrary_annotation_csv(data):
    try:
        ann = read_manual_csv(data, D_BIN)
    except ProductError:
        return
    assert all(isinstance(k, int) and k >= 1 and isinstance(v, str) and v for k, v in ann.labels.items())
    assert ann.problem is None or "\n" not in ann.problem


@FUZZ
@given(st.text(max_size=60) | st.sampled_from([f"{D_BIN}_class_v", f"{I_BIN}_fea_v", f"{D_BIN}."]).flatmap(
    lambda p: st.text(max_size=12).map(lambda t: p + t)))
def test_arbitrary_names(name):
    p = product_kind(name)
    assert p is None or (name.startswith(p.bin_id) and isinstance(p.shown, tuple))
    features_problem(name.encode("utf-8", "surrogatepass"))
