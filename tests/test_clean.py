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
