"""`prepare(cfg)`: scan and preprocess one dataset; write Table 1, excluded.csv and a figure.

Called by `prepare.py` (Hydra) so a researcher can check a dataset before training on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fer.data.preprocess import excluded_report, load_faces, settings_from, table1
from fer.io import atomic_write_text


def prepare(cfg: DictConfig) -> dict[str, Any]:
    """Preprocess `cfg.data` with `cfg.preprocess`; return paths and Table 1 as records."""
    from fer.report.plots import plot_crops

    scan = instantiate(cfg.data.source)
    manifest = scan()
    pre = OmegaConf.to_container(cfg.preprocess, resolve=True)
    settings = settings_from(pre, cfg.data, int(cfg.data.cache_size))
    out = Path(cfg.paths.prepare_root) / f"{cfg.data.name}-{settings.method}"
    faces = load_faces(
        manifest,
        settings,
        Path(cfg.paths.cache_dir) / "preprocess",
        workers=int(pre.get("workers", 1)),
        progress=bool(pre.get("progress")),
    )
    table = table1(manifest, faces)
    excluded = excluded_report(faces)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table1.csv", table.to_csv(index=False))
    atomic_write_text(out / "excluded.csv", excluded.to_csv(index=False))
    atomic_write_text(out / "scan_skipped.csv", manifest.skipped.to_csv(index=False))
    show = cfg.get("show_faces")
    show = bool(cfg.data.get("show_images", False)) if show is None else bool(show)
    figure = None
    if show:
        figure = plot_crops(
            faces.images,
            faces.masks,
            faces.frame,
            out / "crops.png",
            title=f"{cfg.data.name}: preprocess={settings.method}",
        )
    _print_table(str(cfg.data.name), settings.method, table, len(manifest.skipped))
    print(
        f"table 1:       {out / 'table1.csv'}\nexcluded:      {out / 'excluded.csv'}\n"
        + (
            f"crops figure:  {figure}"
            if figure
            else "crops figure:  not written (this dataset's faces are not shown by default: "
            "DATA_LICENSES.md; show_faces=true writes it for local inspection)"
        )
    )
    return {
        "table1": table.to_dict("records"),
        "dir": str(out),
        "figure": str(figure) if figure else None,
    }


def _print_table(name: str, method: str, table: Any, n_skipped: int) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{name} — preprocess={method} (Table 1: original vs processed)")
    for col in table.columns:
        t.add_column(str(col), justify="left" if col == "class" else "right")
    for row in table.itertuples(index=False):
        t.add_row(*(str(v) for v in row))
    total = table[["original", "processed", "unreadable", "excluded"]].sum()
    t.add_row("total", *(str(int(v)) for v in total), "", style="bold")
    Console().print(t)
    if n_skipped:
        print(f"the scan skipped {n_skipped} files it could not interpret (scan_skipped.csv)")
