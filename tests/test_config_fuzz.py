"""Property-based: a config that validates runs to the end; one that does not is refused up front.

Hypothesis draws small configs over the smoke config, varying the keys that refer to other keys
(lists that must contain or lie within others, layer indices within depths, cadences within
lengths, seeds) and subsets of each study's grid (norms, schedules): a subset runs, and the claims
it cannot test say "not run" with what they need. Each draw goes through `normlab.config.validate` (what the Snakefile calls before
any job). A refused draw must name its key in one line, through real `snakemake -n` too (checked
on the first refusal). A valid draw runs through real Snakemake: the plan, a few training steps
of every variant of every study, the side jobs, the analyses and the scorecard; any crash fails
the test. Draws are derandomized (the same examples on every run, as CI needs).
"""

import copy
import json

import pytest
import yaml
from conftest import ROOT, make_workdir, snakemake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normlab.config import ConfigError, merge, validate

pytestmark = pytest.mark.slow


def smoke():
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    over = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    return merge(base, over)


def subset(items, min_size=1):
    return st.lists(st.sampled_from(items), min_size=min_size, max_size=len(items), unique=True)


@st.composite
def overrides(draw):
    """Overrides of the smoke config: small, and with cross-references that may or may not match."""
    steps = draw(st.sampled_from([12, 24]))
    ev = draw(st.sampled_from([6, 12, 6, 12, 6, 12, 40]))  # 40 > steps: must be refused
    s = {}
    s["bn_placement"] = {
        "seeds": draw(st.sampled_from([2] * 7 + [1])),
        "norms": draw(st.sampled_from([["none", "bn_pre", "bn_post"], ["bn_post", "none", "bn_pre"]] * 2)
                      | subset(["none", "bn_pre", "bn_post"])),  # subsets: claims that need the rest are "not run"
        "activations": draw(subset(["relu", "tanh", "logistic"])),
        "lrs": draw(subset([0.05, 0.5])),
        "model": {"arch": "mlp", "depth": draw(st.integers(1, 3)), "width": 8},
        "train": {"steps": steps, "batch_size": 32, "eval_every": ev},
    }
    lrs = draw(subset([0.1, 0.5]))
    s["santurkar"] = {
        "lrs": lrs,
        "norms": draw(st.sampled_from([["none", "bn_pre", "noisy_bn", "noise_only"]] * 2)
                      | subset(["none", "bn_pre", "noisy_bn", "noise_only"])),
        "models": {"mlp": {"model": {"arch": "mlp", "depth": draw(st.integers(2, 4)), "width": 8}, "steps": steps}},
        "train": {"steps": steps, "batch_size": 32, "eval_every": min(ev, 12)},
        "probes": {"every": 6, "norms": draw(subset(["none", "bn_pre", "noisy_bn"])),
                   "ics_layers": draw(st.lists(st.sampled_from([-2, 1, 2, -2, 1, 2, 9]), min_size=1, max_size=2,
                                               unique=True))},
        "dln": {"steps": 20, "probe_every": draw(st.sampled_from([5] * 7 + [30])), "log_every": 5, "depth": 6,
                "ics_layers": [2, 4], "n_samples": 100},
        "claims": {"measure_lrs": [draw(st.sampled_from(lrs * 6 + [0.3]))], "regime_lrs": lrs},
    }
    s["li_arora"] = {
        "schedules": draw(st.sampled_from([["step_wd", "texp_practical", "const_wd", "exponential"],
                                           ["step_wd", "const_wd", "exponential"]])
                          | subset(["step_wd", "texp_practical", "const_wd", "exponential"])),
        "train": {"steps": 30, "batch_size": 32, "eval_every": 10},
        "norm_every": draw(st.sampled_from([5] * 7 + [50])),
        "exactness": {"steps": 30, "log_every": 5},
    }
    s["norm_growth"] = {
        "track_units": draw(st.sampled_from([2] * 7 + [40])),  # width 32: 40 is refused
        "train": {"steps": 60, "batch_size": 32, "eval_every": 20},
        "variants": {"sgd_fresh": {"steps": 80}},
        "steady": {"window": 20, "min_steps": 40, "band": 0.5},
        "probe_every": 5,
    }
    s["ics_conditioning"] = {
        "center_norms": draw(st.sampled_from([["none"]] * 7 + [["none", "bn_pre"]])),  # bn_pre not in norms? see config
        "norms": draw(st.sampled_from([["none", "bn_pre"]] * 2) | subset(["none", "bn_pre"])),
        "curvature": {"every": 10, "n_samples": 32, "k": 2, "k_network": 2,
                      "layers": draw(st.lists(st.sampled_from([-1, 0, 1, 2, -1, 0, 1, 2, 7]), min_size=1, max_size=2,
                                              unique=True))},
        "train": {"steps": 20, "batch_size": 32, "eval_every": 10},
    }
    return {"studies": s}


def merged(over):
    cfg = smoke()
    for study, sec in over["studies"].items():
        for k, v in sec.items():
            if isinstance(v, dict) and isinstance(cfg["studies"][study].get(k), dict):
                cfg["studies"][study][k] = {**cfg["studies"][study][k], **v}
            else:
                cfg["studies"][study][k] = v
    return cfg


SEEN = {"refused_cli": False, "ran": 0, "refused": 0}


@settings(max_examples=16, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(over=overrides())
def test_valid_configs_run_to_the_end(over, tmp_path_factory):
    cfg = merged(over)
    try:
        validate(copy.deepcopy(cfg))
    except ConfigError as e:
        SEEN["refused"] += 1
        msg = str(e)
        assert "\n" not in msg and "'" in msg, msg  # one line, naming the key(s)
        if not SEEN["refused_cli"]:
            wd = make_workdir(tmp_path_factory.mktemp("fuzz_bad"))
            (wd / "fuzz.yaml").write_text(yaml.safe_dump(cfg))
            p = snakemake(wd, "-n", "--configfile", "fuzz.yaml", check=False)
            out = p.stdout + p.stderr
            assert p.returncode != 0 and "Config error:" in out and "Traceback" not in out, out[-2000:]
            SEEN["refused_cli"] = True
        return
    if SEEN["ran"] >= 2:  # each full DAG costs minutes on 2 cores: two valid draws run end to end
        return
    SEEN["ran"] += 1
    wd = make_workdir(tmp_path_factory.mktemp("fuzz_ok"))
    (wd / "fuzz.yaml").write_text(yaml.safe_dump({**cfg, "name": "fuzz", "wandb": {"mode": "disabled"}}))
    snakemake(wd, "--cores", "2", "--configfile", "fuzz.yaml", timeout=1500)
    import pandas as pd

    from normlab.stats import VERDICTS

    claims = pd.read_csv(wd / "results" / "scorecards" / "fuzz_claims_all.csv")  # the fuzz config's own table
    for sid in ("S1.a", "S2.a", "S3.c", "S4.a", "S5.a"):  # present: tested, or "not run" with what it needs
        assert sid in set(claims.claim_id), sid
    assert set(claims.verdict) <= set(VERDICTS), set(claims.verdict)
    assert claims[claims.verdict == "not run"].basis.str.startswith("not run: needs").all()
    json.loads((wd / "results" / "bn_placement" / "latest" / "manifest.json").read_text())


def test_the_draws_exercised_both_outcomes():
    """Runs after the property test (file order): both refusals and full runs happened."""
    assert SEEN["refused"] >= 1 and SEEN["ran"] >= 1, SEEN
