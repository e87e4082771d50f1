"""Settings: one object per process, built from defaults, then the environment, then flags.

Each script declares its settings once, as a frozen dataclass whose fields are made by
:func:`setting`: the default, the environment variable that overrides it, and the help
of the command-line flag named after the field. :func:`from_env` reads the environment
once; :func:`parse_settings` builds the argparse flags from the same declarations, with
the environment's values as their defaults. Nothing else reads the environment.

Store URIs are parsed here too, in one place: :func:`sqlite_path`, and shown without
their passwords by :func:`redact_uri`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATA_PATH = PROJECT_DIR / "data" / "penguins.csv"
EXPERIMENT_NAME = "penguins-classification"
# prometheus_client's multiprocess mode: each worker writes its metrics to files here.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

S = TypeVar("S")


def setting(
    default: Any,
    help: str,
    *,
    env: str | None = None,
    flag: bool = True,
    parse: Callable[[str], Any] | None = None,
    choices: Sequence[str] | None = None,
    minimum: float | None = None,
    group: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare one setting of a settings dataclass.

    Args:
        default: the value when neither the environment nor a flag gives one.
        help: the flag's help text; the default and the variable are appended.
        env: the environment variable that overrides the default (unset or empty: ignored).
        flag: whether the setting has a command-line flag, ``--field-name``.
        parse: turns text into a value; by default the type of ``default``.
        choices: the accepted values, if limited.
        minimum: the smallest accepted value of a number.
        group: flags of one group are mutually exclusive.
        factory: computes the default when the settings are built (then give ``parse``).
    """
    meta = {
        "help": help,
        "env": env,
        "flag": flag,
        "parse": parse,
        "choices": choices,
        "minimum": minimum,
        "group": group,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _parser_of(f: dataclasses.Field) -> Callable[[str], Any]:
    """Return the function that turns a setting's text into its value."""
    parse = f.metadata.get("parse")
    if parse is not None:
        return parse
    kind = type(f.default)
    if kind is bool:
        return _parse_bool
    return str if f.default is None else kind


def _parse_bool(text: str) -> bool:
    """Read a yes/no environment value."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _convert(f: dataclasses.Field, text: str, where: str) -> Any:
    """Convert and check one setting's text, naming where it came from in any error."""
    try:
        value = _parser_of(f)(text)
    except ValueError:
        kind = getattr(_parser_of(f), "__name__", "value")
        words = _KIND_WORDS.get(kind, f"a valid {kind}")
        raise ValueError(f"{where} must be {words}, got {text!r}") from None
    _check(f, value, where)
    return value


_KIND_WORDS = {"int": "an integer", "float": "a number", "_parse_bool": "true or false"}


def _check(f: dataclasses.Field, value: Any, where: str) -> None:
    """Raise ValueError when a value breaks its setting's choices or minimum."""
    choices, minimum = f.metadata.get("choices"), f.metadata.get("minimum")
    if choices and value not in choices:
        raise ValueError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    if minimum is not None and value is not None and value < minimum:
        raise ValueError(f"{where} must be at least {minimum:g}, got {value!r}")


def from_env(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """Build settings from the defaults and the environment; ``overrides`` win over both."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f.metadata.get("env")
        text = environ.get(name) if name else None
        if text:
            values[f.name] = _convert(f, text, name)
    values.update(overrides)
    return cls(**values)


def flag_name(name: str) -> str:
    """Return the command-line flag of a setting: ``--tracking-uri`` for tracking_uri."""
    return "--" + name.replace("_", "-")


def build_parser(cls: type, base: Any, description: str) -> argparse.ArgumentParser:
    """Return an argparse parser with one flag per setting, defaulting to ``base``'s values.

    A settings class may word an inherited flag for its script in a ``FLAG_HELP``
    mapping of field name to help text.
    """
    parser = argparse.ArgumentParser(description=description)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag", False):
            continue
        group = f.metadata.get("group")
        target = parser
        if group:
            if group not in groups:
                groups[group] = parser.add_mutually_exclusive_group()
            target = groups[group]
        _add_flag(target, f, getattr(base, f.name), getattr(cls, "FLAG_HELP", {}).get(f.name))
    return parser


def _add_flag(parser: Any, f: dataclasses.Field, default: Any, help: str | None) -> None:
    """Add the flag of one setting; ``help`` replaces the declared help (a script's wording)."""
    env = f.metadata.get("env")
    origin = f", from ${env}" if env else ""
    help_text = (help or f.metadata["help"]).replace("%", "%%")
    if isinstance(f.default, bool):
        parser.add_argument(flag_name(f.name), action="store_true", default=default, help=help_text)
        return
    # The environment's value is shown as the default: a store URI's password is not.
    shown = "none" if default in (None, "") else redact_uri(str(default)).replace("%", "%%")
    parser.add_argument(
        flag_name(f.name),
        type=lambda text, f=f: _flag_value(f, text),
        default=default,
        metavar=f.name.upper(),
        help=f"{help_text} (default: {shown}{origin})",
    )


def _flag_value(f: dataclasses.Field, text: str) -> Any:
    """Convert a flag's text, as argparse expects: ArgumentTypeError on bad input."""
    try:
        return _convert(f, text, flag_name(f.name))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_settings(
    cls: type[S],
    argv: Sequence[str] | None,
    description: str,
    environ: Mapping[str, str] | None = None,
) -> S:
    """Return settings from defaults, then the environment, then the flags in ``argv``.

    A bad environment value or flag ends the program with argparse's usage error (exit 2).
    """
    parser = argparse.ArgumentParser(description=description)
    try:
        base = from_env(cls, environ)
    except ValueError as exc:
        parser.error(str(exc))
    parser = build_parser(cls, base, description)
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.metadata["flag"]}
    settings = dataclasses.replace(base, **values)
    problem = getattr(settings, "problem", lambda: None)()
    if problem:
        parser.error(problem)
    return settings


# ---- the settings several scripts share ------------------------------------------------


@dataclass(frozen=True)
class StoreSettings:
    """Where the models are: the MLflow tracking store and the registered model to follow."""

    tracking_uri: str = setting(
        f"sqlite:///{PROJECT_DIR / 'mlflow.db'}",
        "MLflow tracking and registry store: sqlite:///PATH or http(s)://HOST:PORT",
        env="MLFLOW_TRACKING_URI",
    )
    model_name: str = setting("penguins-classifier", "registered model", env="MODEL_NAME")
    alias: str = setting("champion", "alias of the version to serve or move", env="MODEL_ALIAS")


@dataclass(frozen=True)
class ServiceSettings(StoreSettings):
    """What the API and the exporter share: the model they follow and the prediction log."""

    prediction_log_uri: str = setting(
        f"sqlite:///{PROJECT_DIR / 'predictions.db'}",
        "the prediction log: sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB",
        env="PREDICTION_LOG_URI",
    )
    refresh_seconds: float = setting(
        30.0,
        "how often the model alias is looked up, seconds",
        env="MODEL_REFRESH_SECONDS",
        minimum=0,
    )


# ---- store URIs ----------------------------------------------------------------------

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(uri: str) -> Path | None:
    """Return the file of a ``sqlite:///PATH`` URI, or None for any other kind of URI."""
    if uri.startswith(SQLITE_PREFIX) and len(uri) > len(SQLITE_PREFIX):
        return Path(uri[len(SQLITE_PREFIX) :])
    return None


def sqlite_uri(path: str | Path) -> str:
    """Return the ``sqlite:///PATH`` URI of a file."""
    return f"{SQLITE_PREFIX}{path}"


# The password of a URI's user part: scheme://user:PASSWORD@host. Anything but ``@`` up
# to the last ``@`` before the path, so a password holding ``:`` or ``/`` is caught too.
_PASSWORD = re.compile(r"^(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*):[^@]*@")


def redact_uri(uri: str) -> str:
    """Return a store URI fit to print: its password, if any, replaced by ``***``."""
    return _PASSWORD.sub(r"\g<head>:***@", uri)


def redact(text: str, *uris: str) -> str:
    """Return ``text`` with every password of ``uris`` replaced, wherever it appears.

    Drivers quote the URI, or parts of it, in their errors; a message built from
    one is passed through here before it reaches a log, an answer or a metric.
    """
    for uri in uris:
        match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*:(?P<password>[^@]*)@", uri)
        if match and match["password"]:
            text = text.replace(match["password"], "***")
        text = text.replace(uri, redact_uri(uri))
    return text
