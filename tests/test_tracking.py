"""W&B tracking through the real client, offline, reading back what it wrote (the run files).

A training job killed after a checkpoint and rerun continues ONE W&B run (same deterministic id,
resume "allow"): its two offline folders together hold every logged step exactly once, the first
before the resume step, the second from it on. The dataset, run, model and analysis artifacts (the
lineage dataset -> runs -> claims) are in the offline run files. Progress lines reach stderr.
The run-file reader below uses wandb's own protobuf definitions; it lives in the tests only.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("wandb")
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- reading W&B run files
def records(path: Path):
    """The protobuf records of a W&B transaction log (``run-<id>.wandb``: a LevelDB-style log)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if not data:  # a killed process's file may be empty
        return
    assert data[:4] == b":W&B", path
    i, buf, block, header = 7, b"", 32768, 7
    while i + header <= len(data):
        left = block - i % block
        if left < header:
            i += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[i:i + header])
        chunk = data[i + header:i + header + n]
        i += header + n
        if kind == 1:
            payload = chunk
        elif kind == 2:
            buf = chunk
            continue
        elif kind == 3:
            buf += chunk
            continue
        elif kind == 4:
            payload, buf = buf + chunk, b""
        else:
            continue
        r = pb.Record()
        r.ParseFromString(payload)
        yield r


def read_run(run_dir: Path) -> dict:
    """id, name, job_type, group, config (top-level keys), history {(step, key): value}, artifacts [(type, name, used, files)] and their
    digests {(type, name, used): digest}, git commit, system-metrics records, machine's cpu_count."""
    info = {"dir": run_dir, "run_id": None, "history": {}, "artifacts": [], "digests": {}, "git": None, "stats": 0,
            "cpu_count": 0}
    (f,) = run_dir.glob("run-*.wandb")
    for r in records(f):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info.update(run_id=r.run.run_id, name=r.run.display_name, job_type=r.run.job_type,
                        group=r.run.run_group, git=r.run.git.commit or None, tags=list(r.run.tags),
                        config={(it.key or it.nested_key[0]): json.loads(it.value_json) for it in r.run.config.update})
        elif kind == "history":
            row = {(it.key or it.nested_key[0]): json.loads(it.value_json) for it in r.history.item}
            for k, v in row.items():
                if not k.startswith("_"):
                    key = (row["_step"], k)
                    assert key not in info["history"], f"{key} logged twice in {run_dir.name}"
                    info["history"][key] = v
        elif kind == "artifact":
            a = r.artifact
            info["artifacts"].append((a.type, a.name, a.use_after_commit,
                                      sorted(e.path for e in a.manifest.contents)))
            info["digests"][(a.type, a.name, a.use_after_commit)] = a.digest
        elif kind == "stats":
            info["stats"] += 1
        elif kind == "environment" and r.environment.cpu_count:
            info["cpu_count"] = r.environment.cpu_count
    return info


def runs_in(folder: Path) -> list[dict]:
    return [read_run(d) for d in sorted(Path(folder).glob("wandb/offline-run-*")) if d.is_dir()]


# ---------------------------------------------------------------------------- a tiny training job
JOB = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    from normlab import engine
    spec, out, ckpt, kill_at = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    save = engine.atomic_torch_save

    def killing_save(obj, path):  # the kill: just before the checkpoint of step kill_at is written
        if isinstance(obj, dict) and obj.get("step") == kill_at:
            time.sleep(3)  # let W&B's service write what it was sent (a kill loses records in flight)
            os.kill(os.getpid(), signal.SIGKILL)
        save(obj, path)

    engine.atomic_torch_save = killing_save
    engine.torch.set_num_threads(1)
    engine.run(spec, out, ckpt)
""")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small MNIST-1D file prepared by prepare_data's CLI, W&B offline (logs the dataset artifact)."""
    root = tmp_path_factory.mktemp("res")
    out = root / "data" / "mnist1d-test0000.pt"
    env = {**os.environ, "WANDB_MODE": "offline", "NORMLAB_WANDB": json.dumps({"mode": "offline", "project": "t"})}
    subprocess.run([sys.executable, "-m", "normlab.data", "--name", "mnist1d", "--params", '{"num_samples": 600}',
                    "--out", str(out)], check=True, env=env, cwd=root, timeout=120)
    return out


