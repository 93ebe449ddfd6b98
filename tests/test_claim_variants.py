"""Each study's ``claim_variants(cfg)`` (the training variants each headline claim's estimate reads) checked
against the data: on the smoke run's results, drop one variant's last seed from the runs, re-run the study's
``analyze``, and the headline claims whose estimate changed (value, interval, verdict, any part's or stratum's
estimate; NaN or an error counts as a change) must be exactly those whose declared list holds that variant.

The smoke run is the session fixture ``smoke_workdir`` (conftest.py: one real Snakemake run of the smoke
config, shared with the other tests); ``NORMLAB_SMOKE_DIR`` may point at a folder where that run already
exists (results/<study>/smoke-*). The estimates are compared before ``finalize`` (whose multiplicity rule
couples the claims of a family through their adjusted levels), so a change is the claim's own."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from normlab import studies
from normlab.analyze import load_runs
from normlab.config import merge, validate

STUDIES = ["santurkar", "li_arora", "norm_growth", "bn_placement", "ics_conditioning"]


def may_not_change(study: str, cid: str, variant: str, cfg: dict, metrics, summary) -> str | None:
    """Why removing a seed of ``variant`` may leave ``cid`` unchanged although the claim reads it (None: it must
    change). S5.e reads every rate of the sweep to choose each seed's rate (the arg min over rates of the other
    seeds' mean loss), but compares the seeds only at the chosen rates: a seed of a rate no seed was compared at
    can leave the choice, and so the claim, as it was."""
    if (study, cid) == ("ics_conditioning", "S5.e"):
        from normlab.studies.ics_conditioning.claims import s5e_data

        keys = studies.get(study).variants(cfg)[variant]["keys"]
        lr = keys.get("sweep_lr", cfg["lr"])
        used = set(s5e_data(metrics, summary, cfg).get("held_out", {}).get((keys["norm"], keys["condition"]), {}).values())
        if lr not in used:
            return f"rate {lr:g} read by the choice of rate only (compared at {sorted(used)})"
    return None


@pytest.fixture(scope="module")
def smoke(request) -> Path:
    d = os.environ.get("NORMLAB_SMOKE_DIR")
    return Path(d) if d else request.getfixturevalue("smoke_workdir")


def version_dir(root: Path, study: str) -> Path:
    dirs = [p for p in (root / "results" / study).glob("smoke-*") if (p / "claims.csv").exists()]
    assert dirs, f"no analysed smoke version of {study} under {root / 'results' / study}"
    return max(dirs, key=lambda p: (p / "claims.csv").stat().st_mtime)


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _same(a: tuple, b: tuple) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, float) or isinstance(y, float):
            x, y = _num(x), _num(y)
            if math.isnan(x) and math.isnan(y):
                continue
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif x != y:
            return False
    return True


def signature(row) -> tuple:
    """What a headline claim's estimate is: value, interval, verdict, and every part's and stratum's estimate."""
    out = [_num(row["value"]), _num(row["ci_low"]), _num(row["ci_high"]), row["verdict"]]
    for p in row.get("_parts") or []:
        out += [float(p.est.value), float(p.est.se), float(p.est.df), p.est.n]
    for label, spec in sorted((row.get("_strata") or {}).items()):
        out.append(label)
        for p in spec["parts"]:
            out += [float(p.est.value), float(p.est.se), float(p.est.df), p.est.n]
    return tuple(out)


def headlines(study: str, metrics, summary, cfg: dict, extra: dict) -> dict:
    df = studies.get(study).analyze(metrics, summary, cfg, extra)
    return {r["claim_id"]: signature(r) for r in df.to_dict("records") if r["kind"] == "headline"}


def drop_last_seed(metrics, summary, variant: str):
    last = summary[summary.variant == variant].seed.max()
    keep_m = ~((metrics.variant == variant) & (metrics.seed == last))
    keep_s = ~((summary.variant == variant) & (summary.seed == last))
    return metrics[keep_m].reset_index(drop=True), summary[keep_s].reset_index(drop=True)


@pytest.mark.parametrize("study", STUDIES)
def test_declared_variants_are_what_the_claims_read(smoke, study):
    vdir = version_dir(smoke, study)
    cfg = json.loads((vdir / "config.json").read_text())["study_config"]
    extra = studies.extra_inputs(study, cfg, vdir)
    metrics, summary = load_runs(vdir)
    declared = studies.get(study).claim_variants(cfg)
    base = headlines(study, metrics, summary, cfg, extra)
    assert set(declared) == set(base), "claim_variants must name every headline claim the study emits"
    names = set(studies.get(study).variants(cfg))
    assert set(summary.variant) == names
    wrong = []
    for v in sorted(names):
        m, s = drop_last_seed(metrics, summary, v)
        try:
            after = headlines(study, m, s, cfg, extra)
        except Exception as e:  # noqa: BLE001  an error is a change of every claim (reported as such)
            after = {cid: ("raised", repr(e)) for cid in base}
        changed = {cid for cid in base if not _same(base[cid], after.get(cid, ()))}
        reads = {cid for cid, vs in declared.items() if v in vs}
        allowed = {cid for cid in reads - changed if may_not_change(study, cid, v, cfg, metrics, summary)}
        if changed != reads - allowed:
            wrong.append(f"drop {v}'s last seed: changed {sorted(changed)}, declared {sorted(reads)}")
    assert not wrong, f"{study}: claim_variants disagrees with the data:\n" + "\n".join(wrong)


def _cfg(study: str, over: dict) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg = merge(cfg, {"studies": {study: copy.deepcopy(over)}})
    validate(cfg)
    return cfg["studies"][study]


SUBSETS = [
    ("bn_placement", {"norms": ["bn_pre", "none"]}, {"S4.a": 0, "S4.b": 0}),
    ("bn_placement", {"norms": ["bn_pre", "bn_post"], "activations": ["tanh"], "lrs": [0.1]}, {"S4.c": 0, "S4.a": 2}),
    ("santurkar", {"norms": ["none", "bn_pre"]}, {"S1.a": 0}),
    ("li_arora", {"schedules": ["step_wd", "texp_practical"]}, {"S2.c": 0, "S2.b": 2}),
    ("norm_growth", {"variants": {"unit_norm": {"enabled": False}, "sgd_trained_out_real": {"enabled": False}}},
     {"S3.e": 0, "S3.f": 0}),
    ("ics_conditioning", {"lr_sweep": {"lrs": []}}, {"S5.e": 0}),
    ("ics_conditioning", {"norms": ["none"], "center_norms": ["none"]}, {"S5.e": 0}),
]


@pytest.mark.parametrize("study, over, sizes", SUBSETS)
def test_subset_configs_declare_only_their_variants(study, over, sizes):
    """On a subset config every declared name is a variant of it, and a claim it cannot run reads nothing."""
    cfg = _cfg(study, over)
    declared = studies.get(study).claim_variants(cfg)
    names = set(studies.get(study).variants(cfg))
    for cid, vs in declared.items():
        assert set(vs) <= names, (cid, vs)
        assert len(vs) == len(set(vs)), (cid, vs)
    for cid, n in sizes.items():
        assert len(declared[cid]) == n, (cid, declared[cid])


def test_every_study_declares_claim_variants():
    for study in studies.STUDIES:
        assert callable(getattr(studies.get(study), "claim_variants", None)), study
