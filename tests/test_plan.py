"""The run plan (normlab.plan): every job keyed by what its numbers depend on, nothing written."""

import copy

import yaml
from conftest import ROOT

from normlab import plan
from normlab.config import validate
from normlab.numerics import NUMERICS


def cfg(**studies):
    full = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for s, over in studies.items():
        full["studies"][s].update(over)
    return validate(full)


def edited(c, fn):
    c = copy.deepcopy(c)
    fn(c)
    return validate(c)


def test_train_specs_are_complete_and_keyed():
    c = cfg()
    for study in plan.enabled(c):
        p = plan.build(c, study)
        assert p.runs, study
        for d, spec in p.runs.items():
            assert d == f"results/{study}/runs/{spec['key']}" and spec["study"] == study
            assert spec["data"] == plan.data_file(c, study) and spec["device"] in ("cpu", "cuda")
            assert spec["numerics"] == NUMERICS and {"model", "train"} <= set(spec)
        for variant, dirs in p.by_variant.items():  # a variant's blocks hold each seed once
            seeds = [s for d in dirs for s in p.runs[d]["seeds"]]
            assert seeds == list(range(c["studies"][study]["seeds"])), (study, variant)


def test_seed_blocks():
    assert plan.seed_blocks(5, 5) == [[0, 1, 2, 3, 4]]
    assert plan.seed_blocks(6, 5) == [[0, 1, 2, 3, 4], [5]]
    assert plan.seed_blocks(3, 8) == [[0, 1, 2]]
    assert plan.seed_blocks(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]


def diff(a, b, study):
    """(runs only in b, side jobs only in b, whether the version changed) between two configs."""
    pa, pb = plan.build(a, study), plan.build(b, study)
    return (set(pb.runs) - set(pa.runs), {p for _, _, p in pb.side.values()} - {p for _, _, p in pa.side.values()},
            pa.version != pb.version)


def test_edits_change_only_what_they_touch():
    c = cfg()
    # a claim threshold: no run, no side job; a new analysis version
    new_runs, new_side, v = diff(c, edited(c, lambda x: x["studies"]["santurkar"]["claims"].update(equiv_margin=0.04)),
                                 "santurkar")
    assert not new_runs and not new_side and v
    # the config's name: the same runs and side jobs, a new version name
    renamed = edited(c, lambda x: x.update(name="renamed"))
    for s in plan.enabled(c):
        assert diff(c, renamed, s)[:2] == (set(), set()) and plan.version(renamed, s).startswith("renamed-")
    # W&B: nothing at all
    assert diff(c, edited(c, lambda x: x["wandb"].update(mode="disabled")), "bn_placement") == (set(), set(), False)
    # one more lr: its 9 variants only
    new_runs, _, _ = diff(c, edited(c, lambda x: x["studies"]["bn_placement"].update(lrs=[0.02, 0.1, 0.2, 0.5])),
                          "bn_placement")
    assert len(new_runs) == 9 and all("lr0.2/" in r for r in new_runs)
    # one more seed (blocks of 5): seed 5 alone, one block per variant
    new_runs, _, _ = diff(c, edited(c, lambda x: x["studies"]["bn_placement"].update(seeds=6)), "bn_placement")
    assert len(new_runs) == 27 and all("/s5-5-" in r for r in new_runs)
    # one variant's lr: that variant
    new_runs, _, _ = diff(c, edited(c, lambda x: x["studies"]["norm_growth"]["variants"]["adam"].update(lr=0.02)),
                          "norm_growth")
    assert [r.split("/")[3] for r in new_runs] == ["adam"]
    # a side job's setting: that side job only
    new_runs, new_side, v = diff(c, edited(c, lambda x: x["studies"]["santurkar"]["dln"].update(steps=5000)),
                                 "santurkar")
    assert not new_runs and len(new_side) == 1 and "/side/dln-" in new_side.pop() and v
    # a float32 exactness setting: the float32 exactness job only (float64 runs one seed)
    pa, pb = plan.build(c, "li_arora"), plan.build(
        edited(c, lambda x: x["studies"]["li_arora"]["exactness"].update(float32_seeds=3)), "li_arora")
    assert [n for n in pa.side if pa.side[n][2] != pb.side[n][2]] == ["exact_float32"]
    # another study's edit: nothing here
    assert diff(c, edited(c, lambda x: x["studies"]["li_arora"].update(lr=0.2)), "bn_placement") == (set(), set(), False)


def test_device_kind_not_name():
    c = cfg()
    cpu = edited(c, lambda x: x.update(device="cpu"))
    if plan.device_kind(c) == "cpu":  # auto on a host without a GPU: the same runs as device cpu
        assert set(plan.build(c, "bn_placement").runs) == set(plan.build(cpu, "bn_placement").runs)


def test_build_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = cfg()
    for s in plan.enabled(c):
        plan.build(c, s)
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_the_version_folder(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    plan.main(["santurkar", "config/smoke.yaml"])
    out = capsys.readouterr().out.strip()
    assert out.startswith("results/santurkar/smoke-") and len(out.rsplit("-", 1)[1]) == 8
    plan.main(["bn_placement", "config/smoke.yaml", "--runs"])
    runs = capsys.readouterr().out.split()
    assert runs and all(r.startswith("results/bn_placement/runs/") for r in runs)


def test_an_edit_to_a_studys_analysis_code_makes_a_new_version_of_it_alone(tmp_path, monkeypatch):
    import shutil

    pkg = tmp_path / "normlab"
    shutil.copytree(plan.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(plan, "PACKAGE", pkg)
    c = cfg()
    before = {s: plan.build(c, s) for s in ("bn_placement", "santurkar")}
    with open(pkg / "studies" / "bn_placement" / "__init__.py", "a") as f:
        f.write("\n# an edit to the analysis\n")
    after = {s: plan.build(c, s) for s in ("bn_placement", "santurkar")}
    assert after["bn_placement"].version != before["bn_placement"].version
    assert after["santurkar"].version == before["santurkar"].version
    assert after["bn_placement"].runs == before["bn_placement"].runs  # no run retrains
