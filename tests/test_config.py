"""Malformed configs fail fast with one message naming the key."""

import copy

import pytest
import yaml
from conftest import ROOT, snakemake

from normlab.config import ConfigError, validate
from normlab.plan import version as study_version


def base():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


BAD = [
    ({"studies": {"bn_placement": {"lrs": [-0.1]}}}, "studies.bn_placement.lrs[0]"),
    ({"studies": {"bn_placement": {"dataset": "imagenet"}}}, "studies.bn_placement.dataset"),
    ({"studies": {"bn_placement": {"model": {"arch": "transformer"}}}}, "studies.bn_placement.model.arch"),
    ({"studies": {"bn_placement": {"optimizer": {"name": "lbfgs"}}}}, "studies.bn_placement.optimizer.name"),
    ({"studies": {"bn_placement": {"train": {"steps": "ten"}}}}, "studies.bn_placement.train.steps"),
    ({"studies": {"bn_placement": {"seeds": 0}}}, "studies.bn_placement.seeds"),
    ({"studies": {"bn_placement": {"lerning_rate": 0.1}}}, "lerning_rate"),
    ({"studies": {"no_such_study": {}}}, "no_such_study"),
    ({"wandb": {"mode": "sometimes"}}, "wandb.mode"),
    ({"device": "tpu"}, "device"),
    ({"datasets": {"mnist1d": {"train_split": 1.5}}}, "datasets.mnist1d.train_split"),
]


def deep_update(d, u):
    for k, v in u.items():
        d[k] = deep_update(d.get(k, {}), v) if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return d


@pytest.mark.parametrize("override,key", BAD)
def test_bad_config_names_the_key(override, key):
    cfg = deep_update(base(), copy.deepcopy(override))
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert key in str(e.value)


def test_defaults_filled_and_default_config_valid():
    cfg = validate(base())
    assert cfg["studies"]["bn_placement"]["train"]["log_every"] == 10
    assert cfg["wandb"]["mode"] == "auto"


def test_version_changes_only_with_the_study_config():
    a, b = validate(base()), validate(base())
    assert study_version(a, "bn_placement") == study_version(b, "bn_placement")
    b["wandb"]["mode"] = "disabled"  # tracking does not change numbers
    assert study_version(a, "bn_placement") == study_version(b, "bn_placement")
    b["studies"]["bn_placement"]["lrs"] = [0.3]
    assert study_version(a, "bn_placement") != study_version(b, "bn_placement")
    assert study_version(a, "bn_placement").startswith("default-")


def test_snakemake_stops_before_any_job_with_one_line(workdir):
    (workdir / "bad.yaml").write_text("studies:\n  bn_placement:\n    lrs: [-0.1]\n")
    p = snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    assert p.returncode != 0
    assert "Config error: 'studies.bn_placement.lrs[0]'" in p.stderr
    assert "Traceback" not in p.stderr and "File \"" not in p.stderr
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()
