"""Run names: deterministic, sanitised, excluding keys that cannot change a result."""

from omegaconf import OmegaConf

from fer.naming import is_non_result_key, run_name, wandb_id


def test_run_name_sorted_and_joined():
    assert run_name(["split.fold=3", "model=vgg16_se"]) == "model-vgg16_se__split.fold-3"
    assert run_name(["model=vgg16_se", "split.fold=3"]) == "model-vgg16_se__split.fold-3"


def test_run_name_excludes_non_result_prefixes():
    overrides = [
        "logger=csv",
        "logger.project=x",
        "hydra/launcher=slurm",
        "paths.cache_dir=/x",
        "eval.checkpoint=best",
        "train.force=true",
        "name=study",
        "model=vgg16",
    ]
    assert run_name(overrides) == "model-vgg16"
    assert run_name(["logger=csv"]) == "run"
    assert run_name([]) == "run"
    # train.forced is not train.force: prefixes match whole dotted components
    assert run_name(["train.forced=1"]) == "train.forced-1"


def test_run_name_sanitises_and_hashes():
    name = run_name(
        [
            "data@target=jaffe",
            "+model.attention.after_blocks=[2,3,4]",
            "init.weights_path=/a/b c.pth",
        ]
    )
    assert all(ch.isalnum() or ch in "._+-" for ch in name)
    assert "data.target-jaffe" in name
    # different values that sanitise alike never collide
    assert run_name(["x=a/b"]) != run_name(["x=a_b"])
    long = run_name(["x=" + "v" * 100])
    assert len(long) < 60


def test_non_result_keys():
    assert is_non_result_key("logger.project")
    assert is_non_result_key("++eval.cam_method")
    assert not is_non_result_key("model.name")
    assert not is_non_result_key("trainer.max_epochs")


def test_resolver_registered_and_wandb_id_safe():
    cfg = OmegaConf.create({"o": ["split.fold=1"], "d": "${fer_run_name:${o}}"})
    assert cfg.d == "split.fold-1"
    wid = wandb_id("study", "model-vgg16__split.fold-3", "train")
    assert wid == wandb_id("study", "model-vgg16__split.fold-3", "train")
    assert wid != wandb_id("study", "model-vgg16__split.fold-3", "eval")
    assert not set(wid) & set(":;,#?/'")


def test_long_names_stay_under_the_filesystem_limit():
    """Many overrides: a readable head plus a hash of the whole name, distinct per grid."""
    from fer.naming import MAX_NAME, run_name

    many = [f"model.attention.after_blocks_{i}=value_{i}" for i in range(20)]
    a, b = run_name(many), run_name([*many, "seed=1"])
    assert len(a) == len(b) == MAX_NAME and a != b
    assert a.startswith("model.attention.after_blocks_0-value_0__")
    assert run_name(many) == a  # stable
