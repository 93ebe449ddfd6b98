"""make clean-results: lists, then removes, every version but `latest` and the newest of each config name."""

import json
import os

from normlab.clean import main, stale_versions


def _version(study_dir, name, finished):
    v = study_dir / name
    (v / "runs").mkdir(parents=True)
    (v / "manifest.json").write_text(json.dumps({"finished": finished}))
    return v


def test_keeps_latest_and_newest_per_config_name(tmp_path, capsys):
    s = tmp_path / "bn_placement"
    old = _version(s, "default-00000001", "2026-01-01T00:00:00")
    new = _version(s, "default-00000002", "2026-02-01T00:00:00")
    smoke = _version(s, "smoke-00000003", "2026-01-15T00:00:00")
    pinned = _version(s, "default-00000004", "2025-12-01T00:00:00")  # older, but `latest` points at it
    os.symlink(pinned.name, s / "latest")
    assert stale_versions(tmp_path) == [old]
    main(["--results", str(tmp_path)])  # dry run: lists, removes nothing
    assert "would remove" in capsys.readouterr().out and old.exists()
    main(["--results", str(tmp_path), "--yes"])
    assert not old.exists() and new.exists() and smoke.exists() and pinned.exists()
    main(["--results", str(tmp_path)])
    assert "nothing to remove" in capsys.readouterr().out


def _run(study_dir, variant, block):
    d = study_dir / "runs" / variant / block / "seed0"
    d.mkdir(parents=True)
    (d / "summary.json").write_text("{}")
    log = study_dir / "logs" / "train" / variant / f"{block}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    return d.parent


def _link(vdir, variant, run):
    (vdir / "runs" / variant).mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(run / "seed0", vdir / "runs" / variant), vdir / "runs" / variant / "seed0")


def test_removes_runs_no_kept_version_links(tmp_path, capsys):
    s = tmp_path / "bn_placement"
    old = _version(s, "default-00000001", "2026-01-01T00:00:00")
    new = _version(s, "default-00000002", "2026-02-01T00:00:00")
    shared, only_old, orphan = (_run(s, "a", "s0-0-0000000a"), _run(s, "b", "s0-0-0000000b"),
                                _run(s, "c", "s0-0-0000000c"))
    _link(old, "a", shared), _link(new, "a", shared), _link(old, "b", only_old)
    side = s / "side" / "dln-0000000d" / "dln"
    side.mkdir(parents=True)
    os.symlink(os.path.relpath(side, new), new / "dln")
    main(["--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert str(only_old) in out and str(orphan) in out and str(shared) not in out and "dln-" not in out
    assert only_old.exists()  # a dry run removes nothing
    main(["--results", str(tmp_path), "--yes"])
    assert not old.exists() and not only_old.exists() and not orphan.exists()
    assert not (s / "logs" / "train" / "b" / "s0-0-0000000b.log").exists()
    assert shared.exists() and side.exists() and (new / "runs" / "a" / "seed0" / "summary.json").exists()
    main(["--results", str(tmp_path)])
    assert "nothing to remove" in capsys.readouterr().out
