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


def test_config_overrides_of_numbers_are_read_as_the_schema_types():
    """Snakemake reads a nested --config value with YAML's BaseLoader (every scalar a string): the schema
    turns them back into numbers, booleans and null; a string that is not one still names its key."""
    over = yaml.load("{ics_conditioning: {seeds: 4, lr: 1e-3, model: {bn_eps: 1.0e-5},"
                     " conditions: [{act: tanh, shift: 2, center: true}]}, bn_placement: {lrs: [0.1], max_seeds: null}}",
                     Loader=yaml.BaseLoader)
    assert over["ics_conditioning"]["seeds"] == "4"
    cfg = validate(deep_update(base(), {"studies": over}))
    s = cfg["studies"]["ics_conditioning"]
    assert (s["seeds"], s["lr"], s["model"]["bn_eps"]) == (4, 1e-3, 1e-5)
    assert s["conditions"] == [{"act": "tanh", "shift": 2, "center": True}]
    assert cfg["studies"]["bn_placement"]["lrs"] == [0.1] and cfg["studies"]["bn_placement"]["max_seeds"] is None
    with pytest.raises(ConfigError, match="ics_conditioning.seeds"):
        validate(deep_update(base(), {"studies": {"ics_conditioning": {"seeds": "four"}}}))


def test_snakemake_config_override_of_seeds(workdir):
    p = snakemake(workdir, "-n", "--config", "studies={ics_conditioning: {seeds: 4}}", check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Config error" not in p.stderr
