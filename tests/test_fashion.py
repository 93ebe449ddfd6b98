"""config/fashion.yaml: every study on Fashion-MNIST with conv nets in the papers' style.

- the config validates, keeps at least 3 seeds per study, and uses the nets the issue asks for;
- ``snakemake -n`` plans the fashion and paper configs (CPU, no data needed);
- a tiny version of the fashion config (the same nets and grids, a few steps, a 512-image subset) runs end
  to end through real Snakemake: every study trains, analyzes and plots on the images, and the claim texts
  say what was run (Fashion-MNIST, the conv nets, the conv layers of the ICS probe).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, make_workdir, snakemake

from normlab.config import merge, validate
from normlab.stats import VERDICTS
from normlab.studies import STUDIES

FASHION = Path("/usr/share/datasets/fashion-mnist")


def merged(*files) -> dict:
    """config/config.yaml with the given files merged over it, as ``--configfile`` merges them, validated."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for f in files:
        cfg = merge(cfg, yaml.safe_load(Path(f).read_text()) if isinstance(f, (str, Path)) else f)
    return validate(cfg)


def test_fashion_config_uses_conv_nets_on_fashion_mnist():
    cfg = merged(ROOT / "config" / "fashion.yaml")
    assert cfg["name"] == "fashion"
    st = cfg["studies"]
    for s in STUDIES:
        assert st[s]["enabled"] and st[s]["dataset"] == "fashion_mnist", s
        assert st[s]["seeds"] >= 3, f"{s}: at least 3 seeds"
    s1 = st["santurkar"]
    (net,) = s1["nets"]
    m = s1["models"][net]["model"]
    assert m["arch"] == "vgg" and m["init"] == "glorot"
    assert s1["optimizer"] == {"name": "sgd", "momentum": 0.0, "weight_decay": 0.0, "nesterov": False}
    assert set(s1["norms"]) == {"none", "bn_pre", "noisy_bn", "noise_only"}
    # ICS at the conv layers that scale the paper's VGG layers 5 and 10 of 10 (0-based 4 and 9) to the depth used
    n_conv = len(m["channels"])
    assert [i + 1 for i in s1["probes"]["ics_layers"]] == [round(5 * n_conv / 10), n_conv]
    s2 = st["li_arora"]["model"]
    assert s2["arch"] == "preresnet" and s2["scale_invariant"] and s2["norm"] == "bn_pre"
    s3 = st["norm_growth"]["model"]
    assert s3["arch"] == "vgg" and s3["scale_invariant"] and s3["bn_eps"] <= 1e-12
    assert st["bn_placement"]["model"]["arch"] == "vgg"
    assert set(st["bn_placement"]["norms"]) == {"none", "bn_pre", "bn_post"}


def test_disabled_norm_growth_variants_are_left_out_and_the_default_keeps_its_versions():
    from normlab import plan

    fashion = merged(ROOT / "config" / "fashion.yaml")
    off = {n for n, v in fashion["studies"]["norm_growth"]["variants"].items() if v.get("enabled") is False}
    assert off and not off & set(plan.variants(fashion, "norm_growth"))
    default = merged()
    assert set(plan.variants(default, "norm_growth")) == set(default["studies"]["norm_growth"]["variants"])
    assert "enabled" not in default["studies"]["norm_growth"]["variants"]["sgd_fresh"]  # no default: versions kept


def test_headlines_say_what_the_fashion_config_runs():
    """``headlines(cfg)``: the declared departures on the default config, the fashion setup's on Fashion-MNIST."""
    from normlab.studies import get

    default, fashion = merged(), merged(ROOT / "config" / "fashion.yaml")
    for s in STUDIES:
        mod = get(s)
        assert mod.headlines(default["studies"][s]) == mod.HEADLINES
        h = mod.headlines(fashion["studies"][s])
        assert list(h) == list(mod.HEADLINES)
        for cid, d in h.items():
            assert "MNIST-1D" not in d["departures"] and "ashion" in d["departures"], (s, cid)
            assert d["statement"] == mod.HEADLINES[cid]["statement"]


@pytest.mark.parametrize("configfile", ["config/fashion.yaml", "config/paper.yaml"])
def test_dry_run_plans(workdir, configfile):
    p = snakemake(workdir, "-n", "--configfile", configfile)
    out = p.stdout + p.stderr
    for s in STUDIES:
        assert f"{s}_analyze" in out, s
    assert "scorecard" in out


