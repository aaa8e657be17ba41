"""`prepare.py` on a fabricated JAFFE tree of real face photos: Table 1, excluded.csv, figure."""

from __future__ import annotations

from pathlib import Path

import cv2
import pandas as pd
from hydra import compose, initialize_config_dir
from skimage import data as skdata

from fer.prepare import prepare

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_prepare_jaffe_tree(tmp_path: Path) -> None:
    root = tmp_path / "jaffe"
    root.mkdir()
    face = cv2.cvtColor(cv2.resize(skdata.astronaut(), (200, 200)), cv2.COLOR_RGB2GRAY)
    for name in ("KA.HA1.29.tiff", "KA.SU1.36.tiff", "NA.AN1.211.tiff"):
        cv2.imwrite(str(root / name), face)
    cv2.imwrite(str(root / "KM.NE1.1.tiff"), face * 0)  # a blank frame: no face
    (root / "README_FIRST.txt").write_text("read me")
    overrides = [
        "data=jaffe",
        f"data.root={root}",
        "data.cache_size=64",
        "preprocess.workers=1",
        f"paths.output_root={tmp_path / 'out'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("prepare", overrides=overrides)
    result = prepare(cfg)
    out = Path(result["dir"])
    assert out.name == "jaffe-landmarks"
    table = pd.read_csv(out / "table1.csv").set_index("class")
    assert table["original"].to_dict() == {"anger": 1, "happiness": 1, "surprise": 1, "neutral": 1}
    assert table.loc["neutral", "processed"] == 0 and table["processed"].sum() == 3
    excluded = pd.read_csv(out / "excluded.csv")
    assert excluded[["class", "reason"]].values.tolist() == [["neutral", "no face"]]
    assert Path(excluded["path"][0]).name == "KM.NE1.1.tiff"
    skipped = pd.read_csv(out / "scan_skipped.csv")
    assert [Path(p).name for p in skipped["path"]] == ["README_FIRST.txt"]
    # JAFFE's faces are not shown by default (licence): no crops figure unless asked for
    assert result["figure"] is None and not (out / "crops.png").exists()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("prepare", overrides=[*overrides, "show_faces=true"])
    assert Path(prepare(cfg)["figure"]) == out / "crops.png"
    assert (out / "crops.png").stat().st_size > 10_000
