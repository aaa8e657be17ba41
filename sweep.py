"""Run a whole study and write its report: `python sweep.py study=arabian2022_synthetic`.

`hydra/launcher=local|slurm` is forwarded to every stage; `sweep.dry=true` lists what would run.
"""

import hydra
from omegaconf import DictConfig

import fer.naming  # noqa: F401  (registers ${fer_run_name:...} for the stages' run dirs)


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep")
def main(cfg: DictConfig) -> None:
    from fer.sweep import main as sweep_main

    sweep_main(cfg)


if __name__ == "__main__":
    main()
