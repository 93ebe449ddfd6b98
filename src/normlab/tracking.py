"""Weights & Biases tracking that never fails, slows or hangs the pipeline.

``mode``: auto (online when logged in, else offline) | online | offline | disabled. wandb is
imported only when a run starts in a mode other than disabled. Offline runs are written under
``dir/wandb/`` (the result version's folder) and uploaded later with ``wandb sync``
(see the README). If an online run cannot start (server unreachable, timeout), the run falls
back to offline and says so in the log; any other W&B error disables tracking for that run
instead of failing the job.
"""

from __future__ import annotations

import netrc
import os
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


class Tracker:
    """One W&B run; every method is a no-op when disabled or after an error."""

    def __init__(self, *, mode: str, project: str, entity=None, group: str, name: str, job_type: str,
                 config: dict, dir: str | Path, init_timeout: float = 20, tags=None):
        self.run = None
        self.mode = resolve_mode(mode)
        if self.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_CONSOLE", "off")
        import wandb

        Path(dir).mkdir(parents=True, exist_ok=True)
        kwargs = dict(project=project, entity=entity, group=group, name=name, job_type=job_type,
                      config=config, dir=str(dir), tags=tags, reinit="create_new")
        for attempt in ("online", "offline") if self.mode == "online" else (self.mode,):
            try:
                self.run = wandb.init(mode=attempt, settings=wandb.Settings(
                    init_timeout=init_timeout, silent=True, console="off", x_disable_stats=True,
                    x_disable_machine_info=True, disable_git=True, save_code=False), **kwargs)
                self.mode = attempt
                return
            except Exception as e:  # never let tracking fail a job
                print(f"[tracking] wandb.init({attempt}) failed: {type(e).__name__}: {e}", file=sys.stderr)
        self.mode = "disabled"

    @property
    def run_dir(self):
        return getattr(self.run, "dir", None)

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self.run is not None:
            try:
                self.run.log(metrics, step=step)
            except Exception as e:
                print(f"[tracking] log failed, tracking off: {e}", file=sys.stderr)
                self.run = None

    def summary(self, values: dict) -> None:
        if self.run is not None:
            try:
                self.run.summary.update(values)
            except Exception:
                pass

    def log_table(self, key: str, df) -> None:
        if self.run is not None:
            import wandb

            self.log({key: wandb.Table(dataframe=df)})

    def log_images(self, paths) -> None:
        if self.run is not None:
            import wandb

            self.log({f"figures/{Path(p).stem}": wandb.Image(str(p)) for p in paths})

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            try:
                self.run.finish(exit_code=exit_code)
            except Exception as e:
                print(f"[tracking] finish failed: {e}", file=sys.stderr)
            self.run = None
