"""The chaos checker on made-up observations: a clean run passes, and each kind of broken
guarantee (a gap, a lost acked message, a reorder, a duplicate on one connection, a
resend stored twice, two nodes disagreeing) is reported."""

from __future__ import annotations

import pytest

from .checker import Bitset, Entry, RoomCheck


def entry(seq: int, key: str) -> Entry:
    return Entry(seq, f"id-{key}", key)


def clean_run(n: int = 6) -> tuple[RoomCheck, list[Entry]]:
    """Two senders alternating, every message acked; reader r1 saw everything live."""
    check = RoomCheck("r")
    log = []
    for i in range(1, n + 1):
        key = f"{'ab'[i % 2]}-{i}"
        check.sent(key[0], key)
        check.acked(key, i, f"id-{key}")
        log.append(entry(i, key))
    stream = check.open_stream("r1", after=0)
    for e in log:
        check.delivered(stream, e)
    return check, log


def test_bitset() -> None:
    bits = Bitset()
    assert bits.add(0) is False and bits.add(17) is False and bits.add(17) is True
    assert 17 in bits and 16 not in bits and 10_000 not in bits
    assert bits.missing(0, 18) == [n for n in range(1, 19) if n != 17]


def test_a_clean_run_passes() -> None:
    check, log = clean_run()
    check.history("n1", log)
    check.history("n2", list(log))
    assert check.problems() == []
    check.verify()
    assert check.duplicates() == {"r1": 0}


def test_a_gap_in_one_connection_fails() -> None:
    check, log = clean_run()
    check.history("n1", log)
    stream = check.open_stream("r2", after=2)
    check.delivered(stream, log[2])  # seq 3
    check.delivered(stream, log[4])  # seq 5: 4 never came
    check.delivered(stream, log[5])
    found = check.problems()
    assert any("r2#2: gap within one connection: got seq 5, expected 4" in p for p in found)
    assert any("reader r2: never received seq 4" in p for p in found)
    with pytest.raises(AssertionError, match="gap"):
        check.verify()


def test_a_stream_that_starts_late_fails() -> None:
    # joined with since=2, but the first delivery is 4: the replay skipped seq 3
    check, log = clean_run()
    check.history("n1", log)
    stream = check.open_stream("r2", after=2)
    for e in log[3:]:
        check.delivered(stream, e)
    assert any("got seq 4, expected 3" in p for p in check.problems())


def test_a_gap_between_reconnections_fails() -> None:
    # Each connection is gapless on its own, but the second resumed after seq 3 while the
    # first stopped at 2: seq 3 was never seen by this reader.
    check, log = clean_run()
    check.history("n1", log)
    first = check.open_stream("r2", after=0)
    for e in log[:2]:
        check.delivered(first, e)
    second = check.open_stream("r2", after=3)
    for e in log[3:]:
        check.delivered(second, e)
    assert check.problems() == ["reader r2: never received seq 3 (of 1..6)"]


def test_a_reader_that_stops_short_fails_unless_retired() -> None:
    check, log = clean_run()
    check.history("n1", log)
    stream = check.open_stream("r2", after=0)
    for e in log[:4]:
        check.delivered(stream, e)
    assert check.problems() == ["reader r2: never received seq 5, 6 (of 1..6)"]
    check.retire("r2")
    assert check.problems() == []


def test_duplicates_across_reconnections_are_tolerated() -> None:
    check, log = clean_run()
    check.history("n1", log)
    first = check.open_stream("r2", after=0)
    for e in log[:4]:
        check.delivered(first, e)
    # resumed with an older since than it had seen: seqs 3 and 4 come again
    second = check.open_stream("r2", after=2)
    for e in log[2:]:
        check.delivered(second, e)
    assert check.problems() == []
    assert check.duplicates()["r2"] == 2


def test_a_duplicate_within_one_connection_fails() -> None:
    check, log = clean_run()
    check.history("n1", log)
    stream = check.open_stream("r2", after=0)
    for e in [*log[:3], log[2], *log[3:]]:
        check.delivered(stream, e)
    assert check.problems() == [
        "r2#2: duplicate or reorder within one connection: got seq 3, expected 4"
    ]


def test_a_reorder_within_one_connection_fails() -> None:
    check, log = clean_run()
    check.history("n1", log)
    stream = check.open_stream("r2", after=0)
    for e in [log[0], log[2], log[1], *log[3:]]:
        check.delivered(stream, e)
    assert any(
        "duplicate or reorder within one connection: got seq 2" in p for p in check.problems()
    )


def test_a_missing_acked_message_fails() -> None:
    check, log = clean_run()
    check.sent("a", "a-7")
    check.acked("a-7", 7, "id-a-7")  # acked, then lost: the history stops at 6
    check.history("n1", log)
    assert "acked a-7 (seq 7) is missing from the history" in check.problems()


def test_acks_without_a_history_fail() -> None:
    check, _ = clean_run()
    assert check.problems() == ["acks were recorded but no history was read to check them against"]


def test_an_acked_message_stored_twice_fails() -> None:
    # A resend that was not deduplicated: the same key at seq 2 and again at seq 7.
    check, log = clean_run()
    check.history("n1", [*log, entry(7, log[1].body)])
    found = check.problems()
    assert any(f"{log[1].body} is in the history 2 times: seqs 2, 7" in p for p in found)


def test_an_unacked_resend_stored_twice_fails() -> None:
    check, log = clean_run()
    check.sent("a", "a-9")  # never acked (say the connection died), resent, stored twice
    check.history("n1", [*log, entry(7, "a-9"), entry(8, "a-9")])
    assert "unacked a-9 is in the history 2 times" in check.problems()


def test_a_duplicate_ack_must_name_the_original() -> None:
    check, log = clean_run()
    check.acked(log[0].body, 1, log[0].id, duplicate=True)  # the resend's ack: fine
    check.history("n1", log)
    assert check.problems() == []
    check.acked(log[0].body, 9, "id-other", duplicate=True)
    assert any("acked twice with different entries: seq 1 then 9" in p for p in check.problems())


def test_a_per_sender_reorder_fails() -> None:
    check = RoomCheck("r")
    for key in ("a-1", "a-2", "a-3"):
        check.sent("a", key)
    # a-3 was sent last but stored before a-2
    log = [entry(1, "a-1"), entry(2, "a-3"), entry(3, "a-2")]
    for e in log:
        check.acked(e.body, e.seq, e.id)
    check.history("n1", log)
    assert check.problems() == ["sender a: a-3 (sent after a-2) has seq 2 <= 3"]


def test_one_seq_two_entries_fails() -> None:
    # Two nodes gave seq 3 to different messages: the reader on n2 saw another entry.
    check, log = clean_run()
    check.history("n1", log)
    stream = check.open_stream("r2", after=2)
    check.delivered(stream, entry(3, "b-9"))
    assert any(
        p.startswith("seq 3 is id-b-3/'b-3' elsewhere but id-b-9/'b-9'") for p in check.problems()
    )


def test_a_history_gap_and_diverging_nodes_fail() -> None:
    check, log = clean_run()
    check.history("n1", log)
    check.history("n2", [e for e in log if e.seq != 4])
    found = check.problems()
    assert "history on n2 is not 1..N in order: gaps 4, duplicates none" in found
    assert any(p.startswith("histories differ: n1 has 6 entries") for p in found)


def test_a_phantom_message_fails() -> None:
    check, log = clean_run()
    check.history("n1", [*log, entry(7, "nobody-1")])
    check.retire("r1")
    assert check.problems() == ["history holds 'nobody-1' (seq 7), which nobody sent"]
