"""Names that are not settings stop the start, with the nearest valid name in the message.

pydantic-settings reads only the environment variables whose names it knows:
``VISIONNET_MODELS__BATCHSIZE=64`` or ``VISIONNET_MODLES__BATCH_SIZE=64`` would
be ignored without a word, and the service would run with a batch size the
operator did not choose. So every ``VISIONNET_`` variable must name a setting
or be one of the few the project reads elsewhere (``NOT_SETTINGS``); every
section forbids unknown keys, so a misspelt key in a TOML file fails the same
way through pydantic (``describe`` words its errors).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ValidationError

# VISIONNET_ variables that are not settings, and who reads them. A new one
# goes here, or every process that inherits it refuses to start.
NOT_SETTINGS: dict[str, str] = {
    "VISIONNET_CONFIG_FILE": "the settings file read over config/defaults.toml",
    "VISIONNET_TORCH": "scripts/setup.sh: which torch build to install (cpu or gpu)",
    "VISIONNET_WORKER_WARMUP": "visionnet worker: which models a worker loads as it starts",
    "VISIONNET_API_TOKEN": "the API client (visionnet.client, the CLI's client commands)",
    "VISIONNET_URL": "the CLI's client commands: the API's address",
    "VISIONNET_STORE_WRITER_TOKEN": "the store writer's fencing token (workers/store_writer)",
}


class SettingsError(ValueError):
    """Settings that stop the start; the message says what to change, for a person."""


def setting_paths(model: type[BaseModel]) -> list[tuple[str, ...]]:
    """Every settable path of ``model``: each field, and each field of a section."""
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        paths.append((name,))  # a whole section may be given as JSON too
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            paths.extend((name, *rest) for rest in setting_paths(sub))
    return paths


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` by difflib's ratio, if any is close enough."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def check_environ(
    environ: Mapping[str, str], model: type[BaseModel], prefix: str, delimiter: str
) -> None:
    """Raise ``SettingsError`` naming each ``prefix`` variable that is no setting of ``model``.

    Names compare without case, as pydantic-settings reads them.
    """
    known = {delimiter.join(p).upper(): p for p in setting_paths(model)}
    allowed = {n.upper() for n in NOT_SETTINGS}
    problems = []
    for var in sorted(environ):
        upper = var.upper()
        if not upper.startswith(prefix.upper()) or upper in allowed:
            continue
        rest = upper.removeprefix(prefix.upper())
        if rest in known:
            continue
        # Compare without the prefix, which every candidate shares.
        guess = nearest(rest, known)
        hint = f"; did you mean {prefix}{guess}?" if guess else ""
        problems.append(f"unknown setting {var}{hint}")
    if problems:
        raise SettingsError("\n".join(problems))


def describe(exc: ValidationError, model: type[BaseModel]) -> str:
    """A pydantic error as lines a person can act on; unknown keys get the nearest name."""
    dotted = [".".join(p) for p in setting_paths(model)]
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            guess = nearest(where, dotted)
            hint = f"; did you mean {guess}?" if guess else ""
            lines.append(f"unknown setting {where} (in a settings file){hint}")
        else:
            shown = f" (got {error['input']!r})" if where else ""
            lines.append(f"{where or 'settings'}: {error['msg']}{shown}")
    return "\n".join(lines)
