"""Parsers of the sequence datasets (Oulu-CASIA, CK+, MUG) and TFEID on fabricated trees.

Trees follow ../shared/DATASETS.md §11: real folder/file names and cases, label files, decoys that
must be reported, wrapper folders. Images are 8x8 so the whole file runs in about a second.
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fer.data.manifest import Manifest
from fer.data.sources import ckplus, mug, oulu_casia, tfeid
from fer.errors import ConfigError, DataError

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


# -- helpers ---------------------------------------------------------------------------------
def img(path: Path, color: bool = False) -> Path:
    """An 8x8 image (grey, or BGR when `color`) at `path`, folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (8, 8, 3) if color else (8, 8)
    assert cv2.imwrite(str(path), np.full(shape, 128, np.uint8))
    return path


def text(path: Path, content: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def skips(m: Manifest, root: Path) -> list[tuple[str, str]]:
    """The skipped report as (path relative to `root`, reason)."""
    return [(Path(p).relative_to(root).as_posix(), r) for p, r in m.skipped.itertuples(index=False)]


def counts(m: Manifest, col: str) -> dict[str, int]:
    return dict(Counter(m.frame[col]))


# -- Oulu-CASIA ------------------------------------------------------------------------------
#: Frames per (subject, expression); None = empty folder; absent = missing folder.
OULU = {
    "P001": {"Anger": 4, "Disgust": 5, "Fear": 6, "Happiness": 4, "Sadness": 7, "Surprise": 4},
    "P002": {"Anger": 5, "Disgust": 4, "Fear": None, "Happiness": 6, "Sadness": 4, "Surprise": 5},
    "P003": {"Anger": 4, "Disgust": 4, "Fear": 4, "Happiness": 4, "Sadness": 5},
}


def make_oulu(base: Path, spec: dict = OULU) -> None:
    """`base` = the `<system>/<illumination>` folder."""
    for subject, seqs in spec.items():
        for expr, n in seqs.items():
            (base / subject / expr).mkdir(parents=True)
            for i in range(n or 0):
                img(base / subject / expr / f"{i:03d}.jpeg")


@pytest.fixture
def oulu(tmp_path: Path) -> Path:
    """Set B and set C side by side, other illuminations/systems, decoys."""
    root = tmp_path / "oulu"
    vl = root / "OriginalImg" / "VL" / "Strong"
    make_oulu(vl)
    text(vl / "P001" / "Anger" / "Thumbs.db")
    text(vl / "P001" / "Anger" / "notes.txt")
    img(vl / "P002" / "Happy" / "000.jpeg")  # not an Oulu folder name
    img(vl / "X01" / "Anger" / "000.jpeg")
    img(vl / "P003" / "Anger" / "000 (copy).jpeg")
    text(vl / "readme.txt")
    text(root / "OriginalImg" / "change_log.txt")
    # Other illumination, other system, cropped set: excluded by options, never reported.
    img(root / "OriginalImg" / "VL" / "Weak" / "P001" / "Anger" / "000.jpeg")
    img(root / "OriginalImg" / "NI" / "Strong" / "P001" / "Anger" / "000.jpeg")
    make_oulu(root / "PreProcessImg" / "VL_Acropped" / "Strong", {"P001": {"Anger": 4}})
    return root


OULU_SKIPS = [
    ("OriginalImg/VL/Strong/P001/Anger/Thumbs.db", "junk file"),
    ("OriginalImg/VL/Strong/P001/Anger/notes.txt", "not an image"),
    ("OriginalImg/VL/Strong/P002/Fear", "empty sequence"),
    ("OriginalImg/VL/Strong/P002/Happy/000.jpeg", "unknown expression folder 'Happy'"),
    ("OriginalImg/VL/Strong/P003/Anger/000 (copy).jpeg", "frame name is not NNN.jpeg"),
    ("OriginalImg/VL/Strong/P003/Surprise", "missing sequence (no folder)"),
    ("OriginalImg/VL/Strong/X01/Anger/000.jpeg", "unknown subject folder 'X01'"),
    ("OriginalImg/VL/Strong/readme.txt", "not in a P<NNN>/<Expression> folder"),
    ("OriginalImg/change_log.txt", "outside VL/Strong"),
]


def test_oulu_all_frames(oulu: Path) -> None:
    m = oulu_casia.scan(oulu)
    assert len(m) == 75
    assert m.counts() == {
        "anger": 13,
        "disgust": 13,
        "fear": 10,
        "happiness": 14,
        "sadness": 16,
        "surprise": 9,
    }
    assert counts(m, "subject") == {"P001": 30, "P002": 24, "P003": 21}
    assert set(m.frame["dataset"]) == {"oulu_casia"}
    assert all("/OriginalImg/VL/Strong/" in p for p in m.frame["path"])
    seq = m.frame[m.frame["sequence"] == "P001/Sadness"]
    assert list(seq["frame"]) == ["000", "001", "002", "003", "004", "005", "006"]
    assert skips(m, oulu) == OULU_SKIPS


def test_oulu_apex_and_neutral(oulu: Path) -> None:
    m = oulu_casia.scan(oulu, frames="apex", n_apex=3)
    # 16 sequences on disk (P002/Fear empty, P003/Surprise missing), 3 frames each.
    assert len(m) == 48
    assert m.counts() == {
        "anger": 9,
        "disgust": 9,
        "fear": 6,
        "happiness": 9,
        "sadness": 9,
        "surprise": 6,
    }
    assert counts(m, "subject") == {"P001": 18, "P002": 15, "P003": 15}
    seq = m.frame[m.frame["sequence"] == "P001/Sadness"]
    assert list(seq["frame"]) == ["004", "005", "006"]
    assert skips(m, oulu) == OULU_SKIPS

    m = oulu_casia.scan(oulu, frames="apex", n_apex=3, neutral=True)
    assert len(m) == 64 and m.counts()["neutral"] == 16
    seq = m.frame[m.frame["sequence"] == "P001/Sadness"]
    assert list(zip(seq["frame"], seq["label"], strict=True)) == [
        ("000", "neutral"),
        ("004", "sadness"),
        ("005", "sadness"),
        ("006", "sadness"),
    ]
    # With every frame, the first one is relabelled neutral, never counted twice.
    m = oulu_casia.scan(oulu, neutral=True)
    assert len(m) == 75 and m.counts()["neutral"] == 16 and m.counts()["sadness"] == 13


def test_oulu_variants_and_systems(oulu: Path) -> None:
    m = oulu_casia.scan(oulu, variant="cropped")
    assert len(m) == 4 and set(m.frame["sequence"]) == {"P001/Anger"}
    assert all("/VL_Acropped/Strong/" in p for p in m.frame["path"])
    assert ("OriginalImg/change_log.txt", "outside VL_Acropped/Strong") in skips(m, oulu)
    m = oulu_casia.scan(oulu, illumination="Weak")
    assert len(m) == 1 and m.frame["subject"][0] == "P001"


@pytest.mark.parametrize(
    "wrapper",
    [
        "B_OriginalImg/VL/Strong",  # archive name kept, OriginalImg level dropped
        "B_OriginalImg/B_OriginalImg/OriginalImg/VL/Strong",  # double-nested unzip
        "Oulu_CASIA_NIR_VIS/VL/Strong",  # Kaggle mirror
        "VL/Strong",  # root = the OriginalImg folder
    ],
)
def test_oulu_wrappers(tmp_path: Path, wrapper: str) -> None:
    make_oulu(tmp_path / wrapper, {"P007": {"Fear": 9, "Surprise": 4}})
    m = oulu_casia.scan(tmp_path, frames="apex", n_apex=2)
    assert list(m.frame["sequence"]) == ["P007/Fear"] * 2 + ["P007/Surprise"] * 2
    assert list(m.frame["frame"]) == ["007", "008", "002", "003"]
    assert list(m.frame["label"]) == ["fear", "fear", "surprise", "surprise"]
    assert skips(m, tmp_path) == [
        (f"{wrapper}/P007/{e}", "missing sequence (no folder)")
        for e in ("Anger", "Disgust", "Happiness", "Sadness")
    ]
    # The root may also be the VL/Strong folder itself.
    assert len(oulu_casia.scan(tmp_path / wrapper, frames="apex", n_apex=2)) == 4


def test_oulu_errors(tmp_path: Path, oulu: Path) -> None:
    expected = re.escape("expected <root>/.../VL/Strong/P001/Anger/000.jpeg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=expected):
        oulu_casia.scan(tmp_path / "empty")
    with pytest.raises(DataError, match="not a directory"):
        oulu_casia.scan(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"data\.source\.frames='apex3'.*\['all', 'apex'\]"):
        oulu_casia.scan(oulu, frames="apex3")
    with pytest.raises(ConfigError, match=r"data\.source\.neutral"):
        oulu_casia.scan(oulu, neutral="false")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"data\.source\.n_apex"):
        oulu_casia.scan(oulu, n_apex=0)
    with pytest.raises(ConfigError, match=r"data\.source\.system"):
        oulu_casia.scan(oulu, system="RGB")
    make_oulu(oulu / "copy" / "VL" / "Strong", {"P001": {"Anger": 4}})
    with pytest.raises(DataError, match="several copies of VL/Strong"):
        oulu_casia.scan(oulu)


# -- CK+ -------------------------------------------------------------------------------------
#: (subject, sequence) -> (frames, emotion file content or None)
CK = {
    ("S005", "001"): (6, "   3.0000000e+00\n"),  # disgust
    ("S005", "002"): (5, None),  # unlabelled
    ("S010", "001"): (4, "   2.0000000e+00\n"),  # contempt
    ("S010", "002"): (5, "   7.0000000e+00\n"),  # surprise
    ("S011", "001"): (3, "   0.0000000e+00\n"),  # neutral code: never a sequence label
}


@pytest.fixture
def ck(tmp_path: Path) -> Path:
    """Images unpacked under `CK+/`, labels in their own zip folder, companions, decoys."""
    root = tmp_path / "ck"
    images = root / "CK+" / "cohn-kanade-images"
    emotion = root / "Emotion_labels" / "Emotion"
    for (s, q), (n, label) in CK.items():
        for i in range(1, n + 1):
            # One colour frame among grey ones, as in the real set.
            img(images / s / q / f"{s}_{q}_{i:08d}.png", color=(s, q, i) == ("S010", "001", 2))
        if label is not None:
            text(emotion / s / q / f"{s}_{q}_{n:08d}_emotion.txt", label)
    text(images / "S005" / ".DS_Store")
    text(emotion / ".DS_Store")
    text(images / "S005" / "001" / "S005_001_00000006.txt")
    img(images / "S010" / "002" / "S010_001_00000009.png")  # filed under the wrong sequence
    (images / "S012" / "001").mkdir(parents=True)
    text(emotion / "S010" / "003" / "S010_003_00000004_emotion.txt", "   1.0000000e+00")
    text(emotion / "S013" / "001" / "S013_001_00000004_emotion.txt", "n/a")
    text(root / "Landmarks" / "S005" / "001" / "S005_001_00000001_landmarks.txt", "1 2")
    text(root / "CK+" / "README.txt")
    return root


CK_SKIPS = [
    ("CK+/README.txt", "outside cohn-kanade-images/ and Emotion/"),
    ("CK+/cohn-kanade-images/S005/.DS_Store", "junk file"),
    ("CK+/cohn-kanade-images/S005/001/S005_001_00000006.txt", "not an image"),
    ("CK+/cohn-kanade-images/S005/002", "unlabelled sequence"),
    (
        "CK+/cohn-kanade-images/S010/002/S010_001_00000009.png",
        "frame name is not S010_002_NNNNNNNN.png",
    ),
    ("CK+/cohn-kanade-images/S011/001", "unlabelled sequence"),
    ("CK+/cohn-kanade-images/S012/001", "empty sequence"),
    ("Emotion_labels/Emotion/.DS_Store", "junk file"),
    (
        "Emotion_labels/Emotion/S010/003/S010_003_00000004_emotion.txt",
        "emotion label without an image sequence",
    ),
    ("Emotion_labels/Emotion/S011/001/S011_001_00000003_emotion.txt", "unknown emotion code 0"),
    ("Emotion_labels/Emotion/S013/001/S013_001_00000004_emotion.txt", "unreadable emotion file"),
]


def test_ckplus_apex(ck: Path) -> None:
    m = ckplus.scan(ck)
    assert len(m) == 9
    assert m.counts() == {"disgust": 3, "surprise": 3, "contempt": 3}
    assert counts(m, "subject") == {"S005": 3, "S010": 6}
    assert set(m.frame["dataset"]) == {"ckplus"}
    rows = m.frame[m.frame["sequence"] == "S005/001"]
    assert list(rows["frame"]) == ["00000004", "00000005", "00000006"]
    assert set(rows["label"]) == {"disgust"}
    assert skips(m, ck) == CK_SKIPS


def test_ckplus_neutral_and_short_sequences(ck: Path) -> None:
    m = ckplus.scan(ck, n_apex=3, neutral=True)
    assert len(m) == 12
    assert m.counts() == {"disgust": 3, "surprise": 3, "neutral": 3, "contempt": 3}
    assert counts(m, "subject") == {"S005": 4, "S010": 8}
    # 4 frames, n_apex=5: frame 1 is neutral only, frames 2-4 the expression.
    m = ckplus.scan(ck, n_apex=5, neutral=True)
    rows = m.frame[m.frame["sequence"] == "S010/001"]
    assert list(zip(rows["frame"], rows["label"], strict=True)) == [
        ("00000001", "neutral"),
        ("00000002", "contempt"),
        ("00000003", "contempt"),
        ("00000004", "contempt"),
    ]


def test_ckplus_errors(tmp_path: Path, ck: Path, oulu: Path) -> None:
    expected = re.escape("expected <root>/.../cohn-kanade-images/S005/001/S005_001_00000001.png")
    with pytest.raises(DataError, match=expected):
        ckplus.scan(oulu)
    with pytest.raises(DataError, match=expected):
        ckplus.scan(ck / "CK+")  # images without their Emotion/ folder
    with pytest.raises(ConfigError, match=r"data\.source\.n_apex"):
        ckplus.scan(ck, n_apex=2.5)  # type: ignore[arg-type]
    (ck / "old" / "extended-cohn-kanade-images").mkdir(parents=True)
    with pytest.raises(DataError, match="several copies"):
        ckplus.scan(ck)


# -- MUG -------------------------------------------------------------------------------------
@pytest.fixture
def mug_root(tmp_path: Path) -> Path:
    root = tmp_path / "mug"
    s = root / "subjects3"
    for i in range(1, 10):
        img(s / "001" / "anger" / "take000" / f"img_{i:04d}.jpg")
    for i in range(1, 6):
        img(s / "001" / "neutral" / "take000" / f"img_{i:04d}.jpg")
    img(s / "001" / "fear" / "take003" / "img_0001.jpg")  # a 1-frame take gives 1 frame
    for i in range(101, 121):  # first frame number is not 1
        img(s / "002" / "session1" / "happiness" / "take001" / f"img_{i:04d}.jpg")
    (s / "002" / "session2" / "surprise" / "take002").mkdir(parents=True)
    img(s / "001" / "anger" / "take000end" / "img_0001.jpg")
    img(s / "001" / "Happy" / "take000" / "img_0001.jpg")
    img(s / "abc" / "anger" / "take000" / "img_0001.jpg")
    img(s / "001" / "anger" / "take000" / "thumb_0001.jpg")
    text(s / "001" / "anger" / "take000" / "info.txt")
    text(s / ".DS_Store")
    return root


def test_mug_middle_frames(mug_root: Path) -> None:
    m = mug.scan(mug_root)
    assert m.counts() == {"anger": 3, "fear": 1, "happiness": 3, "neutral": 3}
    assert counts(m, "subject") == {"001": 7, "002": 3}
    assert set(m.frame["dataset"]) == {"mug"}
    by_seq = m.frame.groupby("sequence", sort=False)["frame"].apply(list).to_dict()
    assert by_seq == {
        "001/anger/take000": ["0004", "0005", "0006"],
        "001/fear/take003": ["0001"],
        "001/neutral/take000": ["0002", "0003", "0004"],
        "002/session1/happiness/take001": ["0107", "0111", "0114"],
    }
    assert skips(m, mug_root) == [
        ("subjects3/.DS_Store", "junk file"),
        ("subjects3/001/Happy/take000/img_0001.jpg", "unknown expression folder 'Happy'"),
        ("subjects3/001/anger/take000/info.txt", "not an image"),
        ("subjects3/001/anger/take000/thumb_0001.jpg", "frame name is not img_NNNN.jpg"),
        ("subjects3/001/anger/take000end/img_0001.jpg", "not in a take<N> folder ('take000end')"),
        ("subjects3/002/session2/surprise/take002", "empty sequence"),
        ("subjects3/abc/anger/take000/img_0001.jpg", "unknown subject folder 'abc'"),
    ]
    assert len(mug.scan(mug_root, n_apex=5, window=[0.0, 1.0])) == 5 + 1 + 5 + 5


def test_mug_middle_frames_helper() -> None:
    assert mug.middle_frames(101, 1) == [50]
    assert mug.middle_frames(101, 5, (0.25, 0.75)) == [30, 40, 50, 60, 70]
    assert mug.middle_frames(2, 3) == [0, 1]
    assert mug.middle_frames(0, 3) == []


def test_mug_errors(tmp_path: Path, mug_root: Path, oulu: Path) -> None:
    with pytest.raises(DataError, match=re.escape("expected <root>/.../001/anger/take000/")):
        mug.scan(oulu)
    with pytest.raises(ConfigError, match=r"data\.source\.window"):
        mug.scan(mug_root, window=(0.8, 0.2))
    img(tmp_path / "copy" / "subjects3" / "001" / "anger" / "take000" / "img_0001.jpg")
    img(tmp_path / "copy2" / "001" / "anger" / "take000" / "img_0001.jpg")
    with pytest.raises(DataError, match="several copies"):
        mug.scan(tmp_path)


# -- TFEID -----------------------------------------------------------------------------------
@pytest.fixture
def tfeid_root(tmp_path: Path) -> Path:
    root = tmp_path / "tfeid"
    for name in ("m01_ag1.jpg", "m01_hg1.jpg", "m01_ng.jpg", "f02_sg2.jpg", "f02_pg1.jpg"):
        img(root / "high_0" / name)
    for name in ("m01_ag2.jpg", "f02_dg1.jpg", "f02_x_FG1.JPG"):
        img(root / "slight_45" / name)
    img(root / "slight_45" / "m01_cg1.jpg")  # contempt: code unknown
    img(root / "slight_45" / "m01.jpg")
    text(root / "slight_45" / "Thumbs.db")
    text(root / "readme.txt")
    return root


def test_tfeid(tfeid_root: Path) -> None:
    m = tfeid.scan(tfeid_root)
    assert m.counts() == {
        "anger": 2,
        "disgust": 1,
        "fear": 1,
        "happiness": 1,
        "sadness": 1,
        "surprise": 1,
        "neutral": 1,
    }
    assert counts(m, "subject") == {"f02": 4, "m01": 4}
    assert counts(m, "folder") == {"high_0": 5, "slight_45": 3}
    assert set(m.frame["sequence"]) == {""} and set(m.frame["frame"]) == {""}
    assert set(m.frame["dataset"]) == {"tfeid"}
    assert skips(m, tfeid_root) == [
        ("readme.txt", "not an image"),
        ("slight_45/Thumbs.db", "junk file"),
        ("slight_45/m01.jpg", "name is not <subject>_..._<code>"),
        ("slight_45/m01_cg1.jpg", "unknown expression code 'cg'"),
    ]


def test_tfeid_errors(tmp_path: Path, oulu: Path) -> None:
    with pytest.raises(DataError, match=re.escape("expected <root>/<folder>/<subject>_..._<code>")):
        tfeid.scan(oulu)
    corpora = tmp_path / "Taiwanese"
    text(corpora / "Readme.txt")
    text(corpora / "Image_Info.xls")
    img(corpora / "0111a01.jpg")
    with pytest.raises(DataError, match="Taiwan Corpora of Chinese Emotions"):
        tfeid.scan(corpora)


# -- configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "tree"),
    [("oulu_casia", "oulu"), ("ckplus", "ck"), ("mug", "mug_root"), ("tfeid", "tfeid_root")],
)
def test_data_configs(name: str, tree: str, request: pytest.FixtureRequest) -> None:
    """Each config names its parser, passes only real options, and scans its tree as is."""
    root = request.getfixturevalue(tree)
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg.name == name
    cfg.root = str(root)
    fn = instantiate(cfg.source)
    params = inspect.signature(fn.func).parameters
    assert set(cfg.source) - {"_target_", "_partial_"} <= set(params)
    m = fn()
    assert len(m) > 0 and set(m.frame["dataset"]) == {name}
    assert set(m.counts()) <= set(cfg.classes)
    assert sum(cfg.split_shares.values()) == pytest.approx(1.0)
