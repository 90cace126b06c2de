"""Entity base class, the ``@handler`` decorator, and the handler table read from annotations.

An entity is a class; its handlers are ``async def name(self, ctx, payload)`` methods marked
with ``@handler``. Registration reads their annotations once and checks them, so that every
later problem (a payload that does not fit, an unknown handler) is a clear error at the call.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, TypeVar, overload

from actors import _codec
from actors._codec import NO_PAYLOAD, _NoPayload
from actors._config import MAX_DURATION, check_duration, check_retention
from actors._duplicate import Duplicate
from actors._registry import KINDS, check_attribute_name
from actors.errors import InvalidEntity, InvalidKey, InvalidPayload, UnknownHandler

__all__ = ["Entity", "handler"]

F = TypeVar("F", bound=Callable[..., Any])

_HANDLER_MARK = "__actors_handler__"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
MAX_KEY_BYTES = 512


class Entity:
    """Base class of entity types: one instance per live actor, one actor per key.

    Subclasses set ``name`` (the stable key namespace) and define handlers with
    :func:`handler`. Optional class attributes:

    - ``state``: annotate it with a dataclass or msgspec Struct constructible without
      arguments; the runtime creates it, and persists it after every turn.
    - ``result``: annotate it with the type of ``ctx.complete(...)``'s value; by default the
      start handler's return type.
    - ``retention``: how long a completed actor's record and result are kept (24 hours).
    - ``attribute_types``: the registry attributes its actors may have, by type (``str``,
      ``int``, ``float``, ``bool``, ``datetime``; int and float are both numbers). When
      given, other names and values of another type are refused, in ``start``,
      ``ctx.set_attributes`` and queries alike. By default any attribute is allowed.
    - ``idle_timeout``: how long an actor with no work stays in memory (default: the
      runtime's ``RuntimeConfig.idle_timeout``). Passivation is invisible to callers: the
      next message loads the actor again.

    An entity may define ``async def on_duplicate(self, ctx, dup: Duplicate[P]) -> R``, its
    duplicate policy: it runs in the owner's mailbox when a start of an existing key arrives
    (also after completion, within retention), and what it returns is the duplicate caller's
    reply. Without it the policy is *adopt*: the duplicate's reply is the actor's result.

    Optional lifecycle hooks, ``async def on_activate(self, key: str) -> None`` and
    ``async def on_passivate(self, key: str) -> None``, run when the actor is brought into
    memory (before its first turn there) and when it is dropped from memory (idle, or evicted
    by ``max_active``). They are for in-memory resources (caches, connections). Leave
    ``self.state`` alone in them: a change there is no turn of its own, and would be saved
    with whichever turn comes next. ``on_passivate`` does not run when the runtime closes or
    the process dies. An exception in ``on_activate`` delays the actor's turns (retried with
    backoff); one in ``on_passivate`` is logged.

    The runtime constructs instances without arguments; users never do.
    """

    name: ClassVar[str]
    retention: ClassVar[timedelta] = timedelta(hours=24)
    idle_timeout: ClassVar[timedelta | None] = None
    attribute_types: ClassVar[Mapping[str, type]] = {}
    state: Any


@overload
def handler(fn: F, /) -> F: ...
@overload
def handler(*, start: bool = False, timeout: timedelta | None = None) -> Callable[[F], F]: ...
def handler(
    fn: F | None = None, /, *, start: bool = False, timeout: timedelta | None = None
) -> F | Callable[[F], F]:
    """Mark an ``async def (self, ctx, payload)`` method of an Entity as a message handler.

    Args:
        fn: the method (when used as ``@handler``).
        start: this handler handles ``Runtime.start``'s first message. Needed only when the
            entity has more than one handler.
        timeout: how long the handler may run before its turn fails with a
            ``HandlerTimeout`` error (default: ``RuntimeConfig.handler_timeout``).

    Returns:
        The method itself, unchanged, so that ``ref.ask(Counter.add, 1)`` stays typed.
    """
    if fn is not None and not callable(fn):
        raise TypeError(f"@handler decorates a method, got {fn!r}; options are keyword-only")
    if not isinstance(start, bool):
        raise TypeError(f"@handler(start=...) takes a bool, got {start!r}")
    seconds = None
    if timeout is not None:
        seconds = check_duration(timeout, what="handler timeout").total_seconds()

    def mark(f: F) -> F:
        setattr(f, _HANDLER_MARK, {"start": start, "timeout": seconds})
        return f

    return mark(fn) if fn is not None else mark


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerSpec:
    name: str
    fn: Callable[..., Any]
    payload_type: Any  # NO_PAYLOAD when the handler takes none
    reply_type: Any
    start: bool
    timeout: float | None = None  # None: the runtime's handler_timeout

    @property
    def takes_payload(self) -> bool:
        return not isinstance(self.payload_type, _NoPayload)


@dataclass(frozen=True, slots=True, kw_only=True)
class EntitySpec:
    name: str
    cls: type[Entity]
    handlers: dict[str, HandlerSpec]
    start_handler: HandlerSpec | None
    on_duplicate: HandlerSpec | None
    state_type: Any  # None for a stateless entity
    result_type: Any
    retention: float
    idle_timeout: float | None = None  # None: the runtime's default
    attribute_types: Mapping[str, str] = field(default_factory=dict)  # name -> kind
    on_activate: Callable[[Any, str], Awaitable[None]] | None = None
    on_passivate: Callable[[Any, str], Awaitable[None]] | None = None

    def handler(self, ref: str | Callable[..., Any]) -> HandlerSpec:
        name = ref if isinstance(ref, str) else getattr(ref, "__name__", repr(ref))
        spec = self.handlers.get(name)
        fn = getattr(ref, "__func__", ref)  # ``self.h`` inside a handler is ``Entity.h`` bound
        if spec is None or (not isinstance(ref, str) and spec.fn is not fn):
            known = ", ".join(sorted(self.handlers)) or "none"
            raise UnknownHandler(
                f"entity {self.name!r} has no handler {name!r} (handlers: {known})"
            )
        return spec

    def encode(
        self, ref: str | Callable[..., Any], payload: Any, *, limit: int | None = None
    ) -> tuple[HandlerSpec, bytes]:
        """The handler ``ref`` names, and ``payload`` checked and encoded for it.

        Raises:
            UnknownHandler: the entity has no such handler.
            InvalidPayload: the payload does not fit (or is missing, or is not expected), or
                is over ``limit`` bytes encoded.
        """
        spec = self.handler(ref)
        what = f"payload of {self.name}.{spec.name}"
        if not spec.takes_payload:
            if payload is not NO_PAYLOAD:
                raise InvalidPayload(what, "no payload", "the handler takes no payload")
            return spec, b"null"
        if payload is NO_PAYLOAD:
            raise InvalidPayload(what, _codec.type_name(spec.payload_type), "no payload was given")
        data, _ = _codec.check(payload, spec.payload_type, what=what, limit=limit)
        return spec, data

    def new_state(self) -> Any:
        return None if self.state_type is None else self.state_type()


def _handler_spec(entity: str, attr: str, fn: Any, mark: dict[str, Any]) -> HandlerSpec:
    where = f"handler {entity}.{attr}"
    if not inspect.iscoroutinefunction(fn):
        raise InvalidEntity(f"{where} must be an async def method")
    params = list(inspect.signature(fn).parameters.values())
    if len(params) not in (2, 3) or any(
        p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
    ):
        raise InvalidEntity(f"{where} must take (self, ctx) or (self, ctx, payload)")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise InvalidEntity(f"{where} has annotations that cannot be resolved: {exc}") from exc
    payload_type: Any = NO_PAYLOAD
    if len(params) == 3:
        if params[2].name not in hints:
            raise InvalidEntity(f"{where}: annotate the payload parameter {params[2].name!r}")
        payload_type = hints[params[2].name]
    if "return" not in hints:
        raise InvalidEntity(f"{where}: annotate the return type (use -> None for no reply)")
    return HandlerSpec(
        name=attr,
        fn=fn,
        payload_type=payload_type,
        reply_type=hints["return"],
        start=bool(mark.get("start")),
        timeout=mark.get("timeout"),
    )


def entity_spec(cls: type[Entity]) -> EntitySpec:
    """Read and check an Entity subclass.

    Raises:
        InvalidEntity: the class cannot be registered; the message says why.
    """
    if not (isinstance(cls, type) and issubclass(cls, Entity)) or cls is Entity:
        raise InvalidEntity(f"{cls!r} is not a subclass of actors.Entity")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidEntity(
            f"{cls.__qualname__}.name must be a string of letters, digits, '_', '.' or '-' "
            f"starting with a letter (at most 128 characters), got {name!r}"
        )
    handlers: dict[str, HandlerSpec] = {}
    for attr, fn in inspect.getmembers(cls, inspect.isfunction):
        mark = getattr(fn, _HANDLER_MARK, None)
        if mark is not None:
            handlers[attr] = _handler_spec(name, attr, fn, mark)
    if not handlers:
        raise InvalidEntity(f"entity {name!r} has no @handler methods")
    marked = [h for h in handlers.values() if h.start]
    if len(marked) > 1:
        raise InvalidEntity(f"entity {name!r} marks several start handlers: {marked}")
    start = marked[0] if marked else next(iter(handlers.values())) if len(handlers) == 1 else None
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:
        raise InvalidEntity(
            f"entity {name!r} has annotations that cannot be resolved: {exc}"
        ) from exc
    state_type = hints.get("state")
    if state_type is Any:
        state_type = None
    if state_type is not None:
        try:
            state_type()
        except Exception as exc:
            raise InvalidEntity(
                f"entity {name!r}: its state type {state_type!r} must be constructible without "
                f"arguments (give every field a default): {exc}"
            ) from exc
    on_duplicate = _duplicate_spec(name, cls)
    result_type = hints.get("result", start.reply_type if start else Any)
    try:
        retention = check_retention(cls.retention)
    except ValueError as exc:
        raise InvalidEntity(f"entity {name!r}: {exc}") from None
    idle_timeout = cls.idle_timeout
    if idle_timeout is not None and (
        not isinstance(idle_timeout, timedelta) or not timedelta(0) < idle_timeout <= MAX_DURATION
    ):
        raise InvalidEntity(
            f"entity {name!r}: idle_timeout must be a positive timedelta of at most 3650 days, "
            f"or None, got {idle_timeout!r}"
        )
    return EntitySpec(
        name=name,
        cls=cls,
        handlers=handlers,
        start_handler=start,
        on_duplicate=on_duplicate,
        state_type=state_type,
        result_type=result_type,
        retention=retention.total_seconds(),
        idle_timeout=None if idle_timeout is None else idle_timeout.total_seconds(),
        attribute_types=_attribute_types(name, cls),
        on_activate=_hook(name, cls, "on_activate"),
        on_passivate=_hook(name, cls, "on_passivate"),
    )


def _attribute_types(entity: str, cls: type[Entity]) -> dict[str, str]:
    """The declared attribute kinds, checked."""
    declared = cls.attribute_types
    if not isinstance(declared, Mapping):
        raise InvalidEntity(
            f"entity {entity!r}: attribute_types must be a mapping, got {declared!r}"
        )
    kinds: dict[str, str] = {}
    for name, tp in declared.items():
        try:
            check_attribute_name(name)
        except ValueError as exc:
            raise InvalidEntity(f"entity {entity!r}: {exc}") from None
        kind = KINDS.get(tp) if isinstance(tp, type) else None
        if kind is None:
            raise InvalidEntity(
                f"entity {entity!r}: attribute {name!r} has type {tp!r}; use str, int, float, "
                "bool or datetime"
            )
        kinds[name] = kind
    return kinds


def _hook(
    entity: str, cls: type[Entity], attr: str
) -> Callable[[Any, str], Awaitable[None]] | None:
    """A lifecycle hook, checked: ``async def name(self, key: str) -> None``."""
    fn = getattr(cls, attr, None)
    if fn is None:
        return None
    params = list(inspect.signature(fn).parameters.values())
    if (
        not inspect.iscoroutinefunction(fn)
        or len(params) != 2
        or any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    ):
        raise InvalidEntity(f"{entity}.{attr} must be an async def method taking (self, key)")
    hook: Callable[[Any, str], Awaitable[None]] = fn
    return hook


def _duplicate_spec(entity: str, cls: type[Entity]) -> HandlerSpec | None:
    """The entity's ``on_duplicate`` policy, read like a handler whose payload is Duplicate[P]."""
    fn = getattr(cls, "on_duplicate", None)
    if fn is None:
        return None
    spec = _handler_spec(entity, "on_duplicate", fn, {})
    origin = typing.get_origin(spec.payload_type) or spec.payload_type
    if origin is not Duplicate:
        raise InvalidEntity(
            f"handler {entity}.on_duplicate must take (self, ctx, dup: Duplicate[Payload])"
        )
    args = typing.get_args(spec.payload_type)
    return dataclasses.replace(spec, payload_type=args[0] if args else Any)


# The control characters a key may not hold: C0, DEL and C1.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_key(key: object, *, what: str = "an actor key") -> str:
    """``key`` if it can name an actor (or, per ``what``, another thing with a key's rules).

    Raises:
        InvalidKey: it is not a string, is empty, is over 512 bytes in UTF-8, holds a lone
            surrogate, or contains a NUL or another control character (C0, DEL or C1).
    """
    if not isinstance(key, str):
        raise InvalidKey(f"{what} must be a str, got {type(key).__name__}")
    if not key:
        raise InvalidKey(f"{what} must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey(
            f"{what} must be valid Unicode (it holds a lone surrogate): {key!r}"
        ) from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"{what} must be at most {MAX_KEY_BYTES} bytes in UTF-8: {key[:40]!r}...")
    control = _CONTROL.search(key)
    if control is not None:
        raise InvalidKey(
            f"{what} must not contain control characters, got U+{ord(control.group()):04X} at "
            f"index {control.start()}: {key[:80]!r}"
        )
    return key
