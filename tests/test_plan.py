"""The run plan (normlab.plan): config in, jobs and specs out, written once into the version folder."""

import json

import yaml
from conftest import ROOT

from normlab import plan
from normlab.config import resolved_study_config, validate


def cfg():
    full = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return validate(full)


def test_train_specs_are_complete_and_versioned():
    c = cfg()
    for study in plan.enabled(c):
        specs = plan.train_specs(c, study)
        assert specs, study
        for name, spec in specs.items():
            assert spec["variant"] == name and spec["study"] == study
            assert spec["version"] == plan.version(c, study)
            assert spec["seeds"] == list(range(c["studies"][study]["seeds"]))
            assert spec["data"] == plan.data_file(c, study)
            assert {"model", "train"} <= set(spec)


def test_write_is_idempotent_and_changes_with_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = cfg()
    plan.write(c, "bn_placement")
    p = tmp_path / plan.config_path(c, "bn_placement")
    assert json.loads(p.read_text()) == json.loads(json.dumps(resolved_study_config(c, "bn_placement")))
    spec_files = sorted((p.parent / "specs").glob("*.json"))
    assert len(spec_files) == len(plan.train_specs(c, "bn_placement"))
    mtimes = [f.stat().st_mtime_ns for f in [p, *spec_files]]
    plan.write(c, "bn_placement")  # same content: files untouched
    assert [f.stat().st_mtime_ns for f in [p, *spec_files]] == mtimes
    c["studies"]["bn_placement"]["lrs"] = [0.05]
    assert plan.version_dir(c, "bn_placement") != str(p.parent.relative_to(tmp_path))


def test_cli_prints_the_version_folder(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    plan.main(["santurkar", "config/smoke.yaml"])
    out = capsys.readouterr().out.strip()
    assert out.startswith("results/santurkar/smoke-") and len(out.rsplit("-", 1)[1]) == 8
