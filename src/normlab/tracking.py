"""Weights & Biases tracking that never fails, slows or hangs the pipeline.

``mode``: auto (online when logged in, else offline) | online | offline | disabled. wandb is
imported only when a run starts in a mode other than disabled. Offline runs are written under
``dir/wandb/`` (the result version's folder) and uploaded later with ``make sync`` (``wandb sync``).
If an online run cannot start (server unreachable, timeout), the run falls back to offline (same id)
and says so in one log line, and the process's later runs start offline at once; any other W&B error
disables tracking for that run instead of failing the job.

Runs have deterministic ids (``run_id``: from study, run key, seed) and start with
``resume="allow"``, so a job killed and rerun continues the same W&B run. Offline, W&B writes one
``offline-run-<time>-<id>`` folder per process; a killed process's folder holds at most part of
its records (W&B's service does not flush them on a kill), so a resumed training run re-logs the
checkpoint's history and its folder alone holds the whole run. ``sync_dirs`` (``make sync``) picks
the newest folder of each run id:

    python -m normlab.tracking results/*/latest resources    # the folders to `wandb sync` (a version
                                                              # folder brings the run folders it links)

Lineage: ``log_artifact`` records an output, ``use_artifact`` an input. Offline, an input is
recorded as the artifact itself (same name, same files, hence same digest) marked
``use_after_commit``: ``wandb sync`` links it to the version its producer logged.
"""

from __future__ import annotations

import hashlib
import netrc
import os
import re
import sys
from pathlib import Path


def logged_in() -> bool:
    """True when an API key is configured (env var or ~/.netrc), checked without network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc(os.environ.get("NETRC", str(Path.home() / ".netrc")))
    except (OSError, netrc.NetrcParseError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].rstrip("/")
    return rc.authenticators(host) is not None


def resolve_mode(mode: str) -> str:
    if os.environ.get("WANDB_MODE") in ("disabled", "offline", "online"):
        return os.environ["WANDB_MODE"]  # an explicit environment setting wins
    if mode == "auto":
        return "online" if logged_in() else "offline"
    return mode


def run_id(*parts) -> str:
    """A deterministic W&B run id from its identity, e.g. (study, run key, seed)."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:16]


def artifact_name(*parts) -> str:
    """A valid W&B artifact name from its parts (other characters than [A-Za-z0-9._-] become '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(map(str, parts))).strip("-")[:128]


def run_artifact(study: str, version: str, variant: str, seed: int) -> str:
    """Name of the artifact of one seed's outputs (``run_files``), type "run": logged by the training
    run, used by the analysis run."""
    return artifact_name("run", study, version, variant, f"seed{seed}")


def run_files(seed_dir: str | Path) -> dict:
    """{name in the artifact: path} of one seed's outputs."""
    return {f: Path(seed_dir) / f for f in ("metrics.parquet", "summary.json")}


_OFFLINE = re.compile(r"^offline-run-(\d{8}_\d{6})-(.+)$")


def sync_dirs(roots) -> list[Path]:
    """The offline run folders to upload under ``<root>/wandb/``: the newest one of each run id (older
    ones are superseded by the resumed run, which holds the whole history)."""
    newest: dict[str, Path] = {}
    for root in roots:
        for d in sorted(Path(root).glob("wandb/offline-run-*")):
            m = _OFFLINE.match(d.name)
            if m and d.is_dir() and any(d.glob("run-*.wandb")):
                key = f"{Path(root).resolve()}|{m.group(2)}"
                if key not in newest or m.group(1) >= _OFFLINE.match(newest[key].name).group(1):
                    newest[key] = d
    return sorted(newest.values())


# A failed wandb.init leaves its run id registered in this process's W&B service (wandb-core's stream
# mux: only Run.finish unregisters an id), so a second wandb.init with that id fails ("run ID ... is in
# use"). The offline fallback therefore first shuts the service down (wandb.teardown), which also ends
# every other run of the process: only done while none of ours is running. Once an online start has
# failed, the process's later runs start offline at once (no more waits of init_timeout).
_running: set = set()  # runs started by Trackers and not finished
_online_failed = False