def job(spec, study_dir: Path, kill_at: int = -1) -> subprocess.CompletedProcess:
    """The train job of ``spec`` as its rule runs it: into ``<study>/runs/<key>``, checkpoints in ``<study>/.ckpt``."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-c", JOB, json.dumps(spec), str(study_dir / "runs" / spec["key"]),
                           str(study_dir / ".ckpt" / spec["key"]), str(kill_at)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


def tiny_spec(data, **train):
    return {"study": "t", "key": "a/s0-1-00000000", "variant": "a", "keys": {}, "seeds": [0, 1], "data": str(data),
            "device": "cpu", "model": {"arch": "mlp", "depth": 2, "width": 16, "norm": "bn_pre", "act": "relu"},
            "optimizer": {"name": "sgd"}, "lr": 0.1, "schedule": {"name": "constant"},
            "train": {"steps": 200, "batch_size": 32, "eval_every": 25, "log_every": 10, "ckpt_every": 50, **train},
            "probes": [], "wandb": {"mode": "offline", "project": "t"}}


def test_dataset_artifact_is_logged(dataset):
    (run,) = runs_in(dataset.parent.parent)
    assert run["job_type"] == "prepare_data"
    assert run["artifacts"] == [("dataset", "mnist1d-test0000", False, ["mnist1d-test0000.pt"])]


def test_killed_job_resumes_one_run_with_continuous_steps(dataset, tmp_path):
    from normlab.tracking import run_id, sync_dirs

    study = tmp_path / "t"
    spec = tiny_spec(dataset)
    run_dir = study / "runs" / "a" / "s0-1-00000000"
    p = job(spec, study, kill_at=100)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert "[progress] t/a seeds [0, 1]: step 20/200 (10%)" in p.stderr  # every 10% of the steps
    p = job(spec, study)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resumed from step 50" in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("[progress]")]
    assert lines[-1].startswith("[progress] t/a seeds [0, 1]: step 200/200 (100%) loss ")
    assert " acc " in lines[-1] and " steps/s | ETA " in lines[-1]

    folders = sorted(run_dir.glob("wandb/offline-run-*"))  # a run's W&B runs live in its folder
    ids = {run_id("t", "a/s0-1-00000000", seed) for seed in (0, 1)}
    assert len(folders) == 4 and {f.name.rsplit("-", 1)[1] for f in folders} == ids  # two processes, two ids
    newest = sync_dirs([run_dir])  # what `make sync` uploads: the resumed run's folder of each id
    assert len(newest) == 2 and set(newest) <= set(folders)
    for seed in (0, 1):
        (run,) = [read_run(d) for d in newest if d.name.endswith(run_id("t", "a/s0-1-00000000", seed))]
        assert run["name"] == f"a/seed{seed}" and run["run_id"] == run_id("t", "a/s0-1-00000000", seed)
        m = pd.read_parquet(run_dir / f"seed{seed}" / "metrics.parquet")
        want = {(int(r.step), r.metric): r.value for r in m.itertuples()}
        got = run["history"]  # read_run fails on a (step, key) logged twice
        assert got.keys() == want.keys()  # every step of the run, once: continuous across the kill
        assert all(got[k] == pytest.approx(want[k], rel=1e-6) for k in want)
        if (ROOT / ".git").exists():
            assert run["git"], "git info is recorded"
        assert run["cpu_count"] > 0, "machine info is recorded (system metrics are on)"
        arts = {(t, n, used): files for t, n, used, files in run["artifacts"]}
        assert arts[("dataset", "mnist1d-test0000", True)] == ["mnist1d-test0000.pt"]  # used, not produced
        (prep,) = runs_in(dataset.parent.parent)  # the same version as prepare_data's (the lineage link)
        assert run["digests"][("dataset", "mnist1d-test0000", True)] == prep["digests"][("dataset", "mnist1d-test0000",
                                                                                          False)]
        assert arts[("run", f"run-t-s0-1-00000000-a-seed{seed}", False)] == ["metrics.parquet", "summary.json"]
        assert arts[("model", f"model-t-s0-1-00000000-a-seed{seed}", False)] == ["weights.pt"]
        assert (run_dir / f"seed{seed}" / "weights.pt").exists()
    # `make sync` of a version folder: the W&B runs of the run folders it links (and its own)
    vdir = study / "v-00000000"
    for seed in (0, 1):
        (vdir / "runs" / "a").mkdir(parents=True, exist_ok=True)
        os.symlink(f"../../../runs/a/s0-1-00000000/seed{seed}", vdir / "runs" / "a" / f"seed{seed}")
    listed = subprocess.run([sys.executable, "-m", "normlab.tracking", str(vdir)], capture_output=True, text=True,
                            check=True, timeout=60).stdout.split()
    assert listed == [str(d.resolve()) for d in newest]


# W&B online, server unreachable: one Tracker per seed, all started before any is finished (as the engine
# does), each logs a metric and finishes
SEEDS = textwrap.dedent("""
    import json, sys, time
    from normlab.tracking import Tracker
    out, ids, value = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
    trackers, took = [], []
    for seed, i in enumerate(ids):
        t0 = time.monotonic()
        trackers.append(Tracker(mode="online", project="t", group="t/v", name=f"a/seed{seed}",
                                job_type="train", config={"seed": seed}, dir=out, init_timeout=3, id=i))
        took.append(time.monotonic() - t0)
    for tk in trackers:
        tk.log({"loss": value}, step=0)
        tk.finish()
    print(json.dumps({"modes": [tk.mode for tk in trackers], "took": took}))
