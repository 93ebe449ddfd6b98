"""Config validation (JSON schema with defaults), the hash that keys jobs, the config merge.

The schema lives in ``workflow/schemas/``: ``config.schema.yaml`` for the top level and
``studies/<study>.schema.yaml`` for each study's section. Validation fills defaults in place
and turns the first schema violation into one line that names the offending key.
Imports stay light (no torch): the Snakefile calls this at parse time.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"


class ConfigError(ValueError):
    """A config that does not match the schema; the message names the key."""


def _extend_with_default(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_default(jsonschema.Draft7Validator)


def load_schema(schema_dir: Path | str = SCHEMA_DIR) -> dict:
    """The full schema: the top level with each study's schema plugged in under ``studies``."""
    schema_dir = Path(schema_dir)
    schema = yaml.safe_load((schema_dir / "config.schema.yaml").read_text())
    studies = schema["properties"]["studies"]
    studies.setdefault("properties", {})
    for path in sorted((schema_dir / "studies").glob("*.schema.yaml")):
        studies["properties"][path.name.split(".")[0]] = yaml.safe_load(path.read_text())
    return schema


def key_path(error: jsonschema.ValidationError) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." if parts else "") + str(p))
    return "".join(parts) or "<top level>"


def _message(error: jsonschema.ValidationError) -> str:
    key = key_path(error)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        where = f"under '{key}'" if error.absolute_path else "at the top level"
        return f"unknown key {', '.join(repr(e) for e in extra)} {where} (allowed: {allowed})"
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"'{key}': {error.instance!r} is not one of {allowed}"
    if error.validator == "type":
        return f"'{key}': {error.instance!r} is not of type {error.validator_value!r}"
    return f"'{key}': {error.message}"


def _branches(schema, root: dict) -> list[dict]:
    """``schema`` and the schemas it is made of (``$ref`` to the root's definitions, allOf/anyOf/oneOf)."""
    if not isinstance(schema, dict):
        return []
    out = [schema]
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        out += _branches(target, root)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            out += _branches(sub, root)
    return out


def _scalar(text: str, types: set[str]):
    """A string of a ``--config`` override as the number, boolean or null the schema asks for, else itself."""
    if "string" in types or not types & {"integer", "number", "boolean", "null"}:
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if "number" in types and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-6 (no dot) as a string
            value = float(value)
        except ValueError:
            return text
    ok = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None}
    return value if any(ok[t](value) for t in types if t in ok) else text


def coerce_overrides(value, schema: dict, root: dict | None = None):
    """``value`` with the strings the schema types as numbers, booleans or null converted (in place for dicts
    and lists; returns the value). Snakemake reads a nested ``--config`` value with YAML's BaseLoader, which
    keeps every scalar a string: ``--config 'studies={ics_conditioning: {seeds: 4}}'`` gives seeds '4'. A
    string that does not parse as the schema's type is left as is, for validation to name."""
    root = schema if root is None else root
    parts = _branches(schema, root)
    if isinstance(value, str):
        types = set()
        for p in parts:
            t = p.get("type")
            types |= set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()
            if "enum" in p and "type" not in p:
                types |= {"string"} if any(isinstance(e, str) for e in p["enum"]) else set()
                types |= {"integer" if isinstance(e, int) else "number" for e in p["enum"]
                          if isinstance(e, (int, float)) and not isinstance(e, bool)}
        return _scalar(value, types)
    if isinstance(value, dict):
        for k in value:
            subs = [p["properties"][k] for p in parts if k in (p.get("properties") or {})]
            subs += [p["additionalProperties"] for p in parts if isinstance(p.get("additionalProperties"), dict)]
            if subs:
                value[k] = coerce_overrides(value[k], {"allOf": subs}, root)
    elif isinstance(value, list):
        items = [p["items"] for p in parts if isinstance(p.get("items"), dict)]
        if items:
            value[:] = [coerce_overrides(v, {"allOf": items}, root) for v in value]
    return value


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` in place (filling defaults, and first turning the strings of ``--config`` overrides
    into the numbers the schema asks for: ``coerce_overrides``); raise ConfigError naming the key."""
    schema = schema or load_schema()
    coerce_overrides(config, schema)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        # The deepest error is the most specific one (anyOf/oneOf report their parent first).
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_message(best))
    _check_semantics(config)
    return config


def _check_semantics(config: dict) -> None:
    """Rules a JSON schema cannot say well: keys that refer to other keys.

    Each study module may define ``check_config(cfg) -> list[str]``: one message per problem, each
    naming both keys relative to the study's section (e.g. "'claims.measure_lrs' [0.2] must be among
    'lrs' [0.05, 0.8]"). Called for enabled studies only, before any job is planned.
    """
    from . import studies

    for study, cfg in config.get("studies", {}).items():
        if not isinstance(cfg, dict) or not cfg.get("enabled", False) or study not in studies.STUDIES:
            continue
        check = getattr(studies.get(study), "check_config", None)
        problems = list(check(cfg)) if check else []
        if problems:
            raise ConfigError(f"studies.{study}: {problems[0]}")


def resolved_study_config(config: dict, study: str) -> dict:
    """What a study's numbers depend on: its own section plus the global settings it uses."""
    cfg = copy.deepcopy(config["studies"][study])
    cfg.pop("enabled", None)
    ds = cfg.get("dataset")
    return {
        "study": study,
        "device": config.get("device", "cpu"),
        "dataset": {"name": ds, **config.get("datasets", {}).get(ds, {})} if ds else None,
        "study_config": cfg,
    }


def config_hash(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` (in place) as Snakemake merges ``--configfile`` files: dicts key by key."""
    for k, v in over.items():
        base[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base
