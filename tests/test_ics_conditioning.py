"""S5 (ICS conditioning): the shifted MLP, the exactness jobs, the claims logic, and the smoke run."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from normlab.config import ConfigError, load_schema, validate
from normlab.models import build_model, weight_layers
from normlab.models.shifted import affine_modules
from normlab.stats import CLAIM_COLUMNS, VERDICTS, finalize
from normlab.studies import ics_conditioning as ics
from normlab.studies.ics_conditioning import checks as ics_checks
from normlab.studies.ics_conditioning import claims as ics_claims
from normlab.studies.ics_conditioning.variants import cond_label
from normlab.studies.ics_conditioning.variants import needs as ics_variants_needs

torch.set_num_threads(1)


def study_cfg(**over) -> dict:
    """The default study section, schema defaults filled in."""
    cfg = {"studies": {"ics_conditioning": over}}
    validate(cfg, load_schema())
    return cfg["studies"]["ics_conditioning"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """A small synthetic dataset in the engine's prepared-tensor format."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 1, 12, generator=g)
    w = torch.randn(12, 4, generator=g)
    y = (x.flatten(1) @ w).argmax(1)
    path = tmp_path_factory.mktemp("data") / "toy.pt"
    torch.save({"x_train": x[:500], "y_train": y[:500], "x_test": x[500:], "y_test": y[500:], "n_classes": 4,
                "name": "toy"}, path)
    return str(path)


# model ---------------------------------------------------------------------------------------------

def test_shifted_mlp_shift_and_centering():
    torch.manual_seed(0)
    spec = {"arch": "shifted_mlp", "depth": 2, "width": 8, "norm": "none", "act": "tanh", "shift": 3.0}
    net = build_model(spec, (5,), 3).train()
    acts = {}
    weight_layers(net)[1].register_forward_hook(lambda m, i, o: acts.__setitem__("a", i[0]))
    net(torch.randn(64, 5))
    assert acts["a"].mean().item() == pytest.approx(3.0, abs=0.5)  # tanh's own mean is small
    torch.manual_seed(0)
    cen = build_model({**spec, "center_acts": True}, (5,), 3).train()
    weight_layers(cen)[1].register_forward_hook(lambda m, i, o: acts.__setitem__("c", i[0]))
    cen(torch.randn(64, 5))
    assert acts["c"].mean(0).abs().max().item() < 1e-6


