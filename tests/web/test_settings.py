"""web/settings.py: the pydantic-settings base every METROPOLE_* settings class stands on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from web.settings import EnvFlag, EnvFloat, EnvInt, EnvSettings, SettingsError, load, read, var


class Sample(EnvSettings):
    count: EnvInt = var("METROPOLE_SAMPLE_COUNT")
    ratio: EnvFloat = var("METROPOLE_SAMPLE_RATIO")
    flag: EnvFlag = var("METROPOLE_SAMPLE_FLAG")
    name: str = var("METROPOLE_SAMPLE_NAME")


# (variable, raw value, expected field value); the spellings int(), float() and the flag words took before pydantic
PARSED: list[tuple[str, str, Any]] = [
    ("METROPOLE_SAMPLE_COUNT", "20", 20),
    ("METROPOLE_SAMPLE_COUNT", " 20 ", 20),
    ("METROPOLE_SAMPLE_COUNT", "+20", 20),
    ("METROPOLE_SAMPLE_COUNT", "1_000", 1000),
    ("METROPOLE_SAMPLE_COUNT", "-5", -5),
    ("METROPOLE_SAMPLE_COUNT", "\u0663", 3),  # ARABIC-INDIC DIGIT THREE: int() takes it, pydantic's int would not
    ("METROPOLE_SAMPLE_RATIO", "5", 5.0),
    ("METROPOLE_SAMPLE_RATIO", " .5 ", 0.5),
    ("METROPOLE_SAMPLE_RATIO", "1e3", 1000.0),
    ("METROPOLE_SAMPLE_RATIO", "inf", float("inf")),
    ("METROPOLE_SAMPLE_RATIO", "1_0", 10.0),
    ("METROPOLE_SAMPLE_FLAG", "1", True),
    ("METROPOLE_SAMPLE_FLAG", "true", True),
    ("METROPOLE_SAMPLE_FLAG", "YES", True),
    ("METROPOLE_SAMPLE_FLAG", " On ", True),
    ("METROPOLE_SAMPLE_FLAG", "0", False),
    ("METROPOLE_SAMPLE_FLAG", "t", False),  # pydantic's bool takes t and y: the platform never did
    ("METROPOLE_SAMPLE_FLAG", "maybe", False),  # nor is an unknown word an error
    ("METROPOLE_SAMPLE_FLAG", "", False),
    ("METROPOLE_SAMPLE_NAME", "", ""),  # set but empty is the empty text, not unset
    ("METROPOLE_SAMPLE_NAME", " x ", " x "),
]

# (variable, raw value, the whole error message)
REFUSED: list[tuple[str, str, str]] = [
    ("METROPOLE_SAMPLE_COUNT", "20.0", "METROPOLE_SAMPLE_COUNT='20.0' is not a whole number"),  # pydantic would take it
    ("METROPOLE_SAMPLE_COUNT", "0x10", "METROPOLE_SAMPLE_COUNT='0x10' is not a whole number"),
    ("METROPOLE_SAMPLE_COUNT", "", "METROPOLE_SAMPLE_COUNT='' is not a whole number"),
    ("METROPOLE_SAMPLE_RATIO", "fast", "METROPOLE_SAMPLE_RATIO='fast' is not a number"),
    ("METROPOLE_SAMPLE_RATIO", "", "METROPOLE_SAMPLE_RATIO='' is not a number"),
]


@pytest.mark.parametrize(("variable", "raw", "expected"), PARSED)
def test_a_value_is_parsed_as_before(variable: str, raw: str, expected: Any) -> None:
    values = load(Sample, {variable: raw})
    assert list(values.values()) == [expected]


@pytest.mark.parametrize(("variable", "raw", "message"), REFUSED)
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(Sample, {variable: raw})
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)  # what `metropole` prints as one line, exit status 1


def test_every_bad_variable_is_named_in_the_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        load(Sample, {"METROPOLE_SAMPLE_COUNT": "x", "METROPOLE_SAMPLE_RATIO": "y"})
    assert str(caught.value) == "METROPOLE_SAMPLE_COUNT='x' is not a whole number; METROPOLE_SAMPLE_RATIO='y' is not a number"


def test_unset_variables_are_left_out() -> None:
    assert load(Sample, {}) == {}
    assert read(Sample, {}).count is None


def test_the_environment_by_default_and_only_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METROPOLE_SAMPLE_COUNT", "7")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("METROPOLE_SAMPLE_NAME=from-dotenv\n")
    assert load(Sample) == {"count": 7}  # no .env file, unlike pydantic-settings' usual sources
    assert load(Sample, {"METROPOLE_SAMPLE_NAME": "given"}) == {"name": "given"}  # a given mapping replaces os.environ


def test_names_are_case_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("metropole_sample_count", "7")
    assert load(Sample) == {}