""")


def test_unreachable_server_falls_back_to_offline_runs_with_their_ids(tmp_path, monkeypatch):
    """Online against a closed local port (fake key): a failed online start leaves its run id taken in the
    process's W&B service; each seed's run still becomes an offline run with its own id (ready for
    `wandb sync`), within init_timeout plus a few seconds, said in one line each; a second process
    resumes the same runs offline."""
    from normlab.tracking import run_id, sync_dirs

    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on port 9 (discard)
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef" * 2 + "01234567")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    ids = [run_id("t", "v", "a", seed) for seed in range(3)]
    for value in (0.5, 0.25):  # the first process, then a rerun resuming the same runs
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-c", SEEDS, str(tmp_path), json.dumps(ids), str(value)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=90)
        assert p.returncode == 0, p.stderr[-3000:]
        out = json.loads(p.stdout.splitlines()[-1])
        assert out["modes"] == ["offline"] * 3, p.stderr[-3000:]
        assert out["took"][0] < 3 + 5 and max(out["took"][1:]) < 3, out  # one wait of init_timeout in all
        assert time.monotonic() - t0 < 40
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith("[tracking]")]
        assert len(lines) == 3, p.stderr[-3000:]  # one line a run
        assert lines[0].startswith("[tracking] wandb.init(online) failed: ")
        assert lines[0].endswith("; falling back to offline")
        assert lines[1:] == [f"[tracking] wandb.init(online) failed earlier in this process: run a/seed{s} "
                             "starts offline" for s in (1, 2)]

    folders = sorted(tmp_path.glob("wandb/offline-run-*"))
    assert sorted(f.name.rsplit("-", 1)[1] for f in folders) == sorted(ids * 2)  # two processes, own ids
    newest = sync_dirs([tmp_path])  # what `make sync` uploads: the rerun's folder of each id
    assert len(newest) == 3
    for d in folders:
        run = read_run(d)  # (exactly one run-*.wandb file in the folder)
        seed = ids.index(run["run_id"])
        assert d.name.endswith(run["run_id"]) and run["name"] == f"a/seed{seed}"
        assert run["config"]["seed"] == seed
        assert run["history"] == {(0, "loss"): 0.25 if d in newest else 0.5}


def test_weights_switch_and_no_wandb_import_when_disabled(dataset, tmp_path):
    """save_weights false: no weights file; W&B disabled: wandb is never imported, progress still shows."""
    spec = tiny_spec(dataset, steps=30)
    spec["wandb"] = {"mode": "disabled", "save_weights": False}
    code = ("import json, sys; from normlab import engine; engine.run(json.loads(sys.argv[1]), sys.argv[2]); "
            "print('wandb' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(spec), str(tmp_path / "o")], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip() == "False"
    assert not list(tmp_path.glob("o/seed*/weights.pt")) and (tmp_path / "o" / "seed0" / "metrics.parquet").exists()
    assert "step 30/30 (100%)" in p.stderr and not list(tmp_path.rglob("offline-run-*"))


def test_progress_lines_every_tenth_and_every_interval():
    import io
    import time

    from normlab.engine import Progress

    out = io.StringIO()
    p = Progress("s/v seeds [0]", 1000, start_step=300, every_s=0.05, out=out)
    assert p.next_step == 400 and not p.time_due()
    p.line(400, [0.5, float("nan")], [0.25, 0.75])
    assert out.getvalue().startswith("[progress] s/v seeds [0]: step 400/1000 (40%) loss 0.5 acc 0.500 | ")
    assert p.next_step == 500
    time.sleep(0.06)
    assert p.time_due()


def test_analysis_run_uses_run_artifacts_and_logs_one_analysis_artifact(tmp_path):
    """The analysis run (offline): uses each seed's run artifact, logs claims/summary/manifest/figures."""
    from normlab.tracking import run_id

    vdir = tmp_path / "results" / "fake" / "v-11111111"
    run_dir = tmp_path / "results" / "fake" / "runs" / "a" / "s0-1-0000000a"
    for seed in (0, 1):
        d = run_dir / f"seed{seed}"
        d.mkdir(parents=True)
        pd.DataFrame({"step": [0], "metric": ["test_acc"], "value": [0.5]}).to_parquet(d / "metrics.parquet")
        (d / "summary.json").write_text(json.dumps({"variant": "a", "seed": seed, "status": "ok", "final": {}}))

    code = textwrap.dedent("""
        import json, sys
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from normlab import analyze, studies

        class Fake:
            FIGURES = [studies.Figure("fig.png", "fig")]

            @staticmethod
            def analyze(metrics, summary, cfg, extra):
                return [{"claim_id": "F.a", "claim": "c", "source": "s", "metric": "m", "value": 1.0, "ci_low": 0.5,
                         "ci_high": 1.5, "threshold": 0.0, "verdict": "holds", "n_seeds": 2, "kind": "headline"}]

            @staticmethod
            def figures(metrics, summary, claims, cfg, fig_dir, extra):
                plt.figure(figsize=(1, 1)).savefig(fig_dir / "fig.png")
                return [fig_dir / "fig.png"]

        studies.get = lambda name: Fake
        analyze.main(sys.argv[1:])
    """)
    cfg = json.dumps({"study_config": {}, "runs": {"a": ["results/fake/runs/a/s0-1-0000000a"]}, "side": {},
                      "wandb": {"mode": "offline", "project": "t"}})
    p = subprocess.run([sys.executable, "-c", code, "--study", "fake", "--version-dir", str(vdir), "--config", cfg],
                       cwd=tmp_path, env={**os.environ, "WANDB_MODE": "offline"}, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    (run,) = runs_in(vdir)
    assert run["job_type"] == "analysis" and run["run_id"] == run_id("fake", "v-11111111", "analysis")
    arts = {(t, n, used): files for t, n, used, files in run["artifacts"]}
    for seed in (0, 1):
        assert arts[("run", f"run-fake-s0-1-0000000a-a-seed{seed}", True)] == ["metrics.parquet", "summary.json"]
    assert arts[("analysis", "analysis-fake", False)] == ["claims.csv", "figures/fig.png", "manifest.json",
                                                          "summary.parquet"]
    assert json.loads((vdir / "manifest.json").read_text())["wandb_run_id"] == run["run_id"]


def test_reports_are_updated_in_place_found_by_title(monkeypatch):
    """Saving a report overwrites the project's report of the same title (same id); else creates one."""
    import wandb_workspaces.reports.v2 as wr

    from normlab import wandb_reports as wbr

    saved = []
    monkeypatch.setattr(wr.Report, "save", lambda self, **kw: saved.append((self.title, self.id)) or self)
    monkeypatch.setattr(wr.Report, "from_url", classmethod(lambda cls, url: (_ for _ in ()).throw(OSError(url))))

    class Old:
        def __init__(self, title, id, updated_at):
            self.display_name, self.id, self.updated_at, self.url = title, id, updated_at, f"https://x/{id}"

    class Api:
        def reports(self, path):
            assert path == "e/p"
            return [Old("normlab s (v1)", "A", "2026-01-01"), Old("normlab s (v1)", "B", "2026-02-01"),
                    Old("other", "C", "2026-03-01")]

    rep = wr.Report(project="p", entity="e", title="normlab s (v1)", blocks=[wr.H1("new")])
    out, updated = wbr.save_in_place(Api(), rep)
    assert updated and saved == [("normlab s (v1)", "B")]  # the newest report of that title, overwritten
    new = wr.Report(project="p", entity="e", title="normlab s (v2)")
    out, updated = wbr.save_in_place(Api(), new)
    assert not updated and saved[-1][0] == "normlab s (v2)" and not saved[-1][1]

    def load(cls, url):  # the saved report, as W&B returns it
        old = wr.Report(project="p", entity="e", title="stale", blocks=[wr.H1("old")])
        old.id = url.rsplit("/", 1)[1]
        return old

    monkeypatch.setattr(wr.Report, "from_url", classmethod(load))
    out, updated = wbr.save_in_place(Api(), rep)
    assert updated and saved[-1] == ("normlab s (v1)", "B") and out.blocks == rep.blocks


# ---------------------------------------------------------------------------- runs across configs
def test_labels_name_the_config_and_version_never_the_spec():
    from normlab.tracking import label_tags, labels, train_group

    w = {"mode": "offline", "config": "fashion", "versions": {"bn_placement": "fashion-1a2b3c4d"}}
    lab = labels(w, "bn_placement")
    assert lab == {"configs": ["fashion"], "versions": ["fashion-1a2b3c4d"]}
    assert label_tags(lab) == ["config:fashion", "version:fashion-1a2b3c4d"]
    assert train_group("bn_placement", "bn_pre-relu-lr0.02", lab) == "fashion/bn_placement/bn_pre-relu-lr0.02"
    assert labels({"mode": "offline"}, "bn_placement") == {} and train_group("s", "v", {}) == "s/v"  # by hand


def fake_reader(root: Path, study: str, version: str, runs: dict) -> Path:
    """A version folder whose runs/<variant>/seed<k> link to seed folders of run blocks ({variant: {seed: id}})."""
    v = root / study / version
    (v / "manifest.json").parent.mkdir(parents=True, exist_ok=True)
    (v / "manifest.json").write_text("{}")
    for variant, seeds in runs.items():
        for seed, rid in seeds.items():
            d = root / study / "runs" / variant / "s0-1-00000000" / f"seed{seed}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "summary.json").write_text(json.dumps({"study": study, "key": f"{study}/{variant}/s0-1-00000000",
                                                        "seed": seed, "wandb": {"run_id": rid}}))
            (v / "runs" / variant).mkdir(parents=True, exist_ok=True)
            (v / "runs" / variant / f"seed{seed}").symlink_to(d)
    return v


