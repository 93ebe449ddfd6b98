"""config/README.md, generated from the JSON schemas' descriptions and defaults.

    python -m normlab.config_doc            # rewrite config/README.md
    python -m normlab.config_doc --check    # exit 1 if config/README.md is out of date (the test does this)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from .config import SCHEMA_DIR

OUT = SCHEMA_DIR.parents[1] / "config" / "README.md"

HEADER = """# Config reference

Generated from `workflow/schemas/` by `python -m normlab.config_doc`; do not edit by hand (a test fails
when this file is out of date). `config/config.yaml` is the default; `--configfile X.yaml` is merged over
it. Every key below may be left out: it then takes its default. A wrong key, type or value, or a key that
refers to another one it does not match (e.g. `claims.measure_lrs` not among `lrs`), stops the run before
any job with one line naming the key(s). What each study tests and why: `docs/studies.md`.
"""


def _type(s: dict) -> str:
    if "$ref" in s:
        return f"see `{s['$ref'].split('/')[-1]}`"
    if "allOf" in s and s["allOf"] and "$ref" in s["allOf"][0]:
        return f"see `{s['allOf'][0]['$ref'].split('/')[-1]}`"
    if "enum" in s:
        return " \\| ".join(f"`{v}`" for v in s["enum"])
    t = s.get("type", "")
    t = " or ".join(t) if isinstance(t, list) else t
    if t == "array" and isinstance(s.get("items"), dict):
        inner = _type(s["items"])
        t = f"list of {inner}" if inner else "list"
    bounds = []
    for k, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if k in s:
            bounds.append(f"{sym} {s[k]}")
    return t + (f" ({', '.join(bounds)})" if bounds else "")


def _default(s: dict) -> str:
    if "default" not in s:
        return ""
    d = json.dumps(s["default"], separators=(", ", ": "))
    return f"`{d}`" if len(d) <= 60 else f"`{d[:57]}...`"


def _desc(s: dict) -> str:
    return " ".join(str(s.get("description", "")).split()).replace("|", "\\|")


def _rows(schema: dict, prefix: str = "") -> list[str]:
    rows = []
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        rows.append(f"| `{path}` | {_type(sub)} | {_default(sub)} | {_desc(sub)} |")
        if sub.get("type") == "object" and "properties" in sub:
            rows += _rows(sub, path + ".")
        if sub.get("type") == "array" and isinstance(sub.get("items"), dict) and "properties" in sub["items"]:
            rows += _rows(sub["items"], path + "[]. ")
    return rows


def _table(schema: dict, prefix: str = "") -> str:
    rows = _rows(schema, prefix)
    if not rows:
        return "(no keys)\n"
    return "| key | type | default | description |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"


def render(schema_dir: Path = SCHEMA_DIR) -> str:
    top = yaml.safe_load((schema_dir / "config.schema.yaml").read_text())
    parts = [HEADER, "\n## Top level\n\n", _desc(top) + "\n\n", _table({"properties": {
        k: v for k, v in top["properties"].items() if k != "studies"}})]
    parts.append("\n## Studies\n\nOne section per study under `studies:`.\n")
    for path in sorted((schema_dir / "studies").glob("*.schema.yaml")):
        s = yaml.safe_load(path.read_text())
        name = path.name.split(".")[0]
        parts.append(f"\n### `studies.{name}`\n\n{_desc(s)}\n\n{_table(s, f'studies.{name}.')}")
    parts.append("\n## Shared definitions\n\nPieces the study schemas refer to (`see ...` above).\n")
    for name, d in top.get("definitions", {}).items():
        parts.append(f"\n### `{name}`\n\n{_desc(d) or _type(d)}\n\n{_table(d) if 'properties' in d else ''}")
    return "".join(parts).rstrip() + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    text = render()
    if a.check:
        if not a.out.exists() or a.out.read_text() != text:
            print(f"{a.out} is out of date: run `python -m normlab.config_doc`", file=sys.stderr)
            sys.exit(1)
        return
    a.out.write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
