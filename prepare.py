"""Preprocess one dataset and print its Table 1: `python prepare.py data=jaffe data.root=...`."""

import hydra
from omegaconf import DictConfig

from fer.cli import run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    from fer.prepare import prepare

    run_job(prepare, cfg)


if __name__ == "__main__":
    main()
