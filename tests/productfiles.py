"""Product files for tests, written as the pipelines write them: class scores with h5py (the
dashboard's v3 and v2 layouts) and scipy.io.savemat (ifcb-analysis v5 .mat), manual annotations
(.mat and ClassiPyR CSV), features and multiblob CSVs, and blobs zips with zipfile."""
from __future__ import annotations

import csv
import importlib.util
import io
import os
import zipfile
from pathlib import Path

import pytest

from ifcbfs.core.bin import Bin
from ifcbfs.core.png import encode_png
from ifcbfs.core.source import DataRoot

HAVE_H5PY = importlib.util.find_spec("h5py") is not None
HAVE_SCIPY = importlib.util.find_spec("scipy") is not None
needs_h5py = pytest.mark.skipif(not HAVE_H5PY, reason="h5py not installed (pip install 'ifcbfs[products]')")
needs_scipy = pytest.mark.skipif(not HAVE_SCIPY, reason="scipy not installed (pip install 'ifcbfs[products]')")
LABELS = ("Asterionellopsis", "Ciliate_mix", "detritus", "unclassified")


def bins_of(root) -> dict:
    """{bin id: its model} for every bin under a data root (the images a bin serves)."""
    return {str(f.bin_id): Bin.load(f) for f in DataRoot(str(root)).walk()}


def scores_for(targets, labels=LABELS, seed=0):
    """A deterministic score matrix (ROIs x labels) whose winners cycle through the labels."""
    import numpy as np
    rng = np.random.RandomState(seed)
    scores = rng.rand(len(targets), len(labels)) * 0.5
    for i in range(len(targets)):
        scores[i, (i * 7 + seed) % len(labels)] += 0.5
    return scores


def write_h5(path, *, scores, labels, rois, layout=3, class_name=None) -> Path:
    import h5py
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("output_scores" if layout == 3 else "scores", data=scores)
        if layout == 2:
            ds.attrs["class_labels"] = [s.encode() for s in labels]
        else:
            f.create_dataset("class_labels", data=[s.encode() for s in labels], dtype=h5py.string_dtype("ascii"))
        f.create_dataset("roi_numbers", data=list(rois))
        if class_name is not None:
            f.create_dataset("class_name", data=[s.encode() for s in class_name], dtype=h5py.string_dtype())
    return path


def cells(strings):
    import numpy as np
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out.flat[i] = s
    return out


def write_mat(path, **variables) -> Path:
    import scipy.io
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables, format="5")
    return path


def write_class_mat(path, *, scores, labels, rois, thresholded=None) -> Path:
    import numpy as np
    variables = {"TBscores": scores, "class2useTB": cells(list(labels)), "roinum": np.array(rois, dtype=float).reshape(-1, 1)}
    if thresholded is not None:
        variables["TBclass_above_threshold"] = cells(list(thresholded))
    return write_mat(path, **variables)


def write_manual_mat(path, labels: dict[int, int], names) -> Path:
    """ifcb-analysis manual file: classlist rows (roi, class index, auto class)."""
    import numpy as np
    rows = [[roi, index, float("nan")] for roi, index in sorted(labels.items())]
    return write_mat(path, classlist=np.array(rows, dtype=float), class2use_manual=cells(list(names)))


def write_manual_csv(path, bin_id: str, labels: dict[int, str]) -> Path:
    """ClassiPyR/iRfcb file: file_name,class_name, quoted as R's write.csv does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(["file_name", "class_name"])
    for target, label in sorted(labels.items()):
        w.writerow([f"{bin_id}_{target:05d}.png", label])
    path.write_text(buf.getvalue())
    return path


def mask_png(target: int, width: int = 7, height: int = 5) -> bytes:
    """A small mask PNG whose pixels depend on its target."""
    return encode_png(width, height, bytes((target * 31 + i) % 2 * 255 for i in range(width * height)))


def write_blobs(path, bin_id: str, targets, *, junk: bool = False) -> dict[int, bytes]:
    """A blobs zip (stored and deflated members alternating); returns {target: PNG bytes}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pngs = {t: mask_png(t) for t in targets}
    with zipfile.ZipFile(path, "w") as z:
        for i, (t, data) in enumerate(sorted(pngs.items())):
            z.writestr(zipfile.ZipInfo(f"{bin_id}_{t:05d}.png", (2024, 6, 1, 0, 0, 0)), data,
                       zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
        if junk:
            z.writestr("notes.txt", b"not a mask")
            z.writestr(f"{bin_id}_99999.png", mask_png(99999))  # a target the ADC does not have
    return pngs


def write_features(path, targets, roi_column="roi_number") -> bytes:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (f"{roi_column},Area,Biovolume\r\n" + "".join(f"{t},{t * 10},{t * 1.5}\r\n" for t in targets)).encode()
    path.write_bytes(data)
    return data


def classified(root, products, bins: dict, *, seed=0, labels=LABELS, every=1) -> dict[str, dict[int, str]]:
    """A `{bin}_class.h5` for every `every`-th bin, scoring its images; returns the winning
    label of each image, per bin (what by-class shows)."""
    out = {}
    for n, (bin_id, model) in enumerate(sorted(bins.items())):
        if n % every:
            continue
        targets = [im.target for im in model.images]
        scores = scores_for(targets, labels, seed + n)
        write_h5(Path(products) / bin_id[:9] / f"{bin_id}_class.h5", scores=scores, labels=labels, rois=targets)
        out[bin_id] = {t: labels[int(scores[i].argmax())] for i, t in enumerate(targets)}
    return out


def counts(assigned: dict[str, dict[int, str]]) -> dict[str, int]:
    """Images per label."""
    total: dict[str, int] = {}
    for labels in assigned.values():
        for label in labels.values():
            total[label] = total.get(label, 0) + 1
    return total


def set_mtime(root, mtime) -> None:
    """Every file and folder under root gets `mtime` (rsync compares whole seconds)."""
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            os.utime(os.path.join(folder, name), (mtime, mtime))
    os.utime(root, (mtime, mtime))