def test_make_sync_labels_a_run_shared_by_two_configs(tmp_path):
    """A run trained by the default config and reused by fashion ends up tagged with both, online."""
    from normlab.tracking import label_runs, readers

    res = tmp_path / "results"
    a = fake_reader(res, "bn_placement", "default-0000aaaa", {"bn_pre": {0: "r0", 1: "r1"}})
    b = fake_reader(res, "bn_placement", "fashion-0000bbbb", {"bn_pre": {0: "r0"}, "bn_post": {0: "r2"}})
    got = readers([a, b])
    assert got["r0"] == {"configs": ["default", "fashion"], "versions": ["default-0000aaaa", "fashion-0000bbbb"]}
    assert got["r1"]["configs"] == ["default"] and got["r2"]["configs"] == ["fashion"]

    class Run:
        def __init__(self, rid):
            self.id, self.tags, self.config, self.saved = rid, ["bn_placement", "config:default"], {}, 0

        def update(self):
            self.saved += 1

    class Api:
        default_entity = "me"

        def __init__(self):
            self.runs = {f"me/p/{r}": Run(r) for r in ("r0", "r1")}  # r2 not uploaded yet

        def run(self, path):
            return self.runs[path]

    api = Api()
    assert label_runs([a, b], "p", api=api) == {"labelled": 2, "absent": 1}
    r0 = api.runs["me/p/r0"]
    assert {"config:default", "config:fashion", "version:default-0000aaaa", "version:fashion-0000bbbb",
            "bn_placement"} == set(r0.tags)
    assert r0.config["normlab"]["configs"] == ["default", "fashion"] and r0.saved == 1
    assert label_runs([a, b], "p", api=api)["labelled"] == 2 and r0.saved == 1  # nothing new: not saved again


