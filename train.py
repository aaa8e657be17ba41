"""Train one run, or a Hydra multirun (-m) of them: `python train.py model=vgg16 split.fold=3`."""

import hydra
from omegaconf import DictConfig

import fer.naming  # noqa: F401  (registers ${fer_run_name:...} before Hydra resolves run dirs)
from fer.cli import run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from fer.train import train

    run_job(train, cfg)


if __name__ == "__main__":
    main()
