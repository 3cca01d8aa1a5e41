"""Parameters declared once, as the fields of a frozen record, for an operator and the factory that
forwards to it.

Each field of the record (:func:`option`) carries its default, its ``:param:`` row and whether Airflow
renders it as a template. From the record come:

- the keyword parameters of the operator's ``__init__`` and of the factory (:func:`takes_options`).
  Airflow reads the ``__init__`` signature for ``default_args``, for its missing-argument check and
  for ``partial``/``expand``, so each field is a real keyword parameter there;
- the operator's ``template_fields`` and ``template_fields_renderers`` (:func:`templated`,
  :func:`renderers`);
- the ``:param:`` rows of the operator's docstring (:func:`documented`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import textwrap
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

#: The default of a field that has none: the caller must give it.
REQUIRED: Any = dataclasses.MISSING

_DOC, _TEMPLATED, _RENDERER = "doc", "templated", "renderer"
#: The keyword parameter of a function decorated with :func:`takes_options` that receives the record.
OPTIONS_PARAMETER = "options"

F = TypeVar("F", bound=Callable[..., Any])


def option(default: Any, doc: str, *, templated: bool = True, renderer: str | None = None) -> Any:
    """Declare one field of an options record.

    :param default: the field's default, or :data:`REQUIRED`; never a mutable value.
    :param doc: the field's ``:param:`` row, without the name (reStructuredText, one sentence or more).
    :param templated: whether Airflow renders the value as a Jinja template (``template_fields``).
    :param renderer: how the Airflow UI shows the rendered value (``template_fields_renderers``).
    """
    if not doc.strip():
        raise ValueError("every option needs its doc row")
    metadata = {_DOC: doc, _TEMPLATED: templated, _RENDERER: renderer}
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One field of an options record, as its declaration says.

    :param name: the parameter's name.
    :param default: its default, or :data:`REQUIRED`.
    :param annotation: its type as written.
    :param doc: its ``:param:`` row, without the name.
    :param templated: whether Airflow renders it as a template.
    :param renderer: how the Airflow UI shows the rendered value, if it says.
    """

    name: str
    default: Any
    annotation: Any
    doc: str
    templated: bool
    renderer: str | None


def specs(record_type: type) -> tuple[OptionSpec, ...]:
    """The record's fields, in declaration order."""
    return tuple(
        OptionSpec(
            name=field.name,
            default=field.default,
            annotation=field.type,
            doc=field.metadata[_DOC],
            templated=field.metadata[_TEMPLATED],
            renderer=field.metadata[_RENDERER],
        )
        for field in dataclasses.fields(record_type)
    )


def templated(record_type: type) -> tuple[str, ...]:
    """The names of the record's fields that Airflow renders as templates, in field order."""
    return tuple(spec.name for spec in specs(record_type) if spec.templated)


def renderers(record_type: type) -> dict[str, str]:
    """The record's ``template_fields_renderers``: field name → how the UI shows it."""
    return {spec.name: spec.renderer for spec in specs(record_type) if spec.renderer is not None}


def values_of(record: Any) -> dict[str, Any]:
    """The record's fields as keyword arguments (the values themselves, never copies)."""
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


def documented(docstring: str, record_type: type) -> str:
    """Return ``docstring``, cleaned of its indentation, with a ``:param:`` row per field of the record."""
    rows = [
        textwrap.fill(
            f":param {spec.name}: {spec.doc}",
            width=110,
            subsequent_indent="    ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        for spec in specs(record_type)
    ]
    return inspect.cleandoc(docstring) + "\n\n" + "\n".join(rows) + "\n"


def takes_options(record_type: type, *, omit: Iterable[str] = ()) -> Callable[[F], F]:
    """Give a function the record's fields as keyword parameters and hand it the record.

    The decorated function declares a keyword-only parameter ``options``; its public signature (what
    ``inspect.signature``, ``help()`` and Airflow see) has the record's fields in its place, each with
    its default. A call binds its arguments to that signature (so a missing or unknown argument is a
    ``TypeError`` naming it), builds the record from the fields given, the record's defaults filling
    in the rest, and calls the function with ``options=record``.

    :param record_type: a frozen dataclass whose fields are declared with :func:`option`.
    :param omit: fields the callers may not give: the function sets them itself (the record keeps its
        default until then).
    """
    omitted = set(omit)
    taken = [spec for spec in specs(record_type) if spec.name not in omitted]
    names = [spec.name for spec in taken]
    option_parameters = [
        inspect.Parameter(
            spec.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if spec.default is REQUIRED else spec.default,
            annotation=spec.annotation,
        )
        for spec in taken
    ]

    def decorate(function: F) -> F:
        own = inspect.signature(function)
        declared = own.parameters.get(OPTIONS_PARAMETER)
        if declared is None or declared.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"{function.__qualname__} must take a keyword-only parameter 'options'")
        parameters: list[inspect.Parameter] = []
        for parameter in own.parameters.values():
            parameters.extend(option_parameters if parameter.name == OPTIONS_PARAMETER else [parameter])
        public = own.replace(parameters=parameters)

        @functools.wraps(function)
        def with_options(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = public.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{function.__qualname__}() {exc}") from None
            given = {name: bound.arguments.pop(name) for name in names if name in bound.arguments}
            return function(*bound.args, **bound.kwargs, options=record_type(**given))

        with_options.__signature__ = public  # type: ignore[attr-defined]
        with_options.__annotations__ = {
            p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty
        }
        if own.return_annotation is not inspect.Signature.empty:
            with_options.__annotations__["return"] = own.return_annotation
        return with_options  # type: ignore[return-value]

    return decorate
