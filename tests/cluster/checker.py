"""The chaos checker: what the clients of a room saw, checked against the guarantees of the
protocol, in the manner of JetStream's own chaos tests (a bitset of the sequence numbers
each reader has seen; duplicates tolerated where redelivery is legitimate, gaps fail).

Plain objects in, a list of problems out: no sockets, so the checker is itself tested
(tests/cluster/test_checker.py) on made-up observations.

What it checks, for one room:

- **Each connection's stream** (one ``room.join``, then the replay and live delivery that
  follow) is gapless and duplicate-free: it starts right after where the join said it
  would (``since``, or ``room.joined.seq`` without it) and each ``seq`` is the previous
  one plus 1. Within one connection the protocol allows no duplicate and no reorder.
- **Each reader** (one logical client across its reconnections) covers every ``seq``
  from its first stream's start to the room's last ``seq``; a ``seq`` seen by two of its
  streams is a tolerated duplicate (a resume with an older ``since``), counted.
- **One entry per seq**: every sighting of a ``seq`` (streams, acks, histories) names
  the same entry id and body.
- **Histories** (the whole log as read from each node) are ``1..N`` without a gap and
  identical on every node.
- **Acked messages** are in the history exactly once, at the acked ``seq`` with the acked
  id; a ``duplicate: true`` ack names the original ``seq``.
- **Per-sender order**: a sender's messages have increasing ``seq`` in send order.
- **No phantom**: every body in the history was sent by someone.

Bodies are the message keys: the tests send each message with ``body == client_msg_id``
(the protocol's ``message`` event does not carry ``client_msg_id``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise


class Bitset:
    """A growable set of non-negative integers, one bit each."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, n: int) -> bool:
        """Set bit ``n``; True when it was already set."""
        byte, bit = divmod(n, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte - len(self._bits) + 1))
        was = bool(self._bits[byte] >> bit & 1)
        self._bits[byte] |= 1 << bit
        return was

    def __contains__(self, n: int) -> bool:
        byte, bit = divmod(n, 8)
        return byte < len(self._bits) and bool(self._bits[byte] >> bit & 1)

    def missing(self, first: int, last: int) -> list[int]:
        """The integers of ``first..last`` (inclusive) not in the set."""
        return [n for n in range(first, last + 1) if n not in self]


@dataclass(frozen=True)
class Entry:
    """A room log entry as seen on the wire: its ``seq``, entry ``id`` and ``body``."""

    seq: int
    id: str
    body: str


@dataclass
class Stream:
    """What one connection received in the room after one ``room.join``."""

    reader: str
    after: int  # the last seq before this stream's first one
    label: str
    seqs: list[int] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else self.after


def _cap(items: list[int], most: int = 10) -> str:
    shown = ", ".join(map(str, items[:most]))
    return shown + (f" … ({len(items)} in all)" if len(items) > most else "")