def settings(spec: dict | None = None) -> dict:
    """W&B settings (mode, project, entity, init_timeout, save_weights): the spec's ``wandb``, else those the
    Snakefile exports in NORMLAB_WANDB (kept out of rule params, so that switching W&B mode reruns nothing),
    else disabled."""
    import json

    return (spec or {}).get("wandb") or json.loads(os.environ.get("NORMLAB_WANDB", '{"mode": "disabled"}'))


def labels(w: dict, study: str | None = None) -> dict:
    """What a run says of the configs that read it: {"configs": [name], "versions": [version of ``study``]} from the
    W&B settings the Snakefile exports (``config``: the config's name, ``versions``: {study: its version folder's
    name}); {} when they name no config (a job run by hand). Kept out of the run's spec and key: a run is shared
    by every config that asks for its spec, so these say who read it, never what it is."""
    name = w.get("config")
    if not name:
        return {}
    version = (w.get("versions") or {}).get(study) if study else None
    return {"configs": [name], "versions": [version] if version else []}


def label_tags(lab: dict) -> list[str]:
    """A run's tags for its readers: ``config:<name>`` per config, ``version:<version folder>`` per version."""
    return [f"config:{c}" for c in lab.get("configs", [])] + [f"version:{v}" for v in lab.get("versions", [])]


def train_group(study: str, variant: str, lab: dict) -> str:
    """A training run's W&B group: ``<config>/<study>/<variant>`` (the config that trained it), so that one
    config's runs group apart from another's; ``<study>/<variant>`` without a config name."""
    return "/".join([*lab.get("configs", [])[:1], study, variant])


def tracker(w: dict, **run) -> "Tracker":
    """The Tracker of one run from W&B settings ``w`` (``settings``) and the run's own fields (group, name,
    job_type, config, dir, tags, id); every run of a config's jobs is also tagged ``config:<name>``."""
    if w.get("config"):
        run["tags"] = list(dict.fromkeys([*(run.get("tags") or []), f"config:{w['config']}"]))
    return Tracker(mode=w.get("mode", "disabled"), project=w.get("project", "normlab"), entity=w.get("entity"),
                   init_timeout=w.get("init_timeout", 20), **run)


