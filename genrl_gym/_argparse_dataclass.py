"""Command-line flags generated from a configuration dataclass (the config is the CLI).

:func:`add_dataclass_arguments` adds one flag per field of a dataclass to an :class:`argparse.ArgumentParser`;
:func:`dataclass_from_args` builds the dataclass back from the parsed namespace. The field's attribute docstring (the
string literal under it in the class body) is its ``--help`` text, as plain text (reST markup stripped). Types come
from the annotations:

=====================================  =================================================================
annotation                             flag
=====================================  =================================================================
``int``, ``float``, ``str``, ``Path``  ``--name VALUE``
``X | None``                           as ``X``; the default may be None
``bool``                               ``--name`` / ``--no-name``
``Literal["a", "b"]``                  ``--name {a,b}``
``tuple[X, ...]``, ``list[X]``         ``--name X [X ...]`` (``*`` when the default is empty or None)
``dict[str, X]``                       ``--name KEY=X [KEY=X ...]``
a nested dataclass                     its fields as ``--name.field`` (dotted), built back as the dataclass
=====================================  =================================================================

Field metadata (``dataclasses.field(metadata={...})``) refines a flag:

* ``"choices"``: ``"module:NAME"`` naming a table (a dict's keys or a sequence), read when the parser is built, so
  the choices are those of the table and never a second hand-typed list;
* ``"positive"``: True for numbers that must be > 0 (checked while parsing);
* ``"metavar"``: the placeholder shown in ``--help`` (e.g. ``"TASK=SOURCE"``);
* ``"positional"``: True for a positional argument instead of a flag.

Only the standard library is used (no tyro or similar dependency).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib
import inspect
import re
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

__all__ = ["add_dataclass_arguments", "dataclass_from_args", "dataclass_flags", "field_docs", "plain_text",
           "DeprecatedAlias"]

_MISSING = dataclasses.MISSING


# ------------------------------------------------------------------------------------------------------- help text
def plain_text(doc: str) -> str:
    """``doc`` (reST) as plain terminal text: roles such as ``:func:`~a.b``` become ``b``, ````x```` becomes ``x``,
    whitespace (line breaks of the source) is collapsed."""
    doc = re.sub(r":[\w:.-]+:`([^`]+)`", _role, doc)
    doc = re.sub(r"``([^`]*)``", r"\1", doc)
    return " ".join(doc.split())


def _role(m: re.Match[str]) -> str:
    text = m.group(1)
    if text.startswith("~"):
        return text[1:].rsplit(".", 1)[-1]
    return re.sub(r"\s*<[^>]*>$", "", text)


@functools.lru_cache(maxsize=None)
def _class_docs(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0]
    docs: dict[str, str] = {}
    if not isinstance(body, ast.ClassDef):
        return docs
    for node, nxt in zip(body.body, body.body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (base classes included), keyed by field name, as written."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            docs.update(_class_docs(base))
    return docs


# ----------------------------------------------------------------------------------------------------------- types
def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(tp)):
            return args[0], True
    return tp, False


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = _scalar(kind)(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _scalar(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    if kind in (str, Path):
        return kind

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected a {getattr(kind, '__name__', 'value')}, got {text!r}") from e

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _key_value(value: Callable[[str], Any], metavar: str) -> Callable[[str], tuple[str, Any]]:
    def parse(text: str) -> tuple[str, Any]:
        key, sep, raw = text.partition("=")
        if not sep or not key or not raw:
            raise argparse.ArgumentTypeError(f"expected {metavar} (e.g. walk=stand or run=sac), got {text!r}")
        return key, value(raw)

    return parse


def _table_choices(ref: str) -> tuple[Any, ...]:
    module, _, name = ref.partition(":")
    table = getattr(importlib.import_module(module), name)
    return tuple(table)


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling of a flag: stores into the new flag's destination and prints a deprecation note."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: note: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _flag(path: str) -> str:
    return "--" + path.replace("_", "-")


def _fields(cls: type, prefix: str, exclude: Iterable[str]) -> list[tuple[str, dataclasses.Field[Any], Any]]:
    """(dotted path, field, resolved type) of every exposed field; nested dataclasses expanded."""
    hints = typing.get_type_hints(cls)
    out = []
    excluded = set(exclude)
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if path in excluded or not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(_fields(typing.cast(type, tp), path + ".", excluded))
        else:
            out.append((path, f, tp))
    return out


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def _argument(path: str, f: dataclasses.Field[Any], tp: Any, doc: str) -> tuple[list[str], dict[str, Any]]:
    """The ``add_argument`` call of one field."""
    meta = f.metadata
    default = _default(f)
    tp, _ = _unwrap_optional(tp)  # None can only be the default: the command line has no spelling for it
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    help_ = plain_text(doc).replace("%", "%%") if doc else ""
    kw: dict[str, Any] = {"help": help_}
    if default is _MISSING:
        kw["required"] = True
    else:
        kw["default"] = default
    if "metavar" in meta:
        kw["metavar"] = meta["metavar"]
    names = [_flag(path)]
    if meta.get("positional"):
        names = [path]
        kw.pop("required", None)
    else:
        kw["dest"] = path
        if "." in path:
            kw.setdefault("metavar", path.rsplit(".", 1)[-1].upper())

    def element(kind: Any) -> Callable[[str], Any]:
        if typing.get_origin(kind) is Literal:
            return type(typing.get_args(kind)[0])
        if kind not in (int, float, str, Path):
            raise TypeError(f"{path}: no command-line form for type {kind!r}; exclude the field")
        return _positive(kind) if meta.get("positive") else _scalar(kind)

    if tp is bool:
        kw["action"] = argparse.BooleanOptionalAction
        if default is not _MISSING and not help_:
            kw["help"] = " "  # BooleanOptionalAction appends the default to a non-empty help only
    elif origin is Literal:
        kw["choices"] = args
        kw["type"] = type(args[0])
    elif origin in (tuple, list) and (origin is list or len(args) == 2 and args[1] is Ellipsis):
        kw["type"] = element(args[0])
        kw["nargs"] = "*" if default in (_MISSING, None, (), []) else "+"
        if typing.get_origin(args[0]) is Literal:
            kw["choices"] = typing.get_args(args[0])
    elif origin is dict:
        metavar = kw.setdefault("metavar", "KEY=VALUE")
        kw["type"] = _key_value(element(args[1]), metavar)
        kw["nargs"] = "*"
    else:
        kw["type"] = element(tp)
    if "choices" in meta:
        kw["choices"] = _table_choices(meta["choices"])
    return names, kw


# ------------------------------------------------------------------------------------------------------------- API
def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "",
                            exclude: Iterable[str] = (), aliases: Mapping[str, Sequence[str]] | None = None,
                            deprecated: Mapping[str, Sequence[str]] | None = None) -> None:
    """Add one argument per field of dataclass ``cls`` to ``parser``.

    :param parser: the parser (or subparser) to extend.
    :param cls: a dataclass; nested dataclass fields become dotted flags (``--expert.total-steps``).
    :param prefix: dotted prefix of every flag and destination (``"expert."``).
    :param exclude: dotted field paths that get no flag (they keep their dataclass default).
    :param aliases: dotted field path -> further option strings of its flag (e.g. ``{"mfwm_steps": ["--steps"]}``).
    :param deprecated: dotted field path -> old option strings, hidden from ``--help``, that still work and print a
        deprecation note.
    """
    docs: dict[str, str] = {}
    _collect_docs(cls, prefix, docs)
    for path, f, tp in _fields(cls, prefix, exclude):
        names, kw = _argument(path, f, tp, docs.get(path, ""))
        action = parser.add_argument(*names, *(aliases or {}).get(path, ()), **kw)
        for old in (deprecated or {}).get(path, ()):
            parser.add_argument(old, action=DeprecatedAlias, new=names[0], dest=action.dest, help=argparse.SUPPRESS,
                                type=action.type,  # type: ignore[arg-type]  # typeshed: None is argparse's own default
                                choices=action.choices, nargs=action.nargs, metavar=action.metavar,
                                default=argparse.SUPPRESS)


def _collect_docs(cls: type, prefix: str, docs: dict[str, str]) -> None:
    hints = typing.get_type_hints(cls)
    for name, doc in field_docs(cls).items():
        docs[prefix + name] = doc
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            _collect_docs(hints[f.name], prefix + f.name + ".", docs)


def dataclass_flags(cls: type, *, prefix: str = "", exclude: Iterable[str] = ()) -> dict[str, str]:
    """Dotted field path -> the option string (or positional name) :func:`add_dataclass_arguments` gives it."""
    return {path: (path if f.metadata.get("positional") else _flag(path)) for path, f, _ in _fields(cls, prefix, exclude)}


def dataclass_from_args(cls: type, ns: argparse.Namespace, *, prefix: str = "", **fixed: Any) -> Any:
    """Build ``cls`` from a namespace filled by :func:`add_dataclass_arguments` (the same ``prefix``).

    Fields without an entry in ``ns`` (excluded ones) keep their defaults; ``fixed`` sets top-level fields directly.
    Sequences become tuples or lists as annotated, ``KEY=VALUE`` pairs a dict.
    """
    hints = typing.get_type_hints(cls)
    values = vars(ns)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = prefix + f.name
        tp, _ = _unwrap_optional(hints[f.name])
        if f.name in fixed:
            kwargs[f.name] = fixed[f.name]
        elif dataclasses.is_dataclass(tp):
            kwargs[f.name] = dataclass_from_args(typing.cast(type, tp), ns, prefix=path + ".")
        elif path in values:
            value, origin = values[path], typing.get_origin(tp)
            if value is not None and origin is dict:
                value = dict(value)
            elif value is not None and origin in (tuple, list):
                value = origin(value)
            kwargs[f.name] = value
    return cls(**kwargs)
