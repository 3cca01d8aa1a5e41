"""Parameters declared once as an options record: the signature, the record and the docstring it gives."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest

from airflow_claude_batch.operators.options import (
    REQUIRED,
    documented,
    option,
    renderers,
    specs,
    takes_options,
    templated,
    values_of,
)


@dataclass(frozen=True)
class Toy:
    name: str = option(REQUIRED, "who it is for.")
    size: int | str = option(3, "how many, at most ``9``.", renderer="json")
    shape: object = option(None, "a callable; never rendered.", templated=False)
    group: str | None = option(None, "set by the caller itself.", templated=False)


@takes_options(Toy, omit=("group",))
def make(label: str = "x", *, options: Toy, loud: bool = False) -> tuple[str, Toy, bool]:
    """Make a toy."""
    return label, options, loud


def test_the_fields_take_the_place_of_the_options_parameter_with_their_defaults() -> None:
    parameters = inspect.signature(make).parameters

    assert list(parameters) == ["label", "name", "size", "shape", "loud"]
    assert parameters["name"].default is inspect.Parameter.empty
    assert parameters["name"].kind is inspect.Parameter.KEYWORD_ONLY
    assert (parameters["size"].default, parameters["size"].annotation) == (3, "int | str")
    assert make.__annotations__["size"] == "int | str"
    assert "options" not in make.__annotations__


def test_a_call_hands_over_the_record_with_the_defaults_filled_in() -> None:
    shape = object()

    label, options, loud = make("y", name="n", shape=shape, loud=True)

    assert (label, loud) == ("y", True)
    assert options == Toy(name="n", size=3, shape=shape, group=None)
    assert values_of(options)["shape"] is shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "make() missing a required argument: 'name'"),
        ({"name": "n", "sise": 4}, "make() got an unexpected keyword argument 'sise'"),
        ({"name": "n", "group": "g"}, "make() got an unexpected keyword argument 'group'"),
        ({"name": "n", "options": Toy(name="m")}, "make() got an unexpected keyword argument 'options'"),
    ],
)
def test_a_missing_unknown_or_omitted_argument_is_refused_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError) as raised:
        make(**kwargs)
    assert str(raised.value) == message


def test_templated_fields_renderers_and_rows_come_from_the_declaration() -> None:
    assert templated(Toy) == ("name", "size")
    assert renderers(Toy) == {"size": "json"}
    assert [(spec.name, spec.default, spec.templated) for spec in specs(Toy)] == [
        ("name", REQUIRED, True),
        ("size", 3, True),
        ("shape", None, False),
        ("group", None, False),
    ]
    doc = documented(
        """A toy.

        It plays.
        """,
        Toy,
    )
    assert doc.splitlines() == [
        "A toy.",
        "",
        "It plays.",
        "",
        ":param name: who it is for.",
        ":param size: how many, at most ``9``.",
        ":param shape: a callable; never rendered.",
        ":param group: set by the caller itself.",
    ]


def test_an_option_without_its_doc_row_and_a_function_without_options_are_refused() -> None:
    with pytest.raises(ValueError, match="doc row"):
        option(1, " ")

    def no_options(*, name: str) -> None: ...

    with pytest.raises(TypeError, match="keyword-only parameter 'options'"):
        takes_options(Toy)(no_options)
