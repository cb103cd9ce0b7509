"""The base of every process's METROPOLE_* settings: pydantic-settings, with errors as one line naming the variable.

Each settings module declares an `EnvSettings` subclass whose fields carry
their variable's full name (`var("METROPOLE_BROKER_STORE")`) and a type
that parses the way the platform always has, then turns it into the plain
dataclass the rest of the code reads (hot paths never touch pydantic):

    class BrokerEnv(EnvSettings):
        default_limit: EnvInt = var("METROPOLE_BROKER_DEFAULT_LIMIT")

    values = load(BrokerEnv)   # the variables that are set, by field name

A bad value raises `SettingsError` (a ValueError, which `metropole` prints
as `metropole: <message>` with exit status 1), one line per process start:

    METROPOLE_BROKER_DEFAULT_LIMIT='many' is not a whole number

Only the environment is read: no `.env` file, no secrets directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
"""What turns a flag on (any case); any other value, the empty one included, turns it off."""


class SettingsError(ValueError):
    """A METROPOLE_* variable holds a value its setting cannot take (one line: the variable, its value, why)."""


def whole_number(raw: object) -> object:
    """A string as int() reads it, or ValueError("is not a whole number"); anything else unchanged."""
    # int() as before: "1_000" and other scripts' digits are whole numbers, "20.0" is not (pydantic would take it)
    if not isinstance(raw, str):
        return raw
    try:
        return int(raw)
    except ValueError:
        raise ValueError("is not a whole number") from None


def _number(raw: object) -> object:
    if not isinstance(raw, str):
        return raw
    try:
        return float(raw)
    except ValueError:
        raise ValueError("is not a number") from None


def _flag(raw: object) -> object:
    # never an error, as before: pydantic's bool would refuse "enabled" and take "t"/"y"
    return raw.strip().lower() in TRUE_WORDS if isinstance(raw, str) else raw


EnvInt = Annotated[int, BeforeValidator(whole_number)]
EnvFloat = Annotated[float, BeforeValidator(_number)]
EnvFlag = Annotated[bool, BeforeValidator(_flag)]


def var(name: str) -> Any:
    """A field read from the variable `name`; unset, it is left out of `load`'s answer (the dataclass default holds)."""
    return Field(default=None, validation_alias=name)


_given: ContextVar[Mapping[str, str] | None] = ContextVar("metropole_settings_env", default=None)


class _MappingSource(EnvSettingsSource):
    """The environment source reading a given mapping instead of os.environ (tests, `from_env(env)`)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._env)  # as the config reads os.environ: names case-sensitive, empty values kept


class EnvSettings(BaseSettings):
    """Variables by their exact names (case-sensitive, as os.environ is), from the environment only."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, validate_default=False)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = _given.get()
        return (init_settings, env_settings if given is None else _MappingSource(settings_cls, given))


S = TypeVar("S", bound=EnvSettings)


@contextmanager
def _reading(env: Mapping[str, str] | None) -> Iterator[None]:
    token = _given.set(env)
    try:
        yield
    finally:
        _given.reset(token)


def one_line(exc: ValidationError) -> str:
    """`VAR='raw' why` for each wrong variable (the error's location is the variable: fields are read by alias)."""
    parts = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(p) for p in error["loc"])
        if error["type"] == "value_error":  # our validators' reasons read after the value: "is not a number"
            parts.append(f"{name}={error['input']!r} {error['ctx']['error']}")
        else:
            parts.append(f"{name}={error['input']!r}: {error['msg']}")
    return "; ".join(parts)


def read(settings_cls: type[S], env: Mapping[str, str] | None = None) -> S:
    """The settings from `env` (default os.environ); SettingsError naming the variable for a bad value."""
    try:
        with _reading(env):
            return settings_cls()
    except ValidationError as exc:
        raise SettingsError(one_line(exc)) from None


def load(settings_cls: type[EnvSettings], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Field name -> value of the variables that are set (a validator's None also means "not set")."""
    return {k: v for k, v in read(settings_cls, env).model_dump(exclude_unset=True).items() if v is not None}