def wandb_table(doc: str = "docs/browsing.md") -> dict[str, dict]:
    """docs/browsing.md's table of W&B runs: {job type: {folder, group, name, tags}} (backticked patterns)."""
    import re

    text = (ROOT / doc).read_text().split("## Weights & Biases", 1)[1]
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[0] != "`job type`":
            ticks = [re.findall(r"`([^`]+)`", c) for c in cells]
            out[ticks[0][0]] = {"folder": ticks[2][0], "group": ticks[3][0], "name": ticks[4][0], "tags": ticks[5]}
    return out


def fill(pattern: str, **values) -> str:
    for k, v in values.items():
        pattern = pattern.replace(f"<{k}>", str(v))
    assert "<" not in pattern, pattern
    return pattern


def check_wandb_table(workdir: Path, config: str) -> int:
    """Every offline W&B run of the latest versions under ``workdir/results`` is where docs/browsing.md's table
    says, with its group, name and tags. Returns the number of runs checked."""
    from normlab.tracking import with_runs

    table = wandb_table()
    assert set(table) == {"train", "analysis"}, table
    seen = 0
    for latest in sorted((workdir / "results").glob("*/latest")):
        v, study = latest.resolve(), latest.parent.name
        for root in with_runs([v]):
            for r in runs_in(root):
                folder = str(Path(r["dir"]).parent.relative_to(workdir)) + "/"
                if r["job_type"] == "train":
                    variant, block = Path(r["dir"]).parent.parent.parent.name, Path(r["dir"]).parent.parent.name
                    # the version that trained it: this one, or an earlier version of the config (a reused run)
                    (trainer,) = r["config"]["normlab"]["versions"]
                    assert r["config"]["normlab"]["configs"] == [config] and trainer.startswith(f"{config}-")
                    assert trainer == v.name or (v.parent / trainer).is_dir(), trainer
                    values = dict(study=study, variant=variant, block=block, config=config, version=trainer,
                                  seed=r["config"]["seed"])
                else:
                    values = dict(study=study, version=v.name, config=config)
                row = table[r["job_type"]]
                assert folder == fill(row["folder"], **values), (folder, row["folder"])
                assert (r["group"], r["name"]) == (fill(row["group"], **values), fill(row["name"], **values))
                assert sorted(r["tags"]) == sorted(fill(t, **values) for t in row["tags"]), r["tags"]
                seen += 1
    return seen


def test_docs_describe_the_wandb_runs_of_a_smoke_run(smoke_workdir):
    """docs/browsing.md's table of W&B runs (folders, groups, names, tags) is what a smoke run wrote offline."""
    assert check_wandb_table(smoke_workdir, "smoke") > 0
