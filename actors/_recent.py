"""An actor's recent turns: the short history its record keeps for operators.

Each turn's commit rewrites the list, in the same update of the actor row as its state, so
it costs no statement of its own. ``actors show`` reads it back. The runtime owns the format
(the store keeps the bytes as they are).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from actors.errors import HandlerFailed

if TYPE_CHECKING:
    from actors._turn import TurnResult

__all__ = ["NONE", "TurnNote", "decode", "encoded", "note"]

_MAX_OUTCOME = 200  # characters of an error message kept in a note


class TurnNote(msgspec.Struct, frozen=True, array_like=True):
    """One turn: which message, when it ended, how long its handler took, how it ended."""

    message: int
    kind: str
    handler: str
    at: float
    took: float
    outcome: str


NONE = b"[]"
"""No notes: what a turn writes when ``recent_turns`` is 0 and the record still has some."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[TurnNote])
_raw_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def decode(data: bytes | None) -> list[TurnNote]:
    """The notes stored in an actor's record, oldest first (none if unreadable)."""
    if not data:
        return []
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        return []  # written by another version: history only, never worth failing a turn


def outcome(result: TurnResult) -> str:
    """How a turn ended: ``ok``, the status it ended the actor with, or why it failed."""
    error = result.error
    if isinstance(error, HandlerFailed):
        text = f"failed: {error.error_type}: {error.error_message}"
    elif error is not None:
        text = f"refused: {type(error).__name__}: {error}"
    elif result.commit.completion is not None:
        text = result.commit.completion.status.value
    elif result.commit.successor is not None:
        text = "superseded"
    else:
        text = "ok"
    if len(text) > _MAX_OUTCOME:
        text = text[: _MAX_OUTCOME - 1] + "…"
    # An exception's message may hold lone surrogates, which UTF-8 (so JSON) cannot carry.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def encoded(data: bytes | None) -> list[bytes]:
    """The notes stored in an actor's record, each still encoded (none if unreadable).

    Read once per activation: the notes are checked as ``decode`` checks them, so that
    notes of another version are dropped rather than kept beside new ones.
    """
    if not data or not decode(data):
        return []
    return [bytes(note) for note in _raw_decoder.decode(data)]


def note(notes: list[bytes], turn: TurnNote, *, keep: int) -> bytes:
    """Add ``turn`` to ``notes`` (encoded ones, in place), keep the last ``keep``, and encode.

    Only the new note is encoded: a turn's notes cost one small encoding and a join.
    """
    notes.append(_encoder.encode(turn))
    del notes[:-keep]
    return b"[" + b",".join(notes) + b"]"
