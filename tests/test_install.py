"""Installs that reproduce: pyproject.toml bounds each dependency to the major version tested,
requirements.lock pins the exact versions tested (``make setup`` installs it, ``make lock`` writes it),
the two agree, and this venv holds the locked versions. The one private wandb call normlab makes is
checked against the installed wandb. No network: the files and the installed packages' metadata only.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import platform
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from normlab import io

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Left out of the lock (make lock): torch's CUDA libraries, which torch's Linux wheel requires itself.
CUDA = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")


def requirements() -> list[Requirement]:
    """pyproject's dependencies and its dev tools."""
    return [Requirement(r) for r in PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["dev"]]


def lock_lines() -> list[str]:
    return [ln.strip() for ln in LOCK.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_every_dependency_has_an_upper_bound():
    unbounded = [str(r) for r in requirements()
                 if not any(s.operator in ("<", "<=", "==", "~=", "===") for s in r.specifier)]
    assert not unbounded, f"dependencies of pyproject.toml without an upper bound: {unbounded}"


def test_lock_pins_every_line_exactly():
    bad = [ln for ln in lock_lines() if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][A-Za-z0-9.!+]*", ln)]
    assert not bad, f"requirements.lock lines that are not name==version: {bad}"
    names = [canonicalize_name(ln.split("==")[0]) for ln in lock_lines()]
    assert len(names) == len(set(names)), "a package pinned twice in requirements.lock"
    assert "normlab" not in names, "normlab itself is installed by make setup (pip install --no-deps -e .)"
    cuda = [n for n in names if CUDA.match(n)]
    assert not cuda, f"{cuda} in requirements.lock: torch brings the CUDA libraries it needs (its CPU build none)"
    assert io.read_lock(LOCK) == {n: ln.split("==")[1] for n, ln in zip(names, lock_lines())}  # io's reader agrees


def test_lock_pins_every_dependency_within_its_bounds():
    locked = io.read_lock(LOCK)
    missing = [r.name for r in requirements() if canonicalize_name(r.name) not in locked]
    assert not missing, f"dependencies of pyproject.toml not in requirements.lock (run make lock): {missing}"
    outside = [f"{r} (locked {locked[canonicalize_name(r.name)]})" for r in requirements()
               if not r.specifier.contains(locked[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"requirements.lock versions outside pyproject.toml's bounds: {outside}"


def test_requires_python_is_what_the_locked_packages_support():
    """requires-python's lower bound is a Python that every locked package supports (pandas 3, numpy 2.4:
    3.11), and it admits this one."""
    spec = SpecifierSet(PYPROJECT["requires-python"])
    (oldest,) = [Version(s.version) for s in spec if s.operator == ">="]
    assert spec.contains(platform.python_version())
    narrower = []
    for name in io.read_lock(LOCK):
        try:
            rp = metadata.metadata(name)["Requires-Python"]
        except metadata.PackageNotFoundError:
            continue  # (test_installed_versions_match_the_lock names it)
        if rp and not SpecifierSet(rp).contains(oldest):
            narrower.append(f"{name} (Requires-Python {rp})")
    assert not narrower, f"locked packages that do not support Python {oldest} (requires-python): {narrower}"


def test_lock_holds_every_package_normlab_needs():
    """The dependency closure of pyproject's dependencies and dev tools (through the installed packages'
    metadata, markers evaluated here) is in the lock, but for torch's CUDA libraries:
    ``pip install -r requirements.lock`` leaves no version to the resolver."""
    locked, env = io.read_lock(LOCK), default_environment()

    def wanted(r: Requirement, extras) -> bool:
        return r.marker is None or any(r.marker.evaluate({**env, "extra": e}) for e in extras or ("",))

    todo = [(canonicalize_name(r.name), tuple(sorted(r.extras))) for r in requirements() if wanted(r, ())]
    seen, absent = set(), []
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            absent.append(name)
            continue
        todo += [(canonicalize_name(r.name), tuple(sorted(r.extras))) for r in map(Requirement, reqs)
                 if wanted(r, extras)]
    unlocked = sorted({n for n, _ in seen if n not in locked and not CUDA.match(n)})
    assert not unlocked, f"packages normlab needs that requirements.lock does not pin (run make lock): {unlocked}"
    assert not absent, f"packages normlab needs that are not installed: {sorted(set(absent))}"


def test_installed_versions_match_the_lock():
    state = io.lock_state(LOCK)
    assert state["sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert state["matches"], (
        f"installed packages differ from requirements.lock (make setup installs it; make lock rewrites it from "
        f"a tested venv) in {sys.prefix}: " + ", ".join(
            f"{n} {d['installed']} (locked {d['locked']})" for n, d in sorted(state["differs"].items())))
    assert metadata.version("torch").split("+")[0] == io.read_lock(LOCK)["torch"]


def test_lock_state_names_what_differs(tmp_path):
    installed = io.installed_versions()
    torch = installed["torch"].split("+")[0]
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# comment\nPyYAML=={installed['pyyaml']}\ntorch=={torch}\npandas==0.0.1\n"
                    "no-such-package==1.0\n")
    state = io.lock_state(lock)
    assert state["matches"] is False and state["sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert state["differs"] == {"pandas": {"locked": "0.0.1", "installed": installed["pandas"]},
                                "no-such-package": {"locked": "1.0", "installed": None}}
    lock.write_text(f"torch=={torch}\n")
    assert io.lock_state(lock)["matches"] is True
    missing = io.lock_state(tmp_path / "none.lock")
    assert missing["sha256"] is None and missing["matches"] is None


def test_local_version_label_counts_as_the_locked_version(tmp_path, monkeypatch):
    """torch 2.14.1+cpu (the CPU build, README) matches torch==2.14.1, as pip has it; 2.14.2 does not."""
    lock = tmp_path / "l.lock"
    lock.write_text("torch==2.14.1\n")
    monkeypatch.setattr(io, "installed_versions", lambda: {"torch": "2.14.1+cpu"})
    assert io.lock_state(lock)["matches"] is True
    monkeypatch.setattr(io, "installed_versions", lambda: {"torch": "2.14.2"})
    assert io.lock_state(lock)["differs"] == {"torch": {"locked": "2.14.1", "installed": "2.14.2"}}


def test_manifest_records_the_lock(monkeypatch):
    monkeypatch.setattr(io, "git_state", lambda repo=".": {"commit": None, "dirty": None})
    m = io.manifest({"a": 1}, None, {"study": "x"})
    assert m["lock"]["file"] == "requirements.lock"
    assert m["lock"]["sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert isinstance(m["lock"]["matches"], bool) and m["study"] == "x"
    assert m["packages"]["torch"] == metadata.version("torch")


# ---------------------------------------------------------------------------- wandb's private call
def tracker_private_calls() -> list[ast.Call]:
    """The calls of ``<something>._log_artifact(...)`` in normlab.tracking."""
    tree = ast.parse((ROOT / "src" / "normlab" / "tracking.py").read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "_log_artifact"]


def test_wandb_private_log_artifact_still_takes_trackers_call():
    """Tracker.use_artifact offline calls ``Run._log_artifact(art, is_user_created=True, use_after_commit=True)``
    (wandb has no public call that records an input offline). A wandb release that renames, moves or
    changes it fails here, not silently in a job (Tracker catches the error and logs one line)."""
    from wandb.sdk.wandb_run import Run

    assert Version(metadata.version("wandb")) >= Version("0.19.10")  # reinit="create_new"
    calls = tracker_private_calls()
    assert len(calls) == 1, "normlab.tracking calls wandb's private Run._log_artifact once (Tracker.use_artifact)"
    (call,) = calls
    assert callable(getattr(Run, "_log_artifact", None)), (
        f"wandb {metadata.version('wandb')}: Run._log_artifact is gone; Tracker.use_artifact (offline) needs "
        "another way to record an input")
    sig = inspect.signature(Run._log_artifact)
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert kwargs == {"is_user_created": True, "use_after_commit": True}
    try:
        sig.bind(object(), *[object()] * len(call.args), **kwargs)
    except TypeError as e:
        raise AssertionError(f"wandb {metadata.version('wandb')}: Run._log_artifact{sig} no longer takes "
                             f"Tracker.use_artifact's call: {e}") from None
    for k in kwargs:
        assert sig.parameters[k].default is False, f"Run._log_artifact's {k} changed meaning: {sig}"


def test_wandb_use_artifact_is_that_call_online_and_refuses_offline():
    """Why the private call: the public ``Run.use_artifact`` records a new (draft) artifact with exactly
    that call, and raises offline. If it stops raising offline, use it instead (and drop this test)."""
    from wandb.sdk.wandb_run import Run

    src = inspect.getsource(inspect.unwrap(Run.use_artifact))
    assert re.search(r"self\._log_artifact\([^)]*is_user_created=True,[^)]*use_after_commit=True", src), (
        f"wandb {metadata.version('wandb')}: Run.use_artifact no longer records a draft artifact with "
        "_log_artifact(..., is_user_created=True, use_after_commit=True): check what Tracker.use_artifact writes")
    assert "Cannot use artifact when in offline mode" in src, (
        f"wandb {metadata.version('wandb')}: Run.use_artifact may work offline now: use it in "
        "Tracker.use_artifact instead of the private Run._log_artifact")