def test_bn_makes_the_function_shift_and_scale_invariant():
    """BN(W(s a + m)) = BN(W a) when BN's eps is scaled by s^2; per-unit scaling is not invariant."""
    spec = {"arch": "shifted_mlp", "depth": 2, "width": 8, "norm": "bn_pre", "act": "tanh", "bn_eps": 1e-5}
    torch.manual_seed(0)
    base = build_model(spec, (5,), 3, dtype=torch.float64).train()
    x = torch.randn(32, 5, dtype=torch.float64)
    shifted = copy.deepcopy(base)
    aff = affine_modules(shifted)[0]
    aff.scale.fill_(3.0)
    aff.shift.copy_(torch.linspace(-2, 5, 8, dtype=torch.float64))
    bns = [m for m in shifted.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    bns[1].eps = 9 * 1e-5
    assert (shifted(x) - base(x)).abs().max().item() < 1e-12
    bns[1].eps = 1e-5
    assert (shifted(x) - base(x)).abs().max().item() > 1e-9  # eps alone breaks exactness a little
    aff.shift.zero_()
    aff.scale.copy_(torch.linspace(0.25, 4, 8, dtype=torch.float64))
    assert (shifted(x) - base(x)).abs().max().item() > 1e-3


# exactness jobs -------------------------------------------------------------------------------------

def test_invariance_job(data_file):
    c = study_cfg(invariance={"steps": 25, "width": 8, "probe_every": 5, "probe_size": 32, "batch_size": 32})["invariance"]
    df = ics_checks.invariance(c, data_file)
    mx = df[df.metric == "logit_gap"].groupby("run").value.max()
    assert set(mx.index) == set(ics_checks.RUNS[1:])
    assert mx["shift_scale"] < 1e-11
    assert 1e-11 < mx["shift_scale_eps_fixed"] < 1e-1
    assert mx["per_unit"] > 1e-3 and mx["per_unit_matched"] > 1e-3
    # the matched control starts from the same function and departs only by training
    g0 = df[(df.run == "per_unit_matched") & (df.metric == "logit_gap") & (df.step == 0)].value.item()
    assert g0 < 1e-12
    assert (df[(df.run == "shift_scale") & (df.metric == "param_gap")].value < 1e-11).all()


def test_invariance_measurement_can_fail(data_file):
    """With BN after the nonlinearity (a wrong model for the lecture's argument) the same measurement fails."""
    c = study_cfg(invariance={"steps": 10, "width": 8, "probe_every": 5, "probe_size": 32, "batch_size": 32})["invariance"]
    df = ics_checks.invariance({**c, "norm": "bn_post"}, data_file)
    assert df[(df.run == "shift_scale") & (df.metric == "logit_gap")].value.max() > 1e-3


def test_invariance_job_rejects_bad_layer(data_file):
    c = study_cfg()["invariance"]
    with pytest.raises(SystemExit, match="invariance.layer"):
        ics_checks.invariance({**c, "layer": 2, "depth": 2}, data_file)


def test_centering_job(data_file):
    c = study_cfg(centering_check={"batches": 2, "width": 8, "batch_size": 32})["centering_check"]
    rows = pd.DataFrame(ics_checks.centering(c, data_file))
    assert len(rows) == 2 * 2  # batches x hidden layers
    assert rows.err_centered.max() < 1e-12
    assert rows.err_detached_plain.max() < 1e-12
    shifted = rows[rows.layer == 1]  # the input of hidden layer 2 is tanh + 2: far from centered
    assert (shifted.m_norm2 > 10).all() and (shifted.err_plain > 0.1).all()


# variants and config --------------------------------------------------------------------------------

def test_variants_and_probe():
    cfg = study_cfg()
    v = ics.variants(cfg)
    n_cond = len(cfg["conditions"])
    n_cen = sum(bool(c.get("center")) for c in cfg["conditions"])
    assert "none-tanh-s2-centered" in v and "bn_pre-tanh-s2-centered" not in v  # center_norms: [none]
    n_sweep = 3 * n_cen * len(cfg["lr_sweep"]["lrs"])  # S5.e's three variants per centered condition, per rate
    assert len(v) == 2 * (n_cond - n_cen) + n_cen + n_sweep
    sw = v["bn_pre-tanh-s2-lr0.2"]
    assert sw["lr"] == 0.2 and sw["keys"]["sweep_lr"] == 0.2 and sw["probes"] == [] and "sweep_lr" not in v["bn_pre-tanh-s2"]["keys"]
    assert sw["train"]["steps"] == cfg["train"]["steps"] and sw["model"] == v["bn_pre-tanh-s2"]["model"]
    assert not any(k.startswith("bn_pre-tanh-s1-lr") for k in v)  # only the variants S5.e compares
    assert set(ics.variants(study_cfg(lr_sweep={"lrs": [0.05]}))) == {k for k in v if "-lr" not in k}  # lr itself
    spec = v["none-tanh-s1"]
    assert spec["model"]["arch"] == "shifted_mlp" and spec["model"]["shift"] == 1.0
    assert spec["probes"][0]["name"] == "curvature"
    from normlab.probes import build_probe

    p = build_probe(spec["probes"][0])
    assert p.layers == cfg["curvature"]["layers"] and p.kinds == cfg["curvature"]["kinds"]


BAD = [
    ({"curvature": {"layers": [5]}}, ["'curvature.layers[0]' 5", "'model.depth'"]),
    ({"invariance": {"layer": 2, "depth": 2}}, ["'invariance.layer' 2", "'invariance.depth' 2"]),
    ({"center_norms": ["bn_pre"], "norms": ["none"]}, ["'center_norms'", "'norms'"]),
    ({"train": {"steps": 50, "eval_every": 100}}, ["'train.eval_every' 100", "'train.steps' 50"]),
    ({"train": {"steps": 200, "eval_every": 100}, "curvature": {"every": 300}}, ["'curvature.every' 300",
                                                                                 "'train.steps' 200"]),
    ({"claims": {"speed_step": 5000}}, ["'claims.speed_step' 5000", "'train.steps'"]),
    ({"lr_sweep": {"lrs": [0.2], "steps": 2000}}, ["'lr_sweep.steps' 2000", "'train.steps'"]),
    ({"lr_sweep": {"lrs": [0.2], "steps": 150}}, ["'lr_sweep.steps' 150", "'train.eval_every' 100"]),
    ({"lr_sweep": {"lrs": [0.2]}, "claims": {"speed_step": 250}}, ["'claims.speed_step' 250", "'train.eval_every'"]),
]


@pytest.mark.parametrize("over, words", BAD)
def test_bad_cross_reference_names_both_keys(over, words):
    with pytest.raises(ConfigError) as e:
        study_cfg(**over)
    msg = str(e.value)
    assert msg.startswith("studies.ics_conditioning: ")
    for w in words:
        assert w in msg, (w, msg)


SUBSETS = [  # part of the grid: accepted; the claims it cannot test are "not run" (variants.needs)
    ({"norms": ["none"]}, {"S5.e": "norms none and bn_pre"}),
    ({"norms": ["bn_pre"], "center_norms": []}, {"S5.a": "norm none", "S5.b": "norm none", "S5.e": "norms none"}),
    ({"conditions": [{"act": "tanh", "shift": 1.0}, {"act": "logistic", "center": True}]},
     {"S5.b": "uncentered twin", "S5.e": "uncentered twin"}),
    ({"norms": ["none", "bn_pre"], "center_norms": ["bn_pre"]}, {"S5.b": "'center_norms'", "S5.e": "'center_norms'"}),
    ({"lr_sweep": {"lrs": []}}, {"S5.e": "'lr_sweep.lrs'"}),
    ({"conditions": [{"act": "tanh", "shift": 2.0}]}, {"S5.b": "twin", "S5.e": "twin"}),
]


@pytest.mark.parametrize("over, missing", SUBSETS)
def test_subsets_are_accepted_and_say_what_they_lack(over, missing):
    cfg = study_cfg(**{"lr_sweep": {"lrs": [0.2]}, **over})
    assert ics.check_config(cfg) == []
    got = ics_variants_needs(cfg)
    for cid, words in missing.items():
        assert words in got[cid], (cid, got[cid])
    assert {k for k, v in got.items() if v} <= set(missing) | {"S5.e[common lr]"}
    v = ics.variants(cfg)
    assert v and all(spec["keys"]["norm"] in cfg["norms"] for spec in v.values())


def test_shipped_configs_pass_the_cross_key_checks():
    import yaml
    from conftest import ROOT

    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["studies"]["ics_conditioning"]
    assert ics.check_config(study_cfg(**base)) == []
    for name in ["smoke", "paper"]:
        over = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())["studies"]["ics_conditioning"]
        merged = {k: ({**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v)
                  for k, v in {**base, **over}.items()}
        assert ics.check_config(study_cfg(**merged)) == [], name


def test_snakemake_reports_the_cross_key_error_in_one_line(workdir):
    from conftest import snakemake

    (workdir / "bad.yaml").write_text("studies:\n  ics_conditioning:\n    curvature: {layers: [9]}\n")
    p = snakemake(workdir, "-n", "ics_conditioning", "--configfile", "bad.yaml", check=False)
    assert p.returncode != 0
    lines = [x for x in p.stderr.splitlines() if x.startswith("Config error:")]
    assert len(lines) == 1 and "'curvature.layers[0]'" in lines[0] and "'model.depth'" in lines[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout


def test_schema_rejects_unknown_norm():
    with pytest.raises(ConfigError, match="norms"):
        study_cfg(norms=["noisy_bn"])


# claims logic on synthetic probe data ------------------------------------------------------------

def synthetic(ratio_none: float, bn_flat: bool, share: float = 0.8, bn_gain: float = 0.45, seeds=(0, 1, 2, 3, 4),
              ratio_trained: float | None = None):
    """Metrics/summary as the engine writes them. Without BN the GGN eigenvalues are ratio_none times
    K-FAC's prediction (for nu > 10) at init and ratio_trained times it (default ratio_none) at the trained
    probe (step 500); with BN they equal it, or (bn_flat) do not grow with nu at all.
    Train loss: uncentered no-BN 1 + 0.5 s, BN 1 + (0.5 - bn_gain) s, centered: the uncentered loss minus
    ``share`` of BN's advantage; plus per-seed noise."""
    rows, summ = [], []
    conds = [("tanh", 0.0, False, 1.5), ("tanh", 1.0, False, 65.0), ("tanh", 2.0, False, 250.0), ("tanh", 2.0, True, 1.0)]
    noise = np.random.default_rng(123)
    for norm in ["none", "bn_pre"]:
        for act, shift, center, nu in conds:
            if center and norm == "bn_pre":
                continue
            variant = f"{norm}-{act}-s{shift:g}" + ("-centered" if center else "")
            keys = dict(norm=norm, act=act, shift=shift, center=center, condition=cond_label(act, shift, center))
            unc, bn = 1.0 + 0.5 * shift, 1.0 + (0.5 - bn_gain) * shift
            loss = bn if norm == "bn_pre" else unc - share * (unc - bn) if center else unc
            for seed in seeds:
                rng = np.random.default_rng(seed)
                for step, ratio in [(0, ratio_none), (500, ratio_none if ratio_trained is None else ratio_trained)]:
                    for layer in ["L1", "L3"]:
                        s_eigs = np.sort(rng.uniform(0.01, 0.1, 6))[::-1] * (1 + 0.01 * noise.standard_normal())
                        for j, se in enumerate(s_eigs, 1):
                            pred = nu * se
                            if norm == "none":
                                meas = (ratio if nu > 10 else 1.0) * pred
                            else:
                                meas = 2.0 * se if bn_flat else pred
                            rows += [(step, f"curv/{layer}/kfac_pred/eig{j}", pred),
                                     (step, f"curv/{layer}/ggn/eig{j}", meas),
                                     (step, f"curv/{layer}/ggn/overlap{j}", 0.99)]
                        rows.append((step, f"curv/{layer}/nu", nu))
                lv = loss + 0.02 * noise.standard_normal()
                rows.append((1000, "train_loss", lv))
                rows = [(*r, variant, seed, keys) if len(r) == 3 else r for r in rows]
                summ.append({"variant": variant, "seed": seed, **keys, "status": "ok", "final_train_loss": lv})
    m = pd.DataFrame([{"step": r[0], "metric": r[1], "value": r[2], "variant": r[3], "seed": r[4], **r[5]} for r in rows])
    return m, pd.DataFrame(summ)


COND4 = [{"act": "tanh", "shift": 0.0}, {"act": "tanh", "shift": 1.0}, {"act": "tanh", "shift": 2.0},
         {"act": "tanh", "shift": 2.0, "center": True}]
LOGISTIC = [{"act": "logistic"}, {"act": "logistic", "center": True}]


def speed_runs(losses: dict, seeds=(0, 1, 2, 3, 4), sweep_lr=None, sd=0.02):
    """Train-loss-only runs (no curvature probe), as the sweep runs are: ``losses`` {(norm, act, shift, center): mean
    train loss at step 1000}; ``sweep_lr`` marks them as sweep runs at that rate."""
    noise = np.random.default_rng(7 if sweep_lr is None else int(1000 * sweep_lr))
    rows, summ = [], []
    for (norm, act, shift, center), loss in losses.items():
        keys = dict(norm=norm, act=act, shift=shift, center=center, condition=cond_label(act, shift, center))
        if sweep_lr is not None:
            keys["sweep_lr"] = sweep_lr
        variant = f"{norm}-{act}-s{shift:g}" + ("-centered" if center else "") + (f"-lr{sweep_lr:g}" if sweep_lr else "")
        for seed in seeds:
            lv = loss + sd * noise.standard_normal()
            rows.append({"step": 1000, "metric": "train_loss", "value": lv, "variant": variant, "seed": seed, **keys})
            summ.append({"variant": variant, "seed": seed, **keys, "status": "ok", "final_train_loss": lv})
    return pd.DataFrame(rows), pd.DataFrame(summ)


def joined(*parts):
    return pd.concat([p[0] for p in parts], ignore_index=True), pd.concat([p[1] for p in parts], ignore_index=True)


def claims_for(ratio_none, bn_flat, extra=None, **kw):
    cfg = study_cfg(conditions=COND4)
    m, s = synthetic(ratio_none, bn_flat, **kw)
    return finalize(ics.analyze(m, s, cfg, extra or {})).set_index("claim_id")


@pytest.fixture(scope="module")
def job_files(tmp_path_factory):
    """Exactness-job outputs as the jobs write them: (good, broken) pairs of invariance and centering files."""
    import json

    d = tmp_path_factory.mktemp("jobs")
    out = {}
    for name, gap, err in [("good", 1e-13, 1e-15), ("broken", 0.3, 0.2)]:
        rows = []
        for run, g in [("shift_scale", gap), ("shift_scale_eps_fixed", 1e-4), ("per_unit", 0.5), ("per_unit_matched", 0.2)]:
            rows += [(run, t, "logit_gap", g) for t in (0, 10)] + [(run, t, "loss_gap", g / 10) for t in (0, 10)]
        rows += [("base", t, "logit_scale", 3.0) for t in (0, 10)]
        pd.DataFrame(rows, columns=["run", "step", "metric", "value"]).to_parquet(d / f"{name}.parquet")
        cen = [{"batch": b, "layer": i, "m_norm2": 5.0 * i, "err_centered": err, "err_plain": 0.5,
                "err_detached_plain": 1e-16, "err_detached_centered": 0.4} for b in range(2) for i in range(2)]
        (d / f"{name}.json").write_text(json.dumps({"rows": cen}))
        out[name] = {"invariance": str(d / f"{name}.parquet"), "centering": str(d / f"{name}.json")}
    return out


def test_headline_ids_match_declarations(job_files):
    for extra in [job_files["good"], {}]:  # missing job outputs still give one (inconclusive) row per headline
        c = claims_for(1.02, bn_flat=True, extra=extra).reset_index()
        assert list(c[c.kind.isin(["headline", "identity"])].claim_id) == list(ics.HEADLINES)
        assert list(c.columns) == CLAIM_COLUMNS
    # S5.c and S5.d are true by construction for a correct implementation: identities, counted apart
    assert list(c[c.kind == "identity"].claim_id) == ["S5.c", "S5.d"] == [
        cid for cid, h in ics.HEADLINES.items() if h.get("kind") == "identity"]
    assert c.set_index("claim_id").kind["S5.a[init]"] == "check"
    assert set(c.kind) <= {"headline", "identity", "cell", "check"}
    for v in ics.HEADLINES.values():
        assert v["statement"] and v["departures"]


def test_s5a_is_tested_at_a_trained_point(job_files):
    """K-FAC's factorization is nearly exact at init (the check S5.a[init]); the headline S5.a reads the last
    curvature probe, where it can fail."""
    cfg = study_cfg(conditions=COND4)
    m, s = synthetic(1.02, bn_flat=True, ratio_trained=1.6)
    c = finalize(ics.analyze(m, s, cfg, job_files["good"])).set_index("claim_id")
    assert c.loc["S5.a[init]", "verdict"] == "holds" and c.loc["S5.a[init]", "value"] == pytest.approx(1.02, rel=1e-3)
    assert c.loc["S5.a", "verdict"] == "fails" and c.loc["S5.a", "value"] == pytest.approx(1.6, rel=1e-3)
    assert "step 500" in c.loc["S5.a", "claim"]
    # claims.trained_step picks an earlier probe: only init is earlier here, so no trained point
    c = finalize(ics.analyze(m, s, study_cfg(conditions=COND4, claims={"trained_step": 100}),
                             job_files["good"])).set_index("claim_id")
    assert c.loc["S5.a", "verdict"] == "inconclusive" and "no curvature probe after init" in c.loc["S5.a", "claim"]


def test_claims_hold_when_the_prediction_holds(job_files):
    c = claims_for(1.02, bn_flat=True, extra=job_files["good"])
    for cid in ["S5.a", "S5.b", "S5.c", "S5.d", "S5.e"]:
        assert c.loc[cid, "verdict"] == "holds", (cid, c.loc[cid].to_dict())
    assert c.loc["S5.a", "value"] == pytest.approx(1.02, rel=1e-3)
    assert c.loc["S5.a[hidden L1, tanh s=2, at init]", "value"] == pytest.approx(1.02, rel=1e-3)
    assert c.loc["S5.a[growth, hidden L1]", "value"] == pytest.approx(1.0, abs=0.01)
    assert c.loc["S5.c[curvature, hidden L1]", "verdict"] == "holds"
    assert c.loc["S5.c[curvature, hidden L1, tanh s=2]", "verdict"] == "holds"
    assert c.loc["S5.b[read-out L3, tanh s=2]", "verdict"] == "holds"
    assert c.loc["S5.c[speed]", "verdict"] == "holds"
    assert c.loc["S5.e", "value"] == pytest.approx(0.8, abs=0.05)
    assert c.loc["S5.c[per_unit]", "kind"] == "check" and c.loc["S5.c[per_unit]", "verdict"] == "holds"
    assert c.loc["S5.d[statistics path]", "verdict"] == "holds"


def test_claims_fail_when_the_prediction_fails(job_files):
    c = claims_for(2.0, bn_flat=False, extra=job_files["broken"], share=0.1)
    for cid in ["S5.a", "S5.c", "S5.d", "S5.e"]:
        assert c.loc[cid, "verdict"] == "fails", (cid, c.loc[cid].to_dict())
    assert c.loc["S5.a[read-out L3, tanh s=2, at init]", "verdict"] == "fails"
    assert c.loc["S5.c[curvature, hidden L1]", "verdict"] == "fails"
    assert c.loc["S5.c[curvature, hidden L1, tanh s=2]", "verdict"] == "fails"


def test_share_inconclusive_without_a_bn_advantage(job_files):
    c = claims_for(1.02, bn_flat=True, extra=job_files["good"], bn_gain=0.0)
    assert c.loc["S5.e", "verdict"] == "inconclusive"
    assert not np.isfinite(c.loc["S5.e", "ci_low"])  # Fieller: unbounded when the denominator is not significant


def test_share_ci_is_fieller():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.1, 6), rng.normal(2.0, 0.1, 6)
    s = ics_claims.share_ci([a], [b])
    assert s["value"] == pytest.approx(a.mean() / b.mean())
    assert s["low"] < s["value"] < s["high"]
    # at each end of the interval the paired t test of a - theta b sits exactly on the critical value
    from scipy import stats as st

    for theta in (s["low"], s["high"]):
        d = a - theta * b
        t = abs(d.mean()) / (d.std(ddof=1) / np.sqrt(len(d)))
        assert t == pytest.approx(st.t.ppf(0.975, s["df"]), rel=0.05)


def test_share_ci_coverage():
    """Simulated coverage of the Fieller interval at 3 seeds x 2 strata (nominal 95%)."""
    rng = np.random.default_rng(1)
    true, hits, n = 0.6, 0, 2000
    for _ in range(n):
        den = [rng.normal(0.5, 0.15, 3), rng.normal(0.3, 0.15, 3)]
        num = [true * d + rng.normal(0, 0.1, 3) for d in den]
        s = ics_claims.share_ci(num, den)
        lo, hi = (s["low"], s["high"]) if np.isfinite(s["low"]) else (-np.inf, np.inf)
        hits += lo <= true <= hi
    assert 0.93 <= hits / n <= 0.97, hits / n


# the smoke run through Snakemake --------------------------------------------------------------------

def test_smoke_outputs(smoke_workdir):
    v = smoke_workdir / "results" / "ics_conditioning" / "latest"
    claims = pd.read_csv(v / "claims.csv")
    got = dict(zip(claims.claim_id, claims.verdict))
    for cid in ["S5.c", "S5.c[per_unit]", "S5.c[per_unit_matched]", "S5.d", "S5.d[direct path]",
                "S5.d[statistics path]"]:
        assert got[cid] == "holds", (cid, claims[claims.claim_id == cid].to_dict("records"))
    assert list(claims[claims.kind.isin(["headline", "identity"])].claim_id) == list(ics.HEADLINES)
    assert list(claims[claims.kind == "identity"].claim_id) == ["S5.c", "S5.d"]
    assert set(claims.verdict) <= set(VERDICTS)
    # smoke sweeps one rate besides lr: the headline S5.e compares at the chosen rates, the common rate is a cell
    s5e = claims.set_index("claim_id").loc["S5.e"]
    assert s5e.verdict != "not run" and "rates swept 0.05, 0.2" in s5e.claim and "compared at: tanh s=2:" in s5e.claim
    assert "S5.e[common lr]" in set(claims.claim_id)
    for name in ["eig_vs_nu", "spectra_centering", "invariance", "training_curves", "curvature_over_training",
                 "bn_advantage_share", "lr_sweep"]:
        assert (v / "figures" / f"{name}.png").stat().st_size > 10_000


# S5.e: strata by condition, the learning-rate sweep, subsets -------------------------------------------

def test_s5e_is_mixed_when_conditions_disagree(job_files):
    """Centering recovers 80% of BN's advantage for tanh + 2 and none of it for logistic: the pooled share (about
    0.4) hides two answers, so the headline is mixed and names the condition on each side."""
    cfg = study_cfg(conditions=COND4 + LOGISTIC, lr_sweep={"lrs": []})
    logistic = speed_runs({("none", "logistic", 0.0, False): 2.0, ("none", "logistic", 0.0, True): 2.0,
                           ("bn_pre", "logistic", 0.0, False): 1.0})
    m, s = joined(synthetic(1.02, bn_flat=True, share=0.8), logistic)
    c = finalize(ics.analyze(m, s, cfg, job_files["good"])).set_index("claim_id")
    assert c.loc["S5.e", "verdict"] == "not run" and "'lr_sweep.lrs'" in c.loc["S5.e", "basis"]  # no sweep
    assert c.loc["S5.e[common lr]", "kind"] == "cell"
    assert c.loc["S5.e[common lr, tanh s=2]", "verdict"] == "holds"
    assert c.loc["S5.e[common lr, logistic s=0]", "verdict"] == "fails"
    # with a sweep (here: the sweep runs are the main runs' twins at 0.2, slower for every variant) the headline
    # compares at the chosen rates, and its strata are the conditions
    cfg = study_cfg(conditions=COND4 + LOGISTIC, lr_sweep={"lrs": [0.2]})
    slow = speed_runs({k: 2.5 for k in [("none", a, sh, cen) for a, sh in [("tanh", 2.0), ("logistic", 0.0)]
                                        for cen in (False, True)] + [("bn_pre", "tanh", 2.0, False),
                                                                     ("bn_pre", "logistic", 0.0, False)]}, sweep_lr=0.2)
    m, s = joined(synthetic(1.02, bn_flat=True, share=0.8), logistic, slow)
    raw = ics.analyze(m, s, cfg, job_files["good"]).set_index("claim_id")
    # each stratum states the share's threshold (its first part, the contrast, is "> 0"); the parts are named
    spec = raw.loc["S5.e", "_strata"]["tanh s=2"]
    assert spec["threshold"] == "> 0.5" and spec["fail_margin"] == 0.5
    assert [p.label for p in spec["parts"]] == ["centering's gain - 0.5 x BN's, (L_U - L_C) - 0.5 (L_U - L_B)",
                                                "BN's gain L_U - L_B"]
    c = finalize(raw.reset_index()).set_index("claim_id")
    row = c.loc["S5.e"]
    assert row["kind"] == "headline" and row["verdict"] == "mixed", row.to_dict()
    assert row["strata"] == "holds: tanh s=2; fails: logistic s=0"
    assert c.loc["S5.e[tanh s=2]", "verdict"] == "holds" and c.loc["S5.e[logistic s=0]", "verdict"] == "fails"
    assert "compared at: tanh s=2: uncentered 0.05*, centered 0.05*, BN 0.05*" in row["claim"]  # the sweep's low end
    assert "at an end of the sweep, the variant's best rate may lie beyond it" in row["claim"]
    assert row["fail_margin"] == 0.5 and row["threshold"] == "> 0.5"


def test_s5e_compares_each_variant_at_its_best_rate(job_files):
    """The sweep picks each variant's rate by its seed-mean train loss over the other seeds (leave one seed out: no
    seed is compared at a rate its own runs chose); a diverged run counts at chance level. Here BN gains most from a
    higher rate and the uncentered net diverges there on seeds 0 and 1: at the common rate centering recovers 80% of BN's
    advantage (the cell holds), at the best rates much less (the headline fails)."""
    cfg = study_cfg(conditions=COND4, lr_sweep={"lrs": [0.02, 0.2]})
    base = synthetic(1.02, bn_flat=True, share=0.8)  # at 0.05: U 2.0, C 1.28, B 1.1 (tanh s=2)
    lo = speed_runs({("none", "tanh", 2.0, False): 2.2, ("none", "tanh", 2.0, True): 1.9,
                     ("bn_pre", "tanh", 2.0, False): 1.3}, sweep_lr=0.02)
    hi = speed_runs({("none", "tanh", 2.0, False): 1.98, ("none", "tanh", 2.0, True): 1.2,
                     ("bn_pre", "tanh", 2.0, False): 0.2}, sweep_lr=0.2)
    hi[1].loc[(hi[1].variant == "none-tanh-s2-lr0.2") & hi[1].seed.isin([0, 1]), "status"] = "diverged"
    m, s = joined(base, lo, hi)
    from normlab.studies.ics_conditioning import claims as ics_claims

    table = ics_claims.sweep_table(m, s, cfg)
    assert sorted(table.lr.unique()) == [0.02, 0.05, 0.2]
    assert ics_claims.chosen_lrs(table) == {("none", "tanh s=2"): 0.05, ("none", "tanh s=2 centered"): 0.2,
                                            ("bn_pre", "tanh s=2"): 0.2}
    # held out: every seed's rate comes from the other four, which hold at least one divergence at 0.2: 0.05
    held = ics_claims.held_out_lrs(table)
    assert held[("none", "tanh s=2")] == {k: 0.05 for k in range(5)}
    assert set(held[("bn_pre", "tanh s=2")].values()) == {0.2}
    c = finalize(ics.analyze(m, s, cfg, job_files["good"])).set_index("claim_id")
    assert c.loc["S5.e[common lr]", "value"] == pytest.approx(0.8, abs=0.05)
    assert c.loc["S5.e[common lr]", "verdict"] == "holds"
    # best rates: U 2.0 (0.05), C 1.2 (0.2), B 0.2 (0.2): share 0.8 / 1.8 = 0.44
    assert c.loc["S5.e", "value"] == pytest.approx(0.444, abs=0.02)
    assert c.loc["S5.e", "verdict"] == "fails"
    assert "rates swept 0.02, 0.05, 0.2" in c.loc["S5.e", "claim"] and "leave one seed out" in c.loc["S5.e", "claim"]
    assert "compared at: tanh s=2: uncentered 0.05, centered 0.2*, BN 0.2*" in c.loc["S5.e", "claim"]
    assert c.loc["S5.e", "strata"] == ""  # one condition: nothing to stratify
    # the sweep runs are not main runs: S5.a-c and the curves read the main runs only
    assert c.loc["S5.c[speed]", "n_seeds"] == 5


def test_s5e_rates_are_chosen_on_the_other_seeds():
    """Leave one seed out: seed k is compared at the rate with the lowest mean select loss over the other seeds, so a
    seed whose own runs favour a rate does not pick it for itself."""
    from normlab.studies.ics_conditioning import claims as ics_claims

    rows = [{"norm": "none", "condition": "c", "seed": k, "lr": lr, "select_loss": loss}
            for k, (a, b) in enumerate([(1.0, 2.0), (1.0, 2.0), (3.0, 0.5)]) for lr, loss in ((0.1, a), (0.2, b))]
    table = pd.DataFrame(rows)
    assert ics_claims.chosen_lrs(table) == {("none", "c"): 0.2}  # every seed: means 1.67 (0.1) vs 1.5 (0.2)
    # seed 2 alone favours 0.2, and it is what tips the all-seed choice: without it, 0.1
    assert ics_claims.held_out_lrs(table) == {("none", "c"): {0: 0.2, 1: 0.2, 2: 0.1}}
    runs = table.rename(columns={"select_loss": "speed_loss"})
    got = ics_claims._at(runs, {0: 0.2, 1: 0.2, 2: 0.1})
    assert list(runs[got].itertuples(index=False, name=None)) == [("none", "c", 0, 0.2, 2.0), ("none", "c", 1, 0.2, 2.0),
                                                                   ("none", "c", 2, 0.1, 3.0)]


@pytest.mark.parametrize("over, missing", SUBSETS[:4])
def test_subset_claims_are_not_run_rows(over, missing, job_files):
    """A config with part of the grid gives one row per headline; those it cannot test say "not run" and what
    they need, the others are judged."""
    cfg = study_cfg(**{"lr_sweep": {"lrs": []}, **over})
    m, s = synthetic(1.02, bn_flat=True)
    conds = {cond_label(*ics_claims_cond(x)) for x in cfg["conditions"]}
    keep = s.norm.isin(cfg["norms"]) & s.condition.isin(conds) & (~s.center | s.norm.isin(cfg["center_norms"]))
    m = m.merge(s[keep][["variant", "seed"]], on=["variant", "seed"])
    c = finalize(ics.analyze(m, s[keep], cfg, job_files["good"])).set_index("claim_id")
    heads = c[c.kind.isin(["headline", "identity"])]
    assert list(heads.index) == list(ics.HEADLINES)
    for cid in ics.HEADLINES:
        if cid in missing:
            assert heads.loc[cid, "verdict"] == "not run" and missing[cid] in heads.loc[cid, "basis"], cid
        elif cid != "S5.e":  # S5.e: no sweep here
            assert heads.loc[cid, "verdict"] != "not run", cid
    assert heads.loc["S5.c", "verdict"] == "holds" and heads.loc["S5.d", "verdict"] == "holds"


def ics_claims_cond(x: dict):
    return x["act"], float(x.get("shift", 0.0)), bool(x.get("center", False))


def test_subset_config_writes_every_declared_figure(tmp_path, job_files):
    """The analysis requires every declared figure: one the config cannot draw says what it needs."""
    cfg = study_cfg(norms=["none"], lr_sweep={"lrs": []})
    m, s = synthetic(1.02, bn_flat=True)
    keep = s.norm == "none"
    m = m.merge(s[keep][["variant", "seed"]], on=["variant", "seed"])
    c = finalize(ics.analyze(m, s[keep], cfg, job_files["good"]))
    written = ics.figures(m, s[keep], c, cfg, tmp_path, job_files["good"])
    assert {p.name for p in written if p.suffix == ".png"} == {f.file for f in ics.FIGURES}
    assert all(p.stat().st_size > 5000 for p in written)
