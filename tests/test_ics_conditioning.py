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
from normlab.studies import ics_checks
from normlab.studies import ics_conditioning as ics

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
    assert "none-tanh-s2-centered" in v and "bn_pre-tanh-s2-centered" not in v  # center_norms: [none]
    assert len(v) == 2 * 5 + 2
    spec = v["none-tanh-s1"]
    assert spec["model"]["arch"] == "shifted_mlp" and spec["model"]["shift"] == 1.0
    assert spec["probes"][0]["name"] == "curvature" and spec["probes"][0]["network_kinds"] == ["hessian"]
    from normlab.probes import build_probe

    p = build_probe(spec["probes"][0])
    assert p.layers == [1, -1] and p.kinds == ["ggn"]


@pytest.mark.parametrize("over, key", [
    ({"curvature": {"layers": [5]}}, "curvature.layers[0]"),
    ({"invariance": {"layer": 2, "depth": 2}}, "invariance.layer"),
])
def test_bad_config_names_key(over, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        ics.variants(study_cfg(**over))


def test_schema_rejects_unknown_norm():
    with pytest.raises(ConfigError, match="norms"):
        study_cfg(norms=["noisy_bn"])


# claims logic on synthetic probe data ------------------------------------------------------------

def synthetic(ratio_none: float, bn_flat: bool, seeds=(0, 1, 2)):
    """Metrics/summary as the engine writes them. Without BN the GGN eigenvalues are ratio_none times
    K-FAC's prediction (for nu > 10); with BN they equal it, or (bn_flat) do not grow with nu at all."""
    rows, summ = [], []
    conds = [("tanh", 0.0, False, 1.5), ("tanh", 1.0, False, 65.0), ("tanh", 2.0, False, 250.0), ("tanh", 2.0, True, 1.0)]
    for norm in ["none", "bn_pre"]:
        for act, shift, center, nu in conds:
            if center and norm == "bn_pre":
                continue
            variant = f"{norm}-{act}-s{shift:g}" + ("-centered" if center else "")
            keys = dict(norm=norm, act=act, shift=shift, center=center, condition=ics.cond_label(act, shift, center))
            loss = 1.0 + shift * (0.5 if norm == "none" and not center else 0.05)
            for seed in seeds:
                rng = np.random.default_rng(seed)
                for layer in ["L1", "L3"]:
                    s_eigs = np.sort(rng.uniform(0.01, 0.1, 6))[::-1] * (1 + 0.01 * rng.standard_normal())
                    for j, se in enumerate(s_eigs, 1):
                        pred = nu * se
                        if norm == "none":
                            meas = (ratio_none if nu > 10 else 1.0) * pred
                        else:
                            meas = 2.0 * se if bn_flat else pred
                        rows += [(0, f"curv/{layer}/kfac_pred/eig{j}", pred), (0, f"curv/{layer}/ggn/eig{j}", meas),
                                 (0, f"curv/{layer}/ggn/overlap{j}", 0.99)]
                    rows.append((0, f"curv/{layer}/nu", nu))
                rows.append((10, "train_loss", loss))
                rows = [(*r, variant, seed, keys) if len(r) == 3 else r for r in rows]
                summ.append({"variant": variant, "seed": seed, **keys, "status": "ok", "final_train_loss": loss})
    m = pd.DataFrame([{"step": r[0], "metric": r[1], "value": r[2], "variant": r[3], "seed": r[4], **r[5]} for r in rows])
    return m, pd.DataFrame(summ)


def claims_for(ratio_none, bn_flat):
    cfg = study_cfg(conditions=[{"act": "tanh", "shift": 0.0}, {"act": "tanh", "shift": 1.0}, {"act": "tanh", "shift": 2.0},
                                {"act": "tanh", "shift": 2.0, "center": True}], claims={"n_boot": 200})
    m, s = synthetic(ratio_none, bn_flat)
    return ics.analyze(m, s, cfg, {}).set_index("claim_id")


def test_claims_hold_when_the_prediction_holds():
    c = claims_for(1.02, bn_flat=True)
    assert c.loc["S5.a[read-out L3, at init]", "verdict"] == "holds"
    assert c.loc["S5.a[hidden L1, at init]", "value"] == pytest.approx(1.02)
    assert c.loc["S5.a[growth, hidden L1]", "value"] == pytest.approx(1.0)
    assert c.loc["S5.c[curvature, hidden L1]", "verdict"] == "holds"
    assert c.loc["S5.c[curvature, hidden L1, tanh s=2]", "verdict"] == "holds"
    assert c.loc["S5.b[read-out L3, tanh s=2, none]", "verdict"] == "holds"
    assert c.loc["S5.c[speed]", "verdict"] == "holds"
    assert list(c.reset_index().columns) == ["claim_id", "claim", "source", "metric", "value", "ci_low", "ci_high",
                                             "threshold", "verdict", "n_seeds"]


def test_claims_fail_when_the_prediction_fails():
    c = claims_for(2.0, bn_flat=False)
    assert c.loc["S5.a[read-out L3, at init]", "verdict"] == "fails"
    assert c.loc["S5.c[curvature, hidden L1]", "verdict"] == "fails"
    assert c.loc["S5.c[curvature, hidden L1, tanh s=2]", "verdict"] == "fails"


# the smoke run through Snakemake --------------------------------------------------------------------

def test_smoke_outputs(smoke_workdir):
    v = smoke_workdir / "results" / "ics_conditioning" / "latest"
    claims = pd.read_csv(v / "claims.csv")
    got = dict(zip(claims.claim_id, claims.verdict))
    for cid in ["S5.c[shift_scale]", "S5.c[per_unit]", "S5.c[per_unit_matched]", "S5.d[identity]",
                "S5.d[direct path]", "S5.d[statistics path]"]:
        assert got[cid] == "holds", (cid, claims[claims.claim_id == cid].to_dict("records"))
    assert {c[:4] for c in got} == {"S5.a", "S5.b", "S5.c", "S5.d"}
    assert set(claims.verdict) <= {"holds", "fails", "inconclusive"}
    for name in ["eig_vs_nu", "spectra_centering", "invariance", "training_curves", "curvature_over_training"]:
        assert (v / "figures" / f"{name}.png").stat().st_size > 10_000
