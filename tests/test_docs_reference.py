"""docs/configuration.md documents every option, with the default the code has.

Each reference table row reads ``| `name` | type | default | what it does |``. The names
and defaults are read from the code (``dataclasses.fields``, ``inspect.signature``, the
``Entity`` class), so an option added without a row, or a default changed without its row,
fails here.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import ActorRef, Context, Entity, Runtime, RuntimeConfig, StartHandle, handler

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
ROW = re.compile(r"^\| `(?P<name>\w+)=?` \| (?P<type>(?:[^|\\]|\\\|)+?) \| (?P<default>.+?) \|")
CALL_ROW = re.compile(r"^\| `(?P<call>[\w.]+)` \| `(?P<option>\w+)=` \|")

# Entity members that are not class attributes of the base: annotations users write, and
# methods the runtime looks for.
ENTITY_MEMBERS = ("result", "on_duplicate", "on_activate", "on_passivate")

# What the per-call table calls each method.
CALLS: dict[str, Callable[..., Any]] = {
    "rt.start": Runtime.start,
    "ref.ask": ActorRef.ask,
    "ref.tell": ActorRef.tell,
    "ref.result": ActorRef.result,
    "handle.reply": StartHandle.reply,
    "ctx.schedule": Context.schedule,
}


def section(title: str) -> list[str]:
    """The lines of the ``## {title}`` section of the reference."""
    lines = DOC.read_text("utf-8").splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((n for n in range(start, len(lines)) if lines[n].startswith("## ")), len(lines))
    return lines[start:end]


def rows(title: str) -> dict[str, tuple[str, str]]:
    """The ``(type, default)`` cells of each table row in a section, by name."""
    found: dict[str, tuple[str, str]] = {}
    for line in section(title):
        match = ROW.match(line)
        if match:
            found[match["name"]] = (match["type"].replace("\\|", "|"), match["default"])
    return found


def documented(cell: str) -> object:
    """The value a default cell states, such as ``timedelta(minutes=10)`` or ``10_000``."""
    code = re.fullmatch(r"`([^`]+)`", cell)
    assert code is not None, f"a default is written as code: {cell!r}"
    # Our own documentation, evaluated with nothing but timedelta in reach.
    value: object = eval(code[1], {"__builtins__": {}, "timedelta": timedelta})
    return value


def test_every_runtime_config_field_has_a_row_with_its_type_and_default() -> None:
    """Every RuntimeConfig field is documented, with its type and its default."""
    table = rows("`RuntimeConfig`")
    for field in dataclasses.fields(RuntimeConfig):
        assert field.name in table, f"RuntimeConfig.{field.name} has no row"
        kind, default = table[field.name]
        assert kind == f"`{field.type}`", f"RuntimeConfig.{field.name}: type {kind}"
        assert documented(default) == field.default, f"RuntimeConfig.{field.name}: {default}"
    names = {field.name for field in dataclasses.fields(RuntimeConfig)}
    assert not table.keys() - names, f"rows for no field: {table.keys() - names}"


def test_every_parameter_of_runtime_open_has_a_row_with_its_type_and_default() -> None:
    """Every parameter of Runtime.open is documented, with its type and its default."""
    table = rows("`Runtime.open`")
    parameters = inspect.signature(Runtime.open).parameters
    for name, parameter in parameters.items():
        assert name in table, f"Runtime.open({name}=...) has no row"
        kind, default = table[name]
        assert str(parameter.annotation) in kind, f"Runtime.open({name}): type {kind}"
        if parameter.default is inspect.Parameter.empty:
            assert default == "required", f"Runtime.open({name}) is required"
        else:
            assert documented(default) == parameter.default, f"Runtime.open({name}): {default}"
    assert not table.keys() - parameters.keys(), f"rows for nothing: {table.keys() - parameters}"


def test_every_entity_class_attribute_and_hook_has_a_row() -> None:
    """Entity's class attributes (with their defaults) and hooks are documented."""
    table = rows("Entity class attributes")
    for name in [*Entity.__annotations__, *ENTITY_MEMBERS]:
        assert name in table, f"Entity.{name} has no row"
        if name in vars(Entity):
            default = table[name][1]
            assert documented(default) == getattr(Entity, name), f"Entity.{name}: {default}"


def test_every_handler_option_has_a_row_with_its_default() -> None:
    """Every option of @handler is documented, with its default."""
    table = rows("`@handler`")
    for name, parameter in inspect.signature(handler).parameters.items():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            assert name in table, f"@handler({name}=...) has no row"
            assert documented(table[name][1]) == parameter.default, f"@handler({name})"


@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_keyword_option_of_a_call_has_a_row(call: str) -> None:
    """Each keyword-only option of start, ask, tell, result, reply and schedule is listed."""
    listed = {
        match["option"]
        for line in section("Per-call options")
        if (match := CALL_ROW.match(line)) and match["call"] == call
    }
    options = {
        name
        for name, parameter in inspect.signature(CALLS[call]).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert listed == options, f"{call}: documented {sorted(listed)}, has {sorted(options)}"
