"""Learning-rate schedules: step decay, and Li & Arora's exponential and TEXP (exact equivalents of weight decay)."""

import math
import subprocess
import sys

import pytest
import torch

from normlab.schedules import (
    ExponentialSchedule,
    ScaledSchedule,
    build_schedule,
    growth_per_epoch,
    li_arora_alpha,
    step,
)

SGD = {"name": "sgd", "momentum": 0.9}


def test_step_divides_at_each_milestone():
    lr = build_schedule({"name": "step", "milestones": [10, 20], "factor": 10}, 0.1, SGD)
    assert [lr(t) for t in (0, 9, 10, 19, 20, 99)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


@pytest.mark.parametrize("lr,wd,mom", [(0.1, 5e-4, 0.9), (0.5, 5e-3, 0.0), (0.05, 1e-3, 0.95), (1.0, 0.1, 0.3)])
def test_alpha_is_the_larger_root_of_the_quadratic(lr, wd, mom):
    a = li_arora_alpha(lr, wd, mom)
    assert a * a - (1 + mom - lr * wd) * a + mom == pytest.approx(0, abs=1e-14)
    assert 0 < a < 1 and a >= mom / a - 1e-15  # the larger root (the other is gamma / alpha)
    if mom == 0:
        assert a == pytest.approx(1 - lr * wd, abs=1e-15)


def test_paper_growth_factor_per_epoch_is_1_481():
    """CIFAR-10, batch 128 (391 steps per epoch), eta 0.1, gamma 0.9, lambda 5e-4: the paper's 1.481."""
    assert round(growth_per_epoch(0.1, 5e-4, 0.9, 391), 3) == 1.481
    out = subprocess.run([sys.executable, "-m", "normlab.schedules", "--lr", "0.1", "--weight-decay", "5e-4",
                          "--momentum", "0.9", "--batch-size", "128", "--n-train", "50000"],
                         capture_output=True, text=True, check=True).stdout
    print(out)
    assert "391 steps per epoch" in out and "growth per epoch = 1.481" in out


def test_no_real_root_is_a_clear_error():
    with pytest.raises(ValueError, match="no real root"):
        li_arora_alpha(0.02, 1e-2, 0.99)  # lambda*eta = 2e-4 > (1 - sqrt(0.99))^2 = 2.5e-5


def test_exponential_closed_form_and_its_initial_buffer():
    lr, wd, mom = 0.1, 5e-4, 0.9
    s = build_schedule({"name": "exponential", "weight_decay": wd}, lr, SGD)
    a = li_arora_alpha(lr, wd, mom)
    assert isinstance(s, ExponentialSchedule)
    assert s(0) == pytest.approx(lr / a, rel=1e-15) and s(1000) == pytest.approx(lr * a ** -2001, rel=1e-13)
    assert s.scale(0) == 1 and s.scale(7) == pytest.approx(a ** -7, rel=1e-15)
    assert s.buffer_coef == pytest.approx((a - 1) / (lr * a), rel=1e-15)
    w = torch.nn.Parameter(torch.randn(5))
    opt = torch.optim.SGD([w], lr=1.0, momentum=mom)
    s.init_optimizer_state(opt)
    assert torch.allclose(opt.state[w]["momentum_buffer"], s.buffer_coef * w.detach())


def test_texp_without_milestones_is_the_exponential_schedule():
    """The general recurrence started at its fixed point stays there (to rounding)."""
    lr, wd = 0.1, 5e-4
    t = build_schedule({"name": "texp", "milestones": [], "weight_decay": wd}, lr, SGD)
    e = build_schedule({"name": "exponential", "weight_decay": wd}, lr, SGD)
    for k in (0, 1, 10, 1000, 5000):
        assert t(k) == pytest.approx(e(k), rel=1e-12) and t.scale(k) == pytest.approx(e.scale(k), rel=1e-12)


def test_texp_phase_boundary_rule():
    """At a milestone T: eta'_T = eta'_{T-1} / (C a_{T-1} a_T); then the growth relaxes to the new phase's alpha^-2."""
    lr, wd, mom, C, T = 0.1, 5e-4, 0.9, 10.0, 400
    s = build_schedule({"name": "texp", "milestones": [T], "factor": C, "weight_decay": wd}, lr, SGD)
    a_old, a_new = li_arora_alpha(lr, wd, mom), li_arora_alpha(lr / C, wd, mom)
    assert s(T - 1) / s(T - 2) == pytest.approx(a_old ** -2, rel=1e-12)  # phase 0: pure exponential growth
    a_T = 1 + (mom / C) * (1 - 1 / a_old) - wd * lr / C
    assert s(T) / s(T - 1) == pytest.approx(1 / (C * a_old * a_T), rel=1e-12)
    assert s(T + 600) / s(T + 599) == pytest.approx(a_new ** -2, rel=1e-10)
    # the paper's rule (jump to a_T = alpha_new) differs at the boundary: that difference is the momentum correction
    assert abs(a_T - a_new) > 1e-9  # ~2e-7 here: far above rounding, small but it breaks exactness


def test_texp_rates_are_step_decay_times_the_scales():
    """eta'_t = eta_t c_t c_{t+1} with eta_t the step-decay rate it replaces."""
    spec = {"name": "texp", "milestones": [50, 80], "factor": 5, "weight_decay": 1e-3}
    s, base = build_schedule(spec, 0.2, SGD), step(spec, 0.2, SGD)
    assert isinstance(s, ScaledSchedule)
    for t in (0, 49, 50, 79, 80, 150):
        assert s(t) == pytest.approx(base(t) * s.scale(t) * s.scale(t + 1), rel=1e-14)


def test_exponential_schedules_need_weight_decay_and_sgd():
    with pytest.raises(ValueError, match="weight_decay"):
        build_schedule({"name": "exponential"}, 0.1, SGD)
    with pytest.raises(ValueError, match="SGD"):
        build_schedule({"name": "texp", "weight_decay": 1e-3}, 0.1, {"name": "adam"})
    with pytest.raises(ValueError, match="unknown schedule"):
        build_schedule({"name": "cosine"}, 0.1, SGD)


def test_engine_sets_the_initial_buffer(tmp_path):
    """Through the training engine (float64, BN eps ~ 0): constant + WD and exponential without WD give the
    same batch losses (batch statistics) at every logged step, thanks to the schedule's init hook."""
    from normlab import data as data_mod
    from normlab.engine import run

    torch.set_num_threads(1)
    path = tmp_path / "d.pt"
    data_mod.prepare("mnist1d", {"num_samples": 600}, path)
    base = {"study": "t", "key": "a/s0-0-00000000", "keys": {}, "seeds": [0], "data": str(path), "device": "cpu",
            "model": {"arch": "mlp", "depth": 2, "width": 16, "norm": "bn_pre", "act": "relu", "scale_invariant": True,
                      "bn_eps": 1e-30},
            "lr": 0.1, "train": {"steps": 300, "batch_size": 32, "eval_every": 300, "log_every": 5, "dtype": "float64"},
            "probes": []}
    run({**base, "variant": "a", "optimizer": {"name": "sgd", "momentum": 0.9, "weight_decay": 5e-3},
         "schedule": {"name": "constant"}}, tmp_path / "a")
    run({**base, "variant": "b", "optimizer": {"name": "sgd", "momentum": 0.9},
         "schedule": {"name": "exponential", "weight_decay": 5e-3}}, tmp_path / "b")
    import pandas as pd

    la, lb = [pd.read_parquet(tmp_path / v / "seed0" / "metrics.parquet") for v in "ab"]
    la, lb = [d[d.metric == "batch_loss"].value.to_numpy() for d in (la, lb)]
    assert len(la) == 61 and math.isfinite(la[-1])
    assert abs(la - lb).max() < 1e-10
    assert la[0] - la[-1] > 0.1  # it did train


# The paper's practical TEXP -------------------------------------------------------------------------

def test_practical_texp_rates_at_phase_boundaries():
    """Inside phase k the rate grows by alpha_k^-2; at a milestone it is divided by C * alpha_{k-1} * alpha_k."""
    lr, wd, mom, C, (T1, T2) = 0.1, 5e-4, 0.9, 10.0, (300, 450)
    s = build_schedule({"name": "texp_practical", "milestones": [T1, T2], "factor": C, "weight_decay": wd}, lr, SGD)
    a = [li_arora_alpha(lr / C**k, wd, mom) for k in range(3)]
    assert s(0) == pytest.approx(lr / a[0], rel=1e-14)
    assert s(1) / s(0) == pytest.approx(a[0] ** -2, rel=1e-12) and s(T1 - 1) / s(T1 - 2) == pytest.approx(a[0] ** -2, rel=1e-12)
    assert s(T1) / s(T1 - 1) == pytest.approx(1 / (C * a[0] * a[1]), rel=1e-12)
    assert s(T1 + 1) / s(T1) == pytest.approx(a[1] ** -2, rel=1e-12)  # no transient: straight to the new growth
    assert s(T2) / s(T2 - 1) == pytest.approx(1 / (C * a[1] * a[2]), rel=1e-12)
    assert s(T2 + 5) / s(T2 + 4) == pytest.approx(a[2] ** -2, rel=1e-12)
    assert not hasattr(s, "init_optimizer_state")  # zero initial momentum buffer, as plain PyTorch


def test_practical_texp_without_milestones_is_the_exponential_rate():
    e = build_schedule({"name": "exponential", "weight_decay": 1e-3}, 0.2, SGD)
    p = build_schedule({"name": "texp_practical", "milestones": [], "weight_decay": 1e-3}, 0.2, SGD)
    for t in (0, 1, 17, 1000):
        assert p(t) == pytest.approx(e(t), rel=1e-11)


def test_practical_texp_is_close_to_the_exact_one_but_not_equal():
    """Without the momentum correction the rates differ after a milestone by a small constant factor."""
    spec = {"milestones": [200], "factor": 10.0, "weight_decay": 5e-4}
    p = build_schedule({"name": "texp_practical", **spec}, 0.1, SGD)
    x = build_schedule({"name": "texp", **spec}, 0.1, SGD)
    assert p(199) == pytest.approx(x(199), rel=1e-12)  # identical in phase 0 (both start at alpha_0)
    r = p(600) / x(600)
    assert 1e-9 < abs(r - 1) < 1e-2
    assert p(800) / x(800) == pytest.approx(r, rel=1e-9)  # after the transient: a constant factor


def _toy_pair(sched_b: dict, sched_a: dict, steps=400, lr=0.2, wd=2e-3, mom=0.9, init_b=True):
    """A scale-invariant toy loss (float64): L(w) = 0.5 ||A_t w/||w|| - b_t||^2 on random mini-batches.
    Run A: sched_a + WD; run B: sched_b without WD. Returns max normalized-weight gap and max norm-ratio error."""
    g = torch.Generator().manual_seed(0)
    A, b = torch.randn(256, 12, generator=g, dtype=torch.float64), torch.randn(256, generator=g, dtype=torch.float64)
    w0 = torch.randn(12, generator=g, dtype=torch.float64)
    wa, wb = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    oa = torch.optim.SGD([wa], lr=lr, momentum=mom, weight_decay=wd)
    ob = torch.optim.SGD([wb], lr=lr, momentum=mom)
    la = build_schedule(sched_a, lr, {"name": "sgd", "momentum": mom, "weight_decay": wd})
    lb = build_schedule({**sched_b, "weight_decay": wd}, lr, {"name": "sgd", "momentum": mom})
    if init_b and hasattr(lb, "init_optimizer_state"):
        lb.init_optimizer_state(ob)
    gap = ratio_err = 0.0
    for t in range(steps):
        idx = torch.randint(0, 256, (16,), generator=g)
        for w, o, s in ((wa, oa, la), (wb, ob, lb)):
            o.param_groups[0]["lr"] = s(t)
            o.zero_grad()
            (0.5 * ((A[idx] @ (w / w.norm()) - b[idx]) ** 2).sum()).backward()
            o.step()
        with torch.no_grad():
            gap = max(gap, (wa / wa.norm() - wb / wb.norm()).norm().item())
            if hasattr(lb, "scale"):
                ratio_err = max(ratio_err, abs(wb.norm().item() / (wa.norm().item() * lb.scale(t + 1)) - 1))
    return gap, ratio_err


def test_float64_equivalence_on_a_scale_invariant_toy_loss():
    """The theorem on a toy: constant + WD == exponential, step + WD == exact TEXP, to 1e-11 over 400 steps;
    the practical TEXP and the zero-buffer exponential are close but measurably not exact."""
    step_ = {"name": "step", "milestones": [150, 300], "factor": 10.0}
    gap, err = _toy_pair({"name": "exponential"}, {"name": "constant"})
    assert gap < 1e-11 and err < 1e-11
    gap, err = _toy_pair({"name": "texp", "milestones": [150, 300], "factor": 10.0}, step_)
    assert gap < 1e-11 and err < 1e-11
    gap, _ = _toy_pair({"name": "texp_practical", "milestones": [150, 300], "factor": 10.0}, step_)
    assert 1e-8 < gap < 0.2
    gap, _ = _toy_pair({"name": "exponential"}, {"name": "constant"}, init_b=False)
    assert gap > 1e-8
