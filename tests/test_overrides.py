"""The one ``--set`` parser: dotted paths into typed configs, YAML values checked by type."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

import pytest

from llmrec.overrides import OverrideError, apply_overrides, parse_override


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    size: int = 1
    rate: float = 0.5
    name: str = "a"
    tags: tuple[str, ...] = ()
    limit: int | None = None
    colour: Colour = Colour.RED
    mode: Literal["x", "y"] = "x"
    on: bool = False

    def __post_init__(self) -> None:
        if self.size > 10 * self.rate + 10:
            raise ValueError(f"size {self.size} is too large for rate {self.rate}")


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    weights: dict[str, float] = field(default_factory=dict)
    sections: dict[str, Inner] = field(default_factory=lambda: {"one": Inner(), "two": Inner()})
    title: str = "t"


def test_parse_reads_the_value_as_yaml() -> None:
    o = parse_override("inner.tags=[a, b]")
    assert o.path == ("inner", "tags") and o.value == ["a", "b"] and o.raw == "[a, b]"
    assert parse_override(" inner . size = 3").path == ("inner", "size")
    assert parse_override("title=").value == ""
    assert parse_override("limit=null").value is None
    with pytest.raises(OverrideError, match="expects KEY=VALUE"):
        parse_override("inner.size")
    with pytest.raises(OverrideError, match="expects KEY=VALUE"):
        parse_override("inner..size=3")
    with pytest.raises(OverrideError, match="not valid YAML"):
        parse_override("title=[a")


def test_nested_paths_and_conversions() -> None:
    config = apply_overrides(
        Outer(),
        [
            "inner.size=4",
            "inner.rate=1",  # an int where a float is wanted
            "inner.name=2.10",  # a number where a string is wanted: the text as written
            "inner.tags=[a, 3]",
            "inner.limit=7",
            "inner.colour=blue",
            "inner.mode=y",
            "inner.on=true",
            "weights.text=2",  # a mapping of values takes new keys
            "sections.two.size=9",
            "title=1e-4",
        ],
    )
    inner = config.inner
    assert (inner.size, inner.rate, inner.name, inner.tags) == (4, 1.0, "2.10", ("a", "3"))
    assert isinstance(inner.rate, float)
    assert (inner.limit, inner.colour, inner.mode, inner.on) == (7, Colour.BLUE, "y", True)
    assert config.weights == {"text": 2.0} and config.sections["two"].size == 9
    assert config.sections["one"] == Inner() and config.title == "1e-4"
    assert Outer() == Outer()  # the original is untouched
    assert apply_overrides(Outer(), ["inner.rate=1e-4"]).inner.rate == pytest.approx(1e-4)
    assert apply_overrides(Outer(), ["inner.limit=null"]).inner.limit is None
    assert apply_overrides(Outer(), []) == Outer()


def test_later_overrides_win_and_the_config_is_checked_once() -> None:
    assert apply_overrides(Outer(), ["inner.size=2", "inner.size=3"]).inner.size == 3
    # size 20 alone is too large for rate 0.5; with rate 2 it is fine, in either order
    assert apply_overrides(Outer(), ["inner.size=20", "inner.rate=2"]).inner.size == 20
    with pytest.raises(OverrideError, match=r"--set inner.size=20: size 20 is too large"):
        apply_overrides(Outer(), ["inner.size=20"])


def test_unknown_keys_name_the_valid_ones() -> None:
    with pytest.raises(OverrideError) as info:
        apply_overrides(Outer(), ["inner.sise=3"], "the test config")
    message = str(info.value)
    assert message.startswith("--set inner.sise=3: inner has no key 'sise'")
    assert "did you mean inner.size?" in message
    assert "valid keys: colour, limit, mode, name, on, rate, size, tags" in message
    with pytest.raises(OverrideError, match="the test config has no key 'innr'"):
        apply_overrides(Outer(), ["innr.size=3"], "the test config")
    # a mapping of sections takes only the keys it has
    with pytest.raises(OverrideError, match="sections has no key 'three'; valid keys: one, two"):
        apply_overrides(Outer(), ["sections.three.size=3"])


@pytest.mark.parametrize(
    "pair, message",
    [
        ("inner.size=abc", "inner.size expects an integer, got 'abc'"),
        ("inner.size=1.5", "inner.size expects an integer, got 1.5"),
        ("inner.size=true", "inner.size expects an integer, got True"),
        ("inner.rate=fast", "inner.rate expects a number, got 'fast'"),
        ("inner.on=maybe", "inner.on expects true or false, got 'maybe'"),
        ("inner.tags=a", r"inner.tags expects a list such as \[a, b\], got 'a'"),
        ("inner.limit=x", "inner.limit expects an integer or null, got 'x'"),
        ("inner.colour=green", r"inner.colour expects one of \['red', 'blue'\], got 'green'"),
        ("inner.mode=z", r"inner.mode expects one of \['x', 'y'\], got 'z'"),
        ("inner.name=null", "inner.name expects a string, got null"),
        ("weights.text=heavy", "weights.text expects a number, got 'heavy'"),
        ("inner=3", r"inner is a section of settings \(size, rate, .*\), not a value"),
        ("sections=3", "sections is a section of settings"),
        ("title.x=3", r"title is a value \('t'\), not a section; set it as title=VALUE"),
    ],
)
def test_wrong_types_are_refused_with_what_was_expected(pair: str, message: str) -> None:
    with pytest.raises(OverrideError, match=message):
        apply_overrides(Outer(), [pair])
    assert issubclass(OverrideError, ValueError)  # the CLI answers it with exit status 2