class Tracker:
    """One W&B run; every method is a no-op when disabled or after an error."""

    def __init__(self, *, mode: str, project: str, entity=None, group: str, name: str, job_type: str,
                 config: dict, dir: str | Path, init_timeout: float = 20, tags=None, id: str | None = None,
                 resume: str | None = "allow"):
        self.run = None
        self.mode = resolve_mode(mode)
        if self.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_CONSOLE", "off")
        import wandb

        Path(dir).mkdir(parents=True, exist_ok=True)
        kwargs = dict(project=project, entity=entity, group=group, name=name, job_type=job_type,
                      config=config, dir=str(dir), tags=tags, reinit="create_new", id=id,
                      resume=resume if id is not None else None)
        global _online_failed
        if self.mode == "online" and _online_failed:
            print(f"[tracking] wandb.init(online) failed earlier in this process: run {name} starts offline",
                  file=sys.stderr)
            self.mode = "offline"
        for attempt in ("online", "offline") if self.mode == "online" else (self.mode,):
            try:  # git info and system metrics on (GPU charts on CUDA); the console is not captured
                self.run = wandb.init(mode=attempt, settings=wandb.Settings(
                    init_timeout=init_timeout, silent=True, console="off", save_code=False), **kwargs)
                self.mode = attempt
                _running.add(self.run)
                return
            except Exception as e:  # never let tracking fail a job
                fallback = "; falling back to offline" if attempt == "online" else ""
                msg = " ".join(str(e).split())  # one line
                print(f"[tracking] wandb.init({attempt}) failed: {type(e).__name__}: {msg}{fallback}",
                      file=sys.stderr)
                if attempt == "online":
                    _online_failed = True
                    if not _running:  # frees the run id for the offline run (see _running)
                        try:
                            wandb.teardown()
                        except (Exception, SystemExit):  # (it may sys.exit with the service's exit code)
                            pass
        self.mode = "disabled"

    @property
    def run_dir(self):
        return getattr(self.run, "dir", None)

    def _off(self, what: str, e: Exception) -> None:
        print(f"[tracking] {what} failed, tracking off: {type(e).__name__}: {e}", file=sys.stderr)
        self.run = None

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self.run is not None:
            try:
                self.run.log(metrics, step=step)
            except Exception as e:
                self._off("log", e)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            try:
                self.run.summary.update(values)
            except Exception:
                pass

    def log_table(self, key: str, df) -> None:
        if self.run is not None:
            import wandb

            try:
                table = wandb.Table(dataframe=df)
            except Exception as e:
                print(f"[tracking] table {key} not logged: {type(e).__name__}: {e}", file=sys.stderr)
                return
            self.log({key: table})

    def log_images(self, paths) -> None:
        if self.run is not None:
            import wandb

            try:
                images = {f"figures/{Path(p).stem}": wandb.Image(str(p)) for p in paths}
            except Exception as e:
                print(f"[tracking] figures not logged: {type(e).__name__}: {e}", file=sys.stderr)
                return
            self.log(images)

    @staticmethod
    def _artifact(name: str, type: str, paths, metadata=None):
        """An artifact of files and folders: ``paths`` is {name in the artifact: local path} or a list."""
        import wandb

        art = wandb.Artifact(artifact_name(name), type=type, metadata=metadata or {})
        items = paths.items() if isinstance(paths, dict) else ((Path(p).name, p) for p in paths)
        for inside, p in items:
            p = Path(p)
            if p.is_dir():
                art.add_dir(str(p), name=inside)
            else:  # immutable: no staging copy (our outputs are written once, atomically)
                art.add_file(str(p), name=inside, policy="immutable")
        return art

    def log_artifact(self, name: str, type: str, paths, aliases=None, metadata=None) -> None:
        """Record an output of this run (a new version when its files changed)."""
        if self.run is None:
            return
        try:
            self.run.log_artifact(self._artifact(name, type, paths, metadata), aliases=aliases or None)
        except Exception as e:
            print(f"[tracking] log_artifact({name}) failed: {type(e).__name__}: {e}", file=sys.stderr)

    def use_artifact(self, name: str, type: str, paths, metadata=None) -> None:
        """Record an input of this run: the artifact ``name`` made of these files (the producer's version:
        same files, same digest). Offline (where ``run.use_artifact`` refuses), the artifact record is
        written marked use_after_commit, which is what ``use_artifact`` of a new artifact does online."""
        if self.run is None:
            return
        try:
            art = self._artifact(name, type, paths, metadata)
            if self.mode == "offline":
                # wandb has no public call for this offline (run.use_artifact raises); this private one is
                # what it calls online for a new artifact. tests/test_install.py fails if it moves or changes.
                self.run._log_artifact(art, is_user_created=True, use_after_commit=True)
            else:
                self.run.use_artifact(art)
        except Exception as e:
            print(f"[tracking] use_artifact({name}) failed: {type(e).__name__}: {e}", file=sys.stderr)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            try:
                self.run.finish(exit_code=exit_code)
            except Exception as e:
                print(f"[tracking] finish failed: {e}", file=sys.stderr)
            _running.discard(self.run)
            self.run = None


def readers(version_dirs) -> dict[str, dict]:
    """{training run id: {"configs": [...], "versions": [...]}}: every config and version (folder names) that read
    each training run, from the version folders' links (``runs/<variant>/seed<k>``, whose ``summary.json``
    names its W&B run id). A run reused by two configs lists both."""
    import json

    from .io import config_name

    out: dict[str, dict] = {}
    for v in map(Path, version_dirs):
        for link in sorted(v.glob("runs/*/seed*")):
            try:
                summ = json.loads((link / "summary.json").read_text())
            except (OSError, ValueError):
                continue
            rid = (summ.get("wandb") or {}).get("run_id") or run_id(summ.get("study"), summ.get("key"), summ.get("seed"))
            lab = out.setdefault(rid, {"configs": [], "versions": []})
            for k, x in (("configs", config_name(v.name)), ("versions", v.name)):
                if x not in lab[k]:
                    lab[k] = sorted([*lab[k], x])
    return out