class RoomCheck:
    """Every observation made in one room during a run; `problems` judges them."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.streams: list[Stream] = []
        self._retired: set[str] = set()
        self._sent: dict[str, list[str]] = defaultdict(list)  # sender -> keys, send order
        self._sender_of: dict[str, str] = {}
        self._acks: dict[str, tuple[int, str]] = {}  # key -> (seq, entry id)
        self._histories: dict[str, list[Entry]] = {}
        self._entries: dict[int, Entry] = {}  # first sighting of each seq
        self._problems: list[str] = []

    # -- observations -------------------------------------------------------------------

    def sent(self, sender: str, key: str) -> None:
        """``sender`` sent ``key`` for the first time (resends are not recorded again)."""
        if key in self._sender_of:
            if self._sender_of[key] != sender:
                raise ValueError(f"key {key} sent by {self._sender_of[key]} and {sender}")
            return
        self._sender_of[key] = sender
        self._sent[sender].append(key)

    def acked(self, key: str, seq: int, entry_id: str, *, duplicate: bool = False) -> None:
        """An ``ack`` for ``key``: the entry it names is ``seq`` / ``entry_id``."""
        if key not in self._sender_of:
            self._problems.append(f"ack for {key}, which was never sent")
        before = self._acks.get(key)
        if before is not None and before != (seq, entry_id):
            self._problems.append(
                f"{key} acked twice with different entries: seq {before[0]} then {seq}"
                f"{' (duplicate: true)' if duplicate else ''}"
            )
        if before is None:
            # A first ack may itself say duplicate: true when the original ack was lost
            # with its connection; either way it names the original entry.
            self._acks[key] = (seq, entry_id)
        self._sighting(Entry(seq, entry_id, key), f"ack of {key}")

    def open_stream(self, reader: str, after: int, label: str = "") -> Stream:
        """A connection of ``reader`` joined: its first delivery must be ``after + 1``."""
        stream = Stream(reader, after, label or f"{reader}#{len(self.streams) + 1}")
        self.streams.append(stream)
        return stream

    def delivered(self, stream: Stream, entry: Entry) -> None:
        """``stream``'s connection received ``entry`` (replayed or live)."""
        expected = stream.last + 1
        if entry.seq != expected:
            kind = "duplicate or reorder" if entry.seq < expected else "gap"
            self._problems.append(
                f"{stream.label}: {kind} within one connection: got seq {entry.seq},"
                f" expected {expected}"
            )
        stream.seqs.append(entry.seq)
        self._sighting(entry, stream.label)

    def retire(self, reader: str) -> None:
        """``reader`` stops before the end of the run: it need not reach the last seq."""
        self._retired.add(reader)

    def history(self, source: str, entries: list[Entry]) -> None:
        """The room's whole log as read from ``source`` (a node), ascending."""
        self._histories[source] = entries
        for entry in entries:
            self._sighting(entry, f"history on {source}")

    def history_of(self, source: str) -> list[Entry]:
        """The log as read from ``source``."""
        return self._histories[source]

    def _sighting(self, entry: Entry, where: str) -> None:
        known = self._entries.setdefault(entry.seq, entry)
        if known != entry:
            self._problems.append(
                f"seq {entry.seq} is {known.id}/{known.body!r} elsewhere"
                f" but {entry.id}/{entry.body!r} in {where}"
            )

    # -- the verdict --------------------------------------------------------------------

    def duplicates(self) -> dict[str, int]:
        """Per reader: seqs received more than once across its connections (tolerated)."""
        out: dict[str, int] = {}
        for reader, streams in self._by_reader().items():
            seen = Bitset()
            out[reader] = sum(seen.add(seq) for s in streams for seq in s.seqs)
        return out

    def _by_reader(self) -> dict[str, list[Stream]]:
        readers: dict[str, list[Stream]] = defaultdict(list)
        for stream in self.streams:
            readers[stream.reader].append(stream)
        return readers

    def last_seq(self) -> int:
        """The room's last seq: from the histories if any were read, else the sightings."""
        if self._histories:
            return max((h[-1].seq if h else 0) for h in self._histories.values())
        return max(self._entries, default=0)

    def problems(self) -> list[str]:
        found = list(self._problems)
        last = self.last_seq()
        found += self._check_readers(last)
        found += self._check_histories()
        log = next(iter(self._histories.values()), None)
        if log is not None:
            found += self._check_acks(log)
            found += self._check_order(log)
        elif self._acks:
            found.append("acks were recorded but no history was read to check them against")
        return found

    def _check_readers(self, last: int) -> list[str]:
        found = []
        for reader, streams in self._by_reader().items():
            seen = Bitset()
            for stream in streams:
                for seq in stream.seqs:
                    seen.add(seq)
            first = min(s.after for s in streams) + 1
            end = last if reader not in self._retired else max(s.last for s in streams)
            gaps = seen.missing(first, end)
            if gaps:
                found.append(
                    f"reader {reader}: never received seq {_cap(gaps)} (of {first}..{end})"
                )
        return found

    def _check_histories(self) -> list[str]:
        found = []
        for source, entries in self._histories.items():
            seqs = [e.seq for e in entries]
            if seqs != list(range(1, len(seqs) + 1)):
                have = Bitset()
                dups = sorted({s for s in seqs if have.add(s)})
                gaps = have.missing(1, max(seqs, default=0))
                found.append(
                    f"history on {source} is not 1..N in order: gaps {_cap(gaps) or 'none'},"
                    f" duplicates {_cap(dups) or 'none'}"
                )
        sources = list(self._histories)
        for other in sources[1:]:
            if self._histories[other] != self._histories[sources[0]]:
                a, b = self._histories[sources[0]], self._histories[other]
                found.append(
                    f"histories differ: {sources[0]} has {len(a)} entries"
                    f" (last {a[-1].seq if a else 0}), {other} has {len(b)}"
                    f" (last {b[-1].seq if b else 0})"
                )
        return found

    def _check_acks(self, log: list[Entry]) -> list[str]:
        found = []
        by_body: dict[str, list[Entry]] = defaultdict(list)
        for entry in log:
            by_body[entry.body].append(entry)
        for key, (seq, entry_id) in self._acks.items():
            copies = by_body.get(key, [])
            if not copies:
                found.append(f"acked {key} (seq {seq}) is missing from the history")
            elif len(copies) > 1:
                found.append(
                    f"{key} is in the history {len(copies)} times: seqs "
                    f"{_cap([e.seq for e in copies])}"
                )
            elif (copies[0].seq, copies[0].id) != (seq, entry_id):
                found.append(
                    f"{key} was acked as seq {seq}/{entry_id} but is seq"
                    f" {copies[0].seq}/{copies[0].id} in the history"
                )
        for key, copies in by_body.items():
            if key not in self._sender_of:
                found.append(f"history holds {key!r} (seq {copies[0].seq}), which nobody sent")
            elif len(copies) > 1 and key not in self._acks:
                found.append(f"unacked {key} is in the history {len(copies)} times")
        return found

    def _check_order(self, log: list[Entry]) -> list[str]:
        found = []
        seq_of = {entry.body: entry.seq for entry in log}
        for sender, keys in self._sent.items():
            seqs = [(seq_of[k], k) for k in keys if k in seq_of]
            for (s1, k1), (s2, k2) in pairwise(seqs):
                if s2 <= s1:
                    found.append(f"sender {sender}: {k2} (sent after {k1}) has seq {s2} <= {s1}")
                    break
        return found

    def verify(self) -> None:
        """Raise AssertionError listing every problem, if any."""
        found = self.problems()
        if found:
            raise AssertionError(
                f"room {self.room}: {len(found)} problem(s):\n  " + "\n  ".join(found[:40])
            )
