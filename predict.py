"""Apply a finished run to new images: `python predict.py run=<run-dir> input=<folder|image>`."""

import hydra
from omegaconf import DictConfig

from fer.cli import run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from fer.predict import predict

    run_job(predict, cfg)


if __name__ == "__main__":
    main()