def label_runs(version_dirs, project: str, entity: str | None = None, api=None, timeout: float = 20) -> dict:
    """Online, after the runs are uploaded (``make sync``): tag every training run the version folders read with
    ``config:<name>`` and ``version:<version>`` of each reader and set its config ``normlab`` = {configs, versions}
    (``readers``), adding to what it has. A run trained by one config and reused by another then says so.
    Returns counts {"labelled", "absent"} (absent: not uploaded yet). Never raises for one run."""
    if api is None:
        import wandb

        api = wandb.Api(timeout=timeout)
    entity = entity or getattr(api, "default_entity", None)
    done = {"labelled": 0, "absent": 0}
    for rid, lab in readers(version_dirs).items():
        try:
            run = api.run(f"{entity}/{project}/{rid}")
        except Exception:  # noqa: BLE001 (not uploaded, or no access: the others still get their labels)
            done["absent"] += 1
            continue
        have = dict(run.config.get("normlab") or {})
        merged = {k: sorted(set(have.get(k) or []) | set(lab[k])) for k in ("configs", "versions")}
        tags = sorted(set(run.tags or []) | set(label_tags(merged)))
        if tags != sorted(run.tags or []) or merged != have:
            run.tags = tags
            run.config["normlab"] = merged
            try:
                run.update()
            except Exception as e:  # noqa: BLE001
                print(f"[tracking] labels of run {rid} not saved: {type(e).__name__}: {e}", file=sys.stderr)
                continue
        done["labelled"] += 1
    return done


def default_project(config_file: Path = Path("config/config.yaml")) -> str:
    """The default config's ``wandb.project`` (else ``normlab``): the project ``make sync`` labels runs in."""
    try:
        import yaml

        return ((yaml.safe_load(Path(config_file).read_text()) or {}).get("wandb") or {}).get("project") or "normlab"
    except (OSError, ValueError):
        return "normlab"


def main(argv=None):
    """Print the offline run folders to upload (``sync_dirs``) of the given result folders; with ``--label``
    (online, after the upload) tag the training runs they read with their configs and versions (``label_runs``)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("roots", nargs="*", type=Path, help="folders holding a wandb/ folder (result versions, resources)")
    ap.add_argument("--label", action="store_true", help="label the uploaded training runs of these version folders")
    ap.add_argument("--project", default=None, help="W&B project (default: wandb.project of config/config.yaml)")
    ap.add_argument("--entity", default=None)
    a = ap.parse_args(argv)
    if a.label:
        if not logged_in():
            print("[tracking] not logged in to W&B: `wandb login`, then `make sync` labels the runs")
            return
        vdirs = [r for r in a.roots if (r / "manifest.json").exists()]
        done = label_runs(vdirs, a.project or default_project(), a.entity)
        print(f"[tracking] {done['labelled']} training runs labelled with their configs and versions"
              + (f"; {done['absent']} not uploaded" if done["absent"] else ""))
        return
    for d in sync_dirs(with_runs(a.roots)):
        print(d)


def with_runs(roots) -> list[Path]:
    """``roots`` and, for a version folder, the run folders it links (``runs/<variant>/seed<k>`` -> a seed of
    ``<study>/runs/<variant>/<block>``, whose W&B runs live in ``<block>/wandb/``), each once."""
    out = []
    for root in map(Path, roots):
        out.append(root)
        for link in sorted(root.glob("runs/*/seed*")):
            if link.is_symlink():
                out.append(link.resolve().parent)
    return list(dict.fromkeys(out))


if __name__ == "__main__":
    main()
