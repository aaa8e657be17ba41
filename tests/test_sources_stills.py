"""Still-image dataset parsers on fabricated trees in each real layout (DATASETS.md §2-4, 8, 11).

Every test asserts exact counts per class / subject / official split, and the exact list of
skipped files with their reasons: nothing under a root may go unreported.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fer.data.manifest import COLUMNS
from fer.data.sources import affectnet, faces, fer2013, folder, jaffe, kdef, rafdb
from fer.data.sources.layout import layout_error
from fer.errors import ConfigError, DataError

# ------------------------------------------------------------------------------ helpers


def _img(path: Path, channels: int = 1, value: int = 128) -> Path:
    """Write a tiny 8×8 image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (8, 8) if channels == 1 else (8, 8, channels)
    assert cv2.imwrite(str(path), np.full(shape, value, np.uint8)), path
    return path


def _txt(path: Path, text: str = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _skips(manifest, root: Path) -> list[tuple[str, str]]:
    """Skipped (path relative to root, reason), in report order; CSV rows keep ``::<row>``."""
    out = []
    for p, r in manifest.skipped[["path", "reason"]].itertuples(index=False):
        out.append((Path(p).relative_to(root).as_posix(), r))
    return out


def _count(manifest, col: str) -> dict[str, int]:
    return dict(Counter(manifest.frame[col]))


def _check_contract(manifest, dataset: str) -> None:
    frame = manifest.frame
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert set(frame["dataset"]) == {dataset}
    assert set(frame["sequence"]) == {""} and set(frame["frame"]) == {""}
    assert frame["path"].is_unique


# -------------------------------------------------------------------------------- JAFFE


@pytest.fixture
def jaffe_root(tmp_path: Path) -> Path:
    root = tmp_path / "jaffe"
    for name in ("KA.AN1.39.tiff", "KA.AN2.40.tiff", "KA.NE1.26.tiff", "KM.DI1.17.TIFF"):
        _img(root / name)
    _img(root / "NA.FE3.219.tiff", channels=3)  # some JAFFE files are 3-channel grey
    _img(root / "NA.SU2.217.tif")  # mirrors use .tif
    _txt(root / "README_FIRST.txt")
    _txt(root / "Thumbs.db")
    _img(root / "KA.XX1.5.tiff")  # unknown expression code
    _img(root / "KA_AN1_41.tiff")  # not the grammar
    _img(root / "Angry" / "KA.AN1.39.tiff")  # mirror class folder holding a second copy
    return root


def test_jaffe_scan(jaffe_root: Path):
    m = jaffe.scan(jaffe_root)
    _check_contract(m, "jaffe")
    assert _count(m, "label") == {
        "anger": 2,
        "neutral": 1,
        "disgust": 1,
        "fear": 1,
        "surprise": 1,
    }
    assert _count(m, "subject") == {"KA": 3, "KM": 1, "NA": 2}
    row = m.frame.set_index("serial").loc["219"]
    assert (row["label"], row["subject"]) == ("fear", "NA")
    assert Path(row["path"]) == jaffe_root / "NA.FE3.219.tiff"
    with Image.open(row["path"]) as im:  # the 3-channel file is kept, converts to L fine
        assert im.mode == "RGB" and np.asarray(im.convert("L")).shape == (8, 8)
    assert "official_split" not in m.frame.columns
    assert _skips(m, jaffe_root) == [
        ("KA.AN1.39.tiff", "duplicate of Angry/KA.AN1.39.tiff"),
        ("KA.XX1.5.tiff", "unknown expression code 'XX'"),
        ("KA_AN1_41.tiff", "name does not match <subject>.<expression><n>.<serial>.tiff"),
        ("README_FIRST.txt", "not an image file"),
        ("Thumbs.db", "system file, not data"),
    ]
    # Deterministic order: a second scan gives the same frame.
    assert m.frame.equals(jaffe.scan(jaffe_root).frame)


# -------------------------------------------------------------------------------- FACES

FACES_PEOPLE = {"004": "o_m", "116": "m_m", "168": "m_f"}


@pytest.fixture
def faces_root(tmp_path: Path) -> Path:
    root = tmp_path / "FACES"
    for pid, age_gender in FACES_PEOPLE.items():
        for expr in "adfhns":
            for pset in ("a", "b") if pid != "168" else ("a",):  # 168 lacks every _b
                _img(root / "bilder" / f"{pid}_{age_gender}_{expr}_{pset}.jpg", channels=3)
    _img(root / "bilder" / "004_o_m_x_a.jpg")
    _img(root / "bilder" / "004_o_m_a_c.jpg")
    _img(root / "bilder" / "004_q_m_a_a.jpg")
    _img(root / "bilder" / "16_y_f_a_a.jpg")
    _img(root / "bilder" / "004_o_m_a.jpg")
    _img(root / "preview" / "004_o_m_a_a.JPG")  # the same picture again, other folder
    _txt(root / "bilder" / "readme.txt")
    _txt(root / "bilder" / ".DS_Store")
    return root


def test_faces_scan(faces_root: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level("WARNING"):
        m = faces.scan(faces_root)
    _check_contract(m, "faces")
    six = ("anger", "disgust", "fear", "happiness", "neutral", "sadness")
    assert _count(m, "label") == dict.fromkeys(six, 5)
    assert "surprise" not in set(m.frame["label"])
    assert _count(m, "subject") == {"004": 12, "116": 12, "168": 6}
    assert _count(m, "picture_set") == {"a": 18, "b": 12}
    # Colliding letters are read by position: 116_m_m_f_a = middle-aged male, fear, set a.
    row = m.frame[m.frame["path"].str.endswith("116_m_m_f_a.jpg")].iloc[0]
    assert (row["subject"], row["age"], row["gender"], row["label"], row["picture_set"]) == (
        "116",
        "middle",
        "male",
        "fear",
        "a",
    )
    row = m.frame[m.frame["path"].str.endswith("168_m_f_a_a.jpg")].iloc[0]
    assert (row["age"], row["gender"], row["label"]) == ("middle", "female", "anger")
    assert faces.missing_pictures(m) == {"168": [f"{c}/b" for c in six]}
    assert "168 lacks anger/b" in caplog.text
    assert _skips(m, faces_root) == [
        ("bilder/.DS_Store", "system file, not data"),
        ("bilder/004_o_m_a.jpg", f"name does not match {faces.GRAMMAR}"),
        ("bilder/004_o_m_a_c.jpg", "unknown picture set 'c' (field 5)"),
        ("bilder/004_o_m_x_a.jpg", "unknown expression code 'x' (field 4)"),
        ("bilder/004_q_m_a_a.jpg", "unknown age code 'q' (field 2)"),
        ("bilder/16_y_f_a_a.jpg", "person id '16' is not 3 digits"),
        ("bilder/readme.txt", "not an image file"),
        ("preview/004_o_m_a_a.JPG", "duplicate of bilder/004_o_m_a_a.jpg"),
    ]


# ------------------------------------------------------------------------------ FER2013


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)


def _pix_str(a: np.ndarray) -> str:
    return " ".join(map(str, a.ravel().tolist()))


def _write_csv(path: Path, header: list[str], rows: list[dict], space: bool = False) -> Path:
    """A FER2013 CSV; `space`: ", " after every comma (icml_face_data.csv style)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        if space:
            f.write(", ".join(header) + "\n")
            for r in rows:
                f.write(", ".join(r[h.strip().lower()] for h in header) + "\n")
        else:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            for r in rows:
                w.writerow([r[h.strip().lower()] for h in header])
    return path


GOOD = [  # (emotion, Usage, seed)
    ("0", "Training", 0),
    ("3", "Training", 1),
    ("3", "Training", 2),
    ("6", "PublicTest", 3),
    ("4", "PrivateTest", 4),
    ("1", "PrivateTest", 5),
]


def _fer_rows() -> list[dict]:
    rows = [{"emotion": e, "usage": u, "pixels": _pix_str(_pixels(s))} for e, u, s in GOOD]
    ok = _pix_str(_pixels(9))
    rows.insert(2, {"emotion": "3", "usage": "Training", "pixels": ok.rsplit(" ", 1)[0]})
    rows.append({"emotion": "7", "usage": "Training", "pixels": ok})
    rows.append({"emotion": "2", "usage": "Foo", "pixels": ok})
    rows.append({"emotion": "2", "usage": "Training", "pixels": "1 2 x" + ok[5:]})
    rows.append({"emotion": "2", "usage": "Training", "pixels": "256" + ok[ok.index(" ") :]})
    return rows


BAD_ROWS = [  # data row index in the CSV -> reason
    (2, "2303 pixel values, expected 2304 (48×48)"),
    (7, "unknown emotion code '7'"),
    (8, "unknown Usage 'Foo'"),
    (9, "pixels are not space-separated integers"),
    (10, "pixel value outside 0..255"),
]
GOOD_ROWS = [0, 1, 3, 4, 5, 6]  # data rows of GOOD, in order


@pytest.mark.parametrize(
    ("name", "header", "space"),
    [
        ("fer2013.csv", ["emotion", "pixels", "Usage"], False),
        ("icml_face_data.csv", ["emotion", " Usage", " pixels"], True),
    ],
)
def test_fer2013_csv(tmp_path: Path, name: str, header: list[str], space: bool):
    root = tmp_path / "fer"
    csv_path = _write_csv(root / "fer2013" / name, header, _fer_rows(), space=space)
    _txt(root / "fer2013" / "README")
    fer2013._table.cache_clear()
    m = fer2013.scan(root)
    _check_contract(m, "fer2013")
    assert list(m.frame["path"]) == [f"{csv_path}::{i}" for i in GOOD_ROWS]
    assert list(m.frame["label"]) == [
        "anger",
        "happiness",
        "happiness",
        "neutral",
        "sadness",
        "disgust",
    ]
    assert _count(m, "official_split") == {"train": 3, "val": 1, "test": 2}
    assert set(m.frame["subject"]) == {""}
    assert _skips(m, root) == [
        ("fer2013/README", "not an image file"),
        *[(f"fer2013/{name}::{i}", r) for i, r in BAD_ROWS],
    ]
    # Pixels come back exactly, from one parse of the CSV.
    for path, (_, _, seed) in zip(m.frame["path"], GOOD, strict=True):
        got = fer2013.load_pixels(path)
        assert got.dtype == np.uint8 and got.shape == (48, 48)
        np.testing.assert_array_equal(got, _pixels(seed))
    assert fer2013._table.cache_info().misses == 1
    with pytest.raises(DataError, match="row has no valid pixels"):
        fer2013.load_pixels(f"{csv_path}::2")
    # A CSV file given directly as the root.
    assert fer2013.scan(csv_path, variant="csv").frame.equals(m.frame)


def test_fer2013_csv_precedence(tmp_path: Path):
    """Two releases of the same data: fer2013.csv is read, the others are reported."""
    root = tmp_path / "fer"
    rows = [{"emotion": "0", "usage": "Training", "pixels": _pix_str(_pixels(0))}]
    _write_csv(root / "icml_face_data.csv", ["emotion", " Usage", " pixels"], rows, space=True)
    _write_csv(root / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    _write_csv(root / "test.csv", ["pixels"], rows)
    _img(root / "train" / "angry" / "Training_1.jpg")
    m = fer2013.scan(root)
    assert len(m) == 1 and m.frame["path"][0].endswith("fer2013.csv::0")
    assert _skips(m, root) == [
        ("icml_face_data.csv", "a FER2013 release; fer2013.csv is read instead"),
        ("test.csv", "CSV without an emotion column (unlabelled test set)"),
        ("train/angry/Training_1.jpg", "FER2013 CSV fer2013.csv is read instead of image files"),
    ]
    # variant="folder" reads the images and reports the CSVs instead.
    f = fer2013.scan(root, variant="folder")
    assert list(f.frame["label"]) == ["anger"]
    assert [r for _, r in _skips(f, root)] == [
        "a FER2013 release; variant='folder' reads images only",
        "a FER2013 release; variant='folder' reads images only",
        "CSV without an emotion column (unlabelled test set); variant='folder' reads images only",
    ]


def test_fer2013_folder(tmp_path: Path):
    root = tmp_path / "msambare"
    for rel in (
        "train/angry/Training_3908.jpg",
        "train/happy/Training_1206.jpg",
        "train/Happy/Training_7.jpg",  # case-insensitive class folder
        "test/happy/PublicTest_5.jpg",
        "test/sad/PrivateTest_5.jpg",
        "test/surprised/PrivateTest_94416517.jpg",  # the other mirror's spelling
        "test/neutral/img_1.jpg",
        "train/fear/PublicTest_9.jpg",
        "test/contempt/PrivateTest_8.jpg",
        "train/happy/._Training_1.jpg",
        "Training_2.jpg",
    ):
        _img(root / rel)
    _txt(root / "train" / "Thumbs.db")
    m = fer2013.scan(root)
    _check_contract(m, "fer2013")
    assert _count(m, "label") == {"anger": 1, "happiness": 3, "sadness": 1, "surprise": 1}
    assert _count(m, "official_split") == {"train": 3, "val": 1, "test": 2}
    split_of = {
        Path(p).name: s for p, s in zip(m.frame["path"], m.frame["official_split"], strict=True)
    }
    assert split_of["PublicTest_5.jpg"] == "val" and split_of["PrivateTest_5.jpg"] == "test"
    assert _skips(m, root) == [
        ("Training_2.jpg", "not in a FER2013 class folder (parent 'msambare')"),
        ("test/contempt/PrivateTest_8.jpg", "not in a FER2013 class folder (parent 'contempt')"),
        (
            "test/neutral/img_1.jpg",
            "test/ mixes PublicTest and PrivateTest and the name has no "
            "PublicTest_/PrivateTest_ prefix: official split unknown",
        ),
        ("train/Thumbs.db", "system file, not data"),
        ("train/fear/PublicTest_9.jpg", "name prefix PublicTest_ contradicts split folder train/"),
        ("train/happy/._Training_1.jpg", "macOS metadata file, not data"),
    ]


def test_fer2013_bad_variant(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"data\.source\.variant"):
        fer2013.scan(tmp_path, variant="npz")


# ------------------------------------------------------------------------------- RAF-DB


def _rafdb_tree(root: Path, lines: str) -> Path:
    base = root / "basic"
    _txt(base / "EmoLabel" / "list_patition_label.txt", lines)
    for n in ("train_00001", "train_00002", "test_0001", "test_0002", "train_00003"):
        _img(base / "Image" / "original" / f"{n}.jpg", channels=3)
        if n != "train_00003":
            _img(base / "Image" / "aligned" / f"{n}_aligned.jpg", channels=3)
    _img(base / "Image" / "aligned" / "extra_aligned.jpg")
    _txt(base / "Annotation" / "boundingbox" / "train_00001.txt")
    _txt(root / "compound" / "EmoLabel" / "list_patition_label.txt", "train_0001.jpg 11\n")
    return base


def test_rafdb_scan(tmp_path: Path):
    root = tmp_path / "RAF-DB"
    lines = (
        "train_00001.jpg 5\ntrain_00002.jpg 1\ntest_0001.jpg 7\ntest_0002.jpg 8\n"
        "train_00003.jpg 4\nbogus\n\n"
    )
    _rafdb_tree(root, lines)
    m = rafdb.scan(root)
    _check_contract(m, "rafdb")
    assert list(m.frame["label"]) == ["sadness", "surprise", "neutral"]
    assert [Path(p).name for p in m.frame["path"]] == [
        "train_00001_aligned.jpg",
        "train_00002_aligned.jpg",
        "test_0001_aligned.jpg",
    ]
    assert _count(m, "official_split") == {"train": 2, "test": 1}
    lst = "basic/EmoLabel/list_patition_label.txt"
    not_read = f"not read: RAF-DB basic uses {lst} and basic/Image/aligned/"
    assert _skips(m, root) == [
        (f"{lst}::3", "unknown label code '8'"),
        (f"{lst}::4", "image train_00003_aligned.jpg not found in basic/Image/aligned/"),
        (f"{lst}::5", "expected '<name> <label>' or '<name> <train|test> <label>'"),
        ("basic/Annotation/boundingbox/train_00001.txt", not_read),
        ("basic/Image/aligned/extra_aligned.jpg", "not in list_patition_label.txt"),
        (
            "basic/Image/aligned/test_0002_aligned.jpg",
            "its line list_patition_label.txt::3 was skipped (unknown label code '8')",
        ),
        *[
            (f"basic/Image/original/{n}.jpg", not_read)
            for n in ("test_0001", "test_0002", "train_00001", "train_00002", "train_00003")
        ],
        ("compound/EmoLabel/list_patition_label.txt", not_read),
    ]
    # The original images, from the same list.
    o = rafdb.scan(root / "basic", images="original")
    assert [Path(p).name for p in o.frame["path"]] == [
        "train_00001.jpg",
        "train_00002.jpg",
        "test_0001.jpg",
        "train_00003.jpg",
    ]


def test_rafdb_three_columns_and_repack(tmp_path: Path):
    root = tmp_path / "raf3"
    _rafdb_tree(root, "train_00001.jpg\ttrain\t5\ntest_0001.jpg\ttrain\t7\n")
    m = rafdb.scan(root)
    assert list(m.frame["label"]) == ["sadness"]
    lst = "basic/EmoLabel/list_patition_label.txt"
    assert _skips(m, root)[0] == (
        f"{lst}::1",
        "split column 'train' contradicts the name prefix test_",
    )
    kag = tmp_path / "kaggle" / "DATASET"
    _img(kag / "train" / "5" / "train_00001_aligned.jpg")
    _img(kag / "test" / "7" / "test_0001_aligned.jpg")
    _img(kag / "test" / "7" / "train_00009_aligned.jpg")
    _img(kag / "train" / "9" / "train_00002_aligned.jpg")
    k = rafdb.scan(kag.parent)
    assert list(k.frame["label"]) == ["neutral", "sadness"]
    assert list(k.frame["official_split"]) == ["test", "train"]
    assert _skips(k, kag.parent) == [
        (
            "DATASET/test/7/train_00009_aligned.jpg",
            "name prefix train_ contradicts split folder test/",
        ),
        ("DATASET/train/9/train_00002_aligned.jpg", "not in a <train|test>/<1..7>/ folder"),
    ]


# --------------------------------------------------------------------------------- KDEF


def test_kdef_scan(tmp_path: Path):
    root = tmp_path / "KDEF_and_AKDEF" / "KDEF"
    for rel in (
        "AF01/AF01AFS.JPG",  # session A, female 01, *afraid*, straight
        "AF01/AF01ANS.JPG",
        "AF01/AF01HAHL.JPG",
        "BF01/BF01NES.JPG",  # session B: same person F01
        "AM02/AM02SUS.JPG",
        "AF01/AM02DIS.JPG",  # misnamed or misfiled
        "AF01/AF01XXS.JPG",
        "AF01/AF01ANS_copy.JPG",
    ):
        _img(root / rel)
    _txt(root / "AF01" / "Thumbs.db")
    m = kdef.scan(root.parent)
    _check_contract(m, "kdef")
    assert _count(m, "label") == {"fear": 1, "anger": 1, "neutral": 1, "surprise": 1}
    assert _count(m, "subject") == {"F01": 3, "M02": 1}
    assert _count(m, "session") == {"A": 3, "B": 1}
    assert set(m.frame["view"]) == {"S"}
    assert _skips(m, root.parent) == [
        ("KDEF/AF01/AF01ANS_copy.JPG", f"name does not match {kdef.GRAMMAR}"),
        ("KDEF/AF01/AF01HAHL.JPG", "view HL not selected (views=['S'])"),
        ("KDEF/AF01/AF01XXS.JPG", "unknown expression code 'XX'"),
        ("KDEF/AF01/AM02DIS.JPG", "name says AM02 but the folder is AF01/"),
        ("KDEF/AF01/Thumbs.db", "system file, not data"),
    ]
    both = kdef.scan(root, views=["S", "hl"])
    assert _count(both, "view") == {"S": 4, "HL": 1}
    with pytest.raises(ConfigError, match=r"data\.source\.views"):
        kdef.scan(root, views=("S", "XX"))


# ---------------------------------------------------------------------------- AffectNet

AFFECT_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
    "expression,valence,arousal"
)


def _affect_line(sub: str, expr: str) -> str:
    return f"{sub},10,10,50,50,1.0;2.0;3.0;4.0,{expr},0.5,-0.2"


def test_affectnet_scan(tmp_path: Path):
    root = tmp_path / "AffectNet"
    imgs = root / "Manually_Annotated" / "Manually_Annotated_Images"
    for sub in ("1/a.jpg", "1/b.jpg", "2/c.jpg", "2/d.jpg", "3/e.jpg", "3/f.png", "3/g.jpg"):
        _img(imgs / sub)
    _img(root / "Automatically_Annotated" / "Automatically_Annotated_Images" / "1" / "z.jpg")
    lists = root / "Manually_Annotated_file_lists"
    train_lines = [
        AFFECT_HEADER,
        _affect_line("1/a.jpg", "1"),
        _affect_line("1/b.jpg", "7"),
        _affect_line("2/c.jpg", "8"),
        _affect_line("2/d.jpg", "6"),
        _affect_line("9/missing.jpg", "3"),
        "1/a.jpg,10",
    ]
    _txt(lists / "training.csv", "\n".join(train_lines) + "\n")
    # validation.csv without a header line: read in the standard column order.
    val_lines = [_affect_line("3/e.jpg", "0"), _affect_line("3/f.png", "10")]
    _txt(lists / "validation.csv", "\n".join(val_lines) + "\n")
    _txt(root / "Automatically_Annotated" / "automatically_annotated.csv", AFFECT_HEADER + "\n")
    m = affectnet.scan(root)
    _check_contract(m, "affectnet")
    assert list(m.frame["label"]) == ["happiness", "contempt", "anger", "neutral"]
    assert list(m.frame["official_split"]) == ["train", "train", "train", "val"]
    assert m.frame["path"][0] == str(imgs / "1" / "a.jpg")
    tr = "Manually_Annotated_file_lists/training.csv"
    va = "Manually_Annotated_file_lists/validation.csv"
    not_read = "not read (AffectNet reads the manual annotation lists and their images)"
    assert _skips(m, root) == [
        (f"{tr}::2", "expression 8 (None) is not an emotion class"),
        (
            f"{tr}::4",
            "image 9/missing.jpg not found under Manually_Annotated/Manually_Annotated_Images/",
        ),
        (f"{tr}::5", "expected 9 fields, got 2"),
        (f"{va}::1", "expression 10 (No-Face) is not an emotion class"),
        (
            "Automatically_Annotated/Automatically_Annotated_Images/1/z.jpg",
            "not in training.csv or validation.csv",
        ),
        ("Automatically_Annotated/automatically_annotated.csv", not_read),
        (
            "Manually_Annotated/Manually_Annotated_Images/2/c.jpg",
            "its row training.csv::2 was skipped (expression 8 (None) is not an emotion class)",
        ),
        (
            "Manually_Annotated/Manually_Annotated_Images/3/f.png",
            "its row validation.csv::1 was skipped "
            "(expression 10 (No-Face) is not an emotion class)",
        ),
        (
            "Manually_Annotated/Manually_Annotated_Images/3/g.jpg",
            "not in training.csv or validation.csv",
        ),
    ]


def test_affectnet_mirror(tmp_path: Path):
    root = tmp_path / "affectnet_kaggle"
    for rel in ("train/0/a.jpg", "train/happy/b.jpg", "val/7/c.jpg", "misc/1/d.jpg"):
        _img(root / rel)
    m = affectnet.scan(root)
    assert list(m.frame["label"]) == ["neutral", "happiness", "contempt"]
    assert list(m.frame["official_split"]) == ["train", "train", "val"]
    assert _skips(m, root) == [("misc/1/d.jpg", "not in a <train|val|test>/<class>/ folder")]


# ------------------------------------------------------------------------------- folder


def test_folder_scan(tmp_path: Path):
    root = tmp_path / "mydata"
    for rel in (
        "Happy/S01_1.png",
        "HAPPINESS/S02_1.png",
        "angry/S02_2.png",
        "Sadness/take1/S03_x.png",
        "Sadness/noid.png",
        "weird/S01_2.png",
        "loose.png",
    ):
        _img(root / rel)
    _txt(root / "Happy" / "notes.txt")
    m = folder.scan(
        root, subject_regex=r"/(S\d+)_", aliases={"Happy": "happiness", "angry": "anger"}
    )
    _check_contract(m, "folder")
    assert _count(m, "label") == {"happiness": 2, "anger": 1, "sadness": 1}
    assert _count(m, "subject") == {"S01": 1, "S02": 2, "S03": 1}
    assert _skips(m, root) == [
        ("Happy/notes.txt", "not an image file"),
        ("Sadness/noid.png", "subject_regex '/(S\\\\d+)_' does not match"),
        ("loose.png", "not inside a class folder"),
        ("weird/S01_2.png", "unknown class folder 'weird'"),
    ]
    # No regex: subjects "", the dataset column as configured.
    plain = folder.scan(root, aliases={"happy": "happiness"}, dataset="mine")
    assert set(plain.frame["subject"]) == {""} and set(plain.frame["dataset"]) == {"mine"}
    assert _count(plain, "label") == {"happiness": 2, "sadness": 2}
    with pytest.raises(ConfigError, match="no group"):
        folder.scan(root, subject_regex=r"S\d+")
    with pytest.raises(ConfigError, match="not a canonical class"):
        folder.scan(root, aliases={"happy": "joy"})


# ------------------------------------------------------------------------ wrong roots

PARSERS = [
    ("faces", faces.scan, faces.EXPECTED),
    ("jaffe", jaffe.scan, jaffe.EXPECTED),
    ("fer2013", fer2013.scan, fer2013.EXPECTED),
    ("rafdb", rafdb.scan, rafdb.EXPECTED),
    ("kdef", kdef.scan, kdef.EXPECTED),
    ("affectnet", affectnet.scan, affectnet.EXPECTED),
    ("folder", folder.scan, None),
]


@pytest.mark.parametrize(("name", "scan", "expected"), PARSERS, ids=[p[0] for p in PARSERS])
def test_wrong_root_gives_the_layout_message(tmp_path: Path, name, scan, expected):
    root = tmp_path / "not_a_dataset"
    _img(root / "holiday.jpg")
    _txt(root / "notes.txt")
    with pytest.raises(DataError, match=f"does not look like {name}: expected") as e:
        scan(root)
    if expected is not None:
        assert str(e.value) == str(layout_error(name, root, expected))
    with pytest.raises(DataError, match="is not a directory"):
        scan(tmp_path / "missing")
