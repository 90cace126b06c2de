"""Who runs each actor: the lease decisions of one write batch on a shared store.

A backend with leases (PostgreSQL) reads, under the batch's actor locks, the leases of the
actors the batch touches and hands them to :class:`Ownership` with the writing session. As
the batch stores messages, :meth:`Ownership.owner` decides who runs each actor: the session
that holds a live lease on it (which is then woken), or else the writing session, which
claims it with a new epoch. A turn's commit is checked against the lease it was run under
(:meth:`Ownership.fenced`). The backend then applies ``claims`` and stores ``replies``, and
sends ``notices`` (channel, payload) with the commit. This module runs no SQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from persistence.cluster import Ended, MailFor, Notification, Orphaned, RepliesReady
from persistence.records import ActorId, Reply, Status

__all__ = ["Lease", "Ownership", "parse_notice"]

_SEP = "\x1f"  # never in a payload's parts: keys and entity names hold no control characters


@dataclass(frozen=True, slots=True)
class Lease:
    """A stored lease: its session, its epoch, and whether that session is live."""

    session: int
    epoch: int
    live: bool
    channel: str | None


class Ownership:
    """The lease decisions of one batch, written by ``session``."""

    def __init__(
        self,
        *,
        session: int,
        session_live: bool,
        channel: str,
        ended_channel: str,
        leases: Mapping[ActorId, Lease],
        channels: Mapping[int, str],
        epochs: Iterator[int],
    ) -> None:
        self.session = session
        self.session_live = session_live
        self.channel = channel
        self.ended_channel = ended_channel
        self.leases = dict(leases)
        self.channels = channels  # the channel of each session a reply goes to
        self._epochs = epochs
        self.claims: dict[ActorId, int] = {}
        self.notices: dict[tuple[str, str], None] = {}  # an ordered set
        self.replies: list[tuple[Reply, int | None, int | None]] = []

    def owner(self, actor: ActorId) -> int | None:
        """The writing session's epoch on ``actor`` if it runs it; ``None`` if another does."""
        lease = self.leases.get(actor)
        if lease is not None and lease.session == self.session:
            return lease.epoch
        if lease is not None and lease.live and lease.channel is not None:
            self.notices[(lease.channel, mail_notice(actor))] = None
            return None
        epoch = next(self._epochs)
        self.leases[actor] = Lease(self.session, epoch, self.session_live, self.channel)
        self.claims[actor] = epoch
        return epoch

    def fenced(self, actor: ActorId, epoch: int) -> bool:
        """Whether a turn run under ``epoch`` may no longer commit."""
        lease = self.leases.get(actor)
        return not (
            self.session_live
            and lease is not None
            and lease.session == self.session
            and lease.epoch == epoch
        )

    def reply(self, reply: Reply, *, forward: int | None, adopt: int | None) -> None:
        """Store ``reply`` (``forward``, ``adopt`` as resolved) and wake its session."""
        self.replies.append((reply, forward, adopt))
        channel = self.channels.get(reply.session)
        if channel is not None:
            self.notices[(channel, "r")] = None

    def ended(self, actor: ActorId, generation: int, status: Status) -> None:
        """Tell every session that ``generation`` of ``actor`` ended."""
        payload = f"e{generation}{_SEP}{status.value}{_SEP}{actor.entity}{_SEP}{actor.key}"
        self.notices[(self.ended_channel, payload)] = None


def mail_notice(actor: ActorId) -> str:
    return f"m{actor.entity}{_SEP}{actor.key}"


def parse_notice(payload: str) -> Notification | None:
    """The notification a payload of :class:`Ownership` stands for (``None``: not one)."""
    kind, rest = payload[:1], payload[1:]
    if kind == "r":
        return RepliesReady()
    if kind == "o":
        return Orphaned()
    parts = rest.split(_SEP)
    if kind == "m" and len(parts) == 2:
        return MailFor(ActorId(entity=parts[0], key=parts[1]))
    if kind == "e" and len(parts) == 4 and parts[0].isdigit():
        try:
            status = Status(parts[1])
        except ValueError:
            return None
        return Ended(ActorId(entity=parts[2], key=parts[3]), int(parts[0]), status)
    return None
