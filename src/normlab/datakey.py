"""What a prepared dataset file's name is keyed by: its parameters and, for a generated dataset, the
version of the code that generates it (a new MNIST-1D release may generate other numbers: a new file,
and new runs, rather than the old name over new data).

Imports nothing heavy (no torch, no generator): the plan calls it at DAG parse time, and the version is
read from the installed package's metadata.
"""

from __future__ import annotations

from importlib import metadata

# dataset -> the package whose code generates it (datasets read from disk are keyed by their parameters)
GENERATORS = {"mnist1d": "mnist1d"}


def generator_version(name: str) -> str | None:
    """The installed version of the package that generates dataset ``name``; None when it is read from
    disk or its generator is not installed (then preparing it fails anyway)."""
    pkg = GENERATORS.get(name)
    if pkg is None:
        return None
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def data_key(name: str, params: dict) -> dict:
    """What dataset ``name`` prepared with ``params`` depends on: ``params``, plus for a generated dataset
    ``{"<package>_version": ...}`` (e.g. ``mnist1d_version``). Its hash names the prepared file."""
    key = dict(params)
    if name in GENERATORS:
        key[f"{GENERATORS[name]}_version"] = generator_version(name)
    return key
