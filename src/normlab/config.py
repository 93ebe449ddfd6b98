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


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` in place (filling defaults); raise ConfigError naming the key."""
    schema = schema or load_schema()
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