def tiny_override() -> dict:
    """The fashion config's nets and grids, a few steps each, on 512 training images; sequential seeds kept for
    li_arora only (looks at 2 and 3 seeds), so that the test stays short."""
    return {
        "name": "fashiontiny",
        "wandb": {"mode": "disabled"},
        "datasets": {"fashion_mnist": {"n_train": 512, "n_test": 256}},
        "studies": {
            "santurkar": {"seeds": 2, "max_seeds": None, "models": {"vgg": {"steps": 24}},
                          "train": {"eval_every": 12, "eval_train_max": 256},
                          "probes": {"every": 8, "landscape": {"n": 3}},
                          "claims": {"early": 0.4},  # S1.d's early window must hold probe step 8 of 24
                          "dln": {"depth": 6, "n_samples": 100, "steps": 30, "seeds": 2, "probe_every": 10,
                                  "ics_layers": [2, 4], "landscape_n": 3}},
            "li_arora": {"seeds": 2, "seed_block": 1, "max_seeds": 3, "train": {"steps": 30, "eval_every": 15, "eval_train_max": 256}, "norm_every": 5,
                         "exactness": {"steps": 40, "float32_seeds": 2,
                                       "model": {"arch": "mlp", "depth": 2, "width": 16, "norm": "bn_pre",
                                                 "act": "relu", "scale_invariant": True},
                                       "settings": [{"lr": 0.1, "weight_decay": 5.0e-4, "momentum": 0.9},
                                                    {"lr": 0.5, "weight_decay": 5.0e-3, "momentum": 0.0}]}},
            "norm_growth": {"seeds": 2, "max_seeds": None, "train": {"steps": 30, "eval_every": 15, "eval_train_max": 256},
                            "probe_every": 5, "variants": {"sgd_fresh": {"steps": 60}},
                            "steady": {"window": 10, "min_steps": 30, "band": 0.5},
                            "invariance": {"seeds": 1, "pyth_steps": 3, "batch_size": 32}},
            "bn_placement": {"seeds": 2, "max_seeds": None, "train": {"steps": 20, "eval_every": 10, "eval_train_max": 256},
                             "claims": {"acc_target": 0.3}},
            "ics_conditioning": {"seeds": 2, "max_seeds": None, "model": {"depth": 2, "width": 16},
                                 "conditions": [{"act": "tanh", "shift": 1.0}, {"act": "tanh", "shift": 2.0},
                                                {"act": "tanh", "shift": 2.0, "center": True}],
                                 "train": {"steps": 30, "eval_every": 15, "eval_train_max": 256}, "lr_sweep": {"lrs": [0.2]},
                                 "curvature": {"every": 15, "n_samples": 64, "k": 4, "k_network": 2},
                                 "invariance": {"steps": 30, "width": 16, "probe_every": 5, "probe_size": 64},
                                 "centering_check": {"batches": 2, "width": 16}},
        },
    }


@pytest.fixture(scope="module")
def fashion_tiny(tmp_path_factory):
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip(f"{FASHION} missing and apt is unavailable here (Debian package dataset-fashion-mnist)")
        pytest.fail(f"{FASHION} missing: `make test` installs Debian's dataset-fashion-mnist")
    wd = make_workdir(tmp_path_factory.mktemp("fashion"))
    (wd / "tiny.yaml").write_text(yaml.safe_dump(tiny_override()))
    merged(ROOT / "config" / "fashion.yaml", wd / "tiny.yaml")  # the override itself is a valid config
    snakemake(wd, "--cores", "2", "--configfile", "config/fashion.yaml", "tiny.yaml")
    return wd


@pytest.mark.slow
def test_every_study_runs_on_the_images_and_says_so(fashion_tiny):
    from normlab.scorecard import study_headlines

    for s in STUDIES:
        v = (fashion_tiny / "results" / s / "latest").resolve()
        assert v.name.startswith("fashiontiny-"), s
        claims = pd.read_csv(v / "claims.csv")
        assert set(claims.verdict) <= set(VERDICTS), s
        heads = set(claims[claims.kind == "headline"].claim_id)
        not_run = set(claims[(claims.kind == "headline") & (claims.verdict == "not run")].claim_id)
        assert not not_run & set(study_headlines(s)), f"{s}: headlines not run on the images: {not_run}"
        assert set(study_headlines(s)) <= heads, f"{s}: headline rows missing: {set(study_headlines(s)) - heads}"
        pngs = list((v / "figures").glob("*.png"))
        assert pngs and all(p.stat().st_size > 5000 for p in pngs), s
        text = " ".join(claims[claims.kind == "headline"].claim)
        assert "MNIST-1D" not in text, f"{s}: a headline claim text names MNIST-1D on Fashion-MNIST"
        summary = pd.read_parquet(v / "summary.parquet")
        assert len(summary) and set(summary.status) <= {"ok", "diverged"}, s
    s1 = pd.read_csv((fashion_tiny / "results" / "santurkar" / "latest" / "claims.csv"))
    s1c = s1[s1.claim_id == "S1.c"].claim.iloc[0]
    assert "Fashion-MNIST" in s1c and "VGG-style CNN of 6" in s1c and "conv layers 3 and 6 of 6" in s1c
    s2b = pd.read_csv(fashion_tiny / "results" / "li_arora" / "latest" / "claims.csv")
    assert "PreResNet8" in s2b[s2b.claim_id == "S2.b"].claim.iloc[0]
    s4 = pd.read_csv(fashion_tiny / "results" / "bn_placement" / "latest" / "claims.csv")
    assert "VGG-style CNN" in s4[s4.claim_id == "S4.a"].claim.iloc[0]
    s5 = pd.read_csv(fashion_tiny / "results" / "ics_conditioning" / "latest" / "claims.csv")
    assert "flattened images" in " ".join(s5[s5.kind == "headline"].claim)
    # the scorecard's "departs from the paper" column describes the setup the version ran
    from normlab.scorecard import load_study

    for s in STUDIES:
        heads = load_study((fashion_tiny / "results" / s / "latest").resolve())["headlines"]
        assert heads and all("MNIST-1D" not in h["departures"] for h in heads.values()), s


@pytest.mark.slow
def test_image_figures_name_channels_and_conv_layers(fashion_tiny):
    """The per-unit probes' units are channels on a conv net; the ICS panels are named by conv layer."""
    units = pd.read_parquet(next((fashion_tiny / "results" / "norm_growth" / "latest" / "runs").glob(
        "sgd_fresh/seed0/metrics.parquet")))
    layers = {m.split("/")[1] for m in units.metric if m.startswith("units/")}
    assert layers == {f"bn{i}" for i in range(6)} | {"out"}  # the 6 BN-fed convs (per channel) and the read-out
    ics = pd.read_parquet(next((fashion_tiny / "results" / "santurkar" / "latest" / "runs").glob(
        "vgg-bn_pre-*/seed0/metrics.parquet")))
    assert {m for m in ics.metric if m.startswith("ics/l2/")} == {"ics/l2/2", "ics/l2/5"}
