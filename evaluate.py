"""Evaluate finished runs: `python evaluate.py runs='outputs/<name>/*' eval.datasets=[...]`."""

import hydra
from omegaconf import DictConfig

from fer.cli import run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from fer.evaluate import evaluate

    run_job(evaluate, cfg)


if __name__ == "__main__":
    main()
