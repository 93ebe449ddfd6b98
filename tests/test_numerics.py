"""The numerics version guards run reuse: a tiny run's metrics against the values stored for this version.

Runs are keyed by their spec and ``normlab.numerics.NUMERICS`` (normlab.plan), so a change that alters
numbers must raise ``NUMERICS``, or old runs would be reused for new code. This test fails when a tiny
run's numbers move while ``NUMERICS`` did not. After raising it (a deliberate numerics change), store
the new values: ``python tests/test_numerics.py --update``.

float64 is compared to 1e-9 (rounding differences between CPUs stay far below; a real change moves
numbers by far more), float32 to 1e-4.
"""

import json
import sys
from pathlib import Path

import pytest
import torch

from normlab import data as data_mod
from normlab.engine import run
from normlab.numerics import NUMERICS

STORED = Path(__file__).parent / "data" / "numerics.json"
TOL = {"float64": 1e-9, "float32": 1e-4}
METRICS = ("batch_loss", "train_loss", "test_loss", "test_acc", "lr")


def tiny_spec(data: Path, dtype: str, norm: str) -> dict:
    return {"study": "t", "key": f"{norm}/s0-1-00000000", "variant": norm, "keys": {}, "seeds": [0, 1],
            "data": str(data), "device": "cpu", "numerics": NUMERICS,
            "model": {"arch": "mlp", "depth": 2, "width": 16, "norm": norm, "act": "relu",
                      "noise": {"n_mu": 0.5, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1}},
            "optimizer": {"name": "sgd", "momentum": 0.9, "weight_decay": 5e-4}, "lr": 0.1,
            "schedule": {"name": "step", "milestones": [30], "factor": 10},
            "train": {"steps": 40, "batch_size": 32, "eval_every": 20, "log_every": 10, "dtype": dtype},
            "probes": [], "wandb": {"mode": "disabled", "save_weights": False}}


def measure(tmp: Path) -> dict:
    torch.set_num_threads(1)
    data = tmp / "mnist1d.pt"
    data_mod.prepare("mnist1d", {"num_samples": 600}, data)
    import pandas as pd

    out = {}
    for dtype in TOL:
        for norm in ("bn_pre", "noisy_bn"):
            run(tiny_spec(data, dtype, norm), tmp / f"{dtype}-{norm}")
            for seed in (0, 1):
                m = pd.read_parquet(tmp / f"{dtype}-{norm}" / f"seed{seed}" / "metrics.parquet")
                m = m[m.metric.isin(METRICS)]
                out[f"{dtype}/{norm}/seed{seed}"] = {f"{r.metric}@{r.step}": float(r.value) for r in m.itertuples()}
    return out


def test_numbers_match_the_stored_values_of_this_numerics_version(tmp_path):
    stored = json.loads(STORED.read_text())
    assert stored["numerics"] == NUMERICS, (
        f"NUMERICS is {NUMERICS} but tests/data/numerics.json holds version {stored['numerics']}'s values: "
        "store this version's with `python tests/test_numerics.py --update`")
    got = measure(tmp_path)
    assert set(got) == set(stored["runs"])
    moved = []
    for run_name, values in stored["runs"].items():
        tol = TOL[run_name.split("/")[0]]
        assert set(got[run_name]) == set(values), run_name
        for k, v in values.items():
            if got[run_name][k] != pytest.approx(v, rel=tol, abs=tol):
                moved.append(f"{run_name} {k}: stored {v!r}, now {got[run_name][k]!r}")
    assert not moved, ("a tiny run's numbers changed while normlab.numerics.NUMERICS did not: raise it (every run "
                       "retrains) and store the new values, or undo the change:\n" + "\n".join(moved[:10]))


if __name__ == "__main__" and "--update" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        STORED.parent.mkdir(exist_ok=True)
        STORED.write_text(json.dumps({"numerics": NUMERICS, "runs": measure(Path(d))}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {STORED}")
