"""Loading and checking config.yaml, shared by the `ephys` command and the Snakefile.

A wrong key or value stops with one sentence that names the key and says what is
allowed, never with a traceback. The schema (config.schema.yaml) holds the defaults;
relative paths are resolved against the folder that holds the configuration file,
which is also the folder the workflow runs in (results/, logs/, state/).
"""

from __future__ import annotations

import copy
import importlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipeline.channels import ChannelMap
from pipeline.errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
DEFAULT_CONFIG_NAME = "config.yaml"


@lru_cache(maxsize=1)
def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error) -> str:
    """One sentence for the most useful of a validation error's causes."""
    key = _key_path(error)
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f" in {key}" if error.absolute_path else ""
        hint = f"; allowed keys are: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {extra[0]!r}{where}{hint}."
    if v == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        where = f"{key}." if error.absolute_path else ""
        return f"the key {where}{missing[0]} is missing."
    if v == "enum":
        allowed = ", ".join(repr(x) for x in error.validator_value)
        return f"{key} is {error.instance!r}, but it must be one of: {allowed}."
    if v == "type":
        names = {"array": "a list", "object": "a mapping of keys to values", "string": "text",
                 "number": "a number", "integer": "a whole number", "null": "null", "boolean": "true or false"}
        expected = error.validator_value
        expected = expected if isinstance(expected, list) else [expected]
        return f"{key} is {error.instance!r}, but it must be {' or '.join(names.get(t, t) for t in expected)}."
    if v in ("minimum", "exclusiveMinimum"):
        strict = "greater than" if v == "exclusiveMinimum" else "at least"
        return f"{key} is {error.instance!r}, but it must be {strict} {error.validator_value}."
    if v in ("maximum", "exclusiveMaximum"):
        strict = "less than" if v == "exclusiveMaximum" else "at most"
        return f"{key} is {error.instance!r}, but it must be {strict} {error.validator_value}."
    if v in ("minItems", "minProperties", "minLength"):
        return f"{key} must not be empty."
    if v == "propertyNames":
        return f"{key} has a name that is not allowed ({error.message})."
    return f"{key}: {error.message}."


def _walk(value: Any, schema: dict, visit) -> Any:
    """Apply `visit(value, schema)` to every value the schema describes, depth first,
    following `properties`, `items` and the `then` of every `if` that matches."""
    import jsonschema

    if isinstance(value, dict):
        props = dict(schema.get("properties", {}))
        for branch in schema.get("allOf", []):
            if "if" in branch and jsonschema.Draft202012Validator(branch["if"]).is_valid(value):
                props.update(branch.get("then", {}).get("properties", {}))
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _walk(value[key], sub, visit)
    elif isinstance(value, list) and "items" in schema:
        value = [_walk(v, schema["items"], visit) for v in value]
    return visit(value, schema)


def validate_config(config: dict[str, Any], *, base_dir: str | os.PathLike, source: str = "config.yaml") -> dict[str, Any]:
    """Check `config` against the schema and return a copy with defaults and absolute paths.

    Defaults come from the schema; strings it marks `format: path` are resolved against
    `base_dir` (the folder holding the configuration file). Raises ConfigError with
    one sentence naming the key.
    """
    import jsonschema  # here: every job imports this module, few of them check a config

    if not isinstance(config, dict):
        raise ConfigError(f"{source} must hold a mapping of keys to values, not {type(config).__name__}.")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        if best.validator == "oneOf" and best.context:
            best = sorted(best.context, key=lambda e: len(e.absolute_path))[-1]
        raise ConfigError(f"{source}: {_describe(best)}")
    base = Path(base_dir).resolve()

    def resolve(value, schema):
        if schema.get("format") == "path" and isinstance(value, str):
            return str((base / os.path.expanduser(value)).resolve())
        return value

    cfg = _walk(copy.deepcopy(config), _schema(), resolve)
    cfg["base_dir"] = str(base)

    lfp, epoch = cfg["lfp"], cfg["sleep"]["epoch_s"]
    ratio = lfp["segment_s"] / epoch
    if abs(ratio - round(ratio)) > 1e-9:
        raise ConfigError(f"{source}: sleep.epoch_s ({epoch}) must divide lfp.segment_s ({lfp['segment_s']}) exactly.")
    n = epoch * lfp["rate"]
    if abs(n - round(n)) > 1e-9:
        raise ConfigError(f"{source}: sleep.epoch_s x lfp.rate must be a whole number of samples.")
    # spectrogram.fmax above half the LFP rate is not an error: the spectrogram stops at
    # the recording's Nyquist frequency and says so (pipeline.spectral).
    on_google = [f"{part}.backend is {cfg[part]['backend']}" for part, name in (("sheet", "google"), ("store", "drive"))
                 if cfg[part]["backend"] == name]
    if on_google and not cfg["google"].get("credentials"):
        raise ConfigError(f"{source}: google.credentials is missing ({on_google[0]}): name the service account's "
                          "key file.")
    for name, spec in cfg["channel_maps"].items():  # parse maps now so a bad range fails at start-up
        try:
            ChannelMap.from_dict(spec)
        except ValueError as e:
            raise ConfigError(f"{source}: channel_maps.{name}: {e}") from None
    return cfg


def check_data_roots(config: dict[str, Any]) -> None:
    """Stop when a folder of data_roots does not exist (a typo, a share not mounted).

    Not part of loading the configuration: the defaults and a new project name a root
    made later (`ephys demo` makes it). The poller checks at every poll, and `ephys
    add` before it registers anything, so a missing root is one sentence for the
    maintainer, not "your raw_path does not exist" in every row of the sheet.
    """
    source = config.get("config_file", "config.yaml")
    for i, root in enumerate(config["data_roots"]):
        if not os.path.isdir(root):
            what = "is not a folder" if os.path.exists(root) else "does not exist (a typo, or a share not mounted?)"
            raise ConfigError(f"{source}: data_roots[{i}] is {root}, which {what}; fix the path, or remove it from "
                              "data_roots.")


def backend_module(part: str, config: dict, backends: dict[str, str]):
    """The module of the back-end `config[part]["backend"]` chooses, from `backends`
    (name -> module path); each pluggable part (sheet, store, executor) keeps that table."""
    name = config[part]["backend"]
    if name not in backends:
        raise ConfigError(f"{part}.backend {name!r} is not one of: {', '.join(backends)}.")
    return importlib.import_module(backends[name])


def load_config(path: str | os.PathLike | None = None, *, flag: str = "--config") -> dict[str, Any]:
    """Read and validate a configuration file (default: ./config.yaml); `flag` is the
    option that names another one, for the message when it is missing."""
    path = Path(path or DEFAULT_CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"no configuration file at {path.resolve()}; run from the project folder or pass {flag}.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', e)}.") from None
    cfg = validate_config(raw or {}, base_dir=path.resolve().parent, source=str(path))
    cfg["config_file"] = str(path.resolve())
    return cfg
