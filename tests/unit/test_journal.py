"""The frame journal: faithful round trips, hourly files, crash tails, cheapness."""

import gzip
import json
import logging
import os
import random
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.collector import journal as journal_module
from api.collector.journal import (
    Frame,
    Journal,
    StartMark,
    journal_files,
    read_entries,
    read_journal,
)

HOUR = datetime(2026, 11, 29, 14, tzinfo=UTC).timestamp()


def frame(i: int) -> bytes:
    return b'{"s":"AAPL","p":150.%d,"v":%d,"t":%d}' % (
        i % 100,
        i,
        1_795_000_000_000 + i,
    )


def sync_journal(directory: Path, **kwargs) -> Journal:
    # No background thread: flushes happen only where the test says.
    return Journal(directory, flush_interval=None, **kwargs)


def members(path: Path) -> int:
    data, count = path.read_bytes(), 0
    while data:
        decoder = zlib.decompressobj(wbits=31)
        decoder.decompress(data)
        assert decoder.eof
        data, count = decoder.unused_data, count + 1
    return count


def test_it_round_trips_frames_byte_for_byte(tmp_path):
    frames = [
        b'{"s":"AAPL","p":150.25,"v":10,"t":1795000000000}',
        b'{"msg":"caf\xc3\xa9 \\"quoted\\"\\n"}',  # UTF-8 with escapes
        b"\xff\xfe\x00broken \x80 frame",  # not UTF-8: kept as base64
        b"",
        b"a str frame",
    ]
    journal = sync_journal(tmp_path)
    for i, data in enumerate(frames):
        journal.record(data, HOUR + i * 0.001)
    journal.record("text given as str", HOUR + 1.5)
    journal.close()

    got = list(read_journal(tmp_path))

    assert got == [(HOUR + i * 0.001, data) for i, data in enumerate(frames)] + [
        (HOUR + 1.5, b"text given as str")
    ]
    assert [p.name for p in journal_files(tmp_path)] == [
        "frames-2026-11-29T14.jsonl.gz"
    ]


def test_it_keeps_start_marks_in_order_with_the_frames(tmp_path):
    journal = sync_journal(tmp_path, clock=lambda: HOUR + 0.5)
    journal.mark_start({"AAPL": 57, "MSFT": 1}, received_at=HOUR, conditions="all")
    journal.record(frame(1), HOUR + 0.25)
    # Stamped by the clock; two streams.
    journal.mark_start({"AAPL": 58}, carried={"AAPL": 40}, streams=["us", "forex"])
    journal.record(frame(2), HOUR + 0.75)
    journal.close()

    entries = list(read_entries(tmp_path))

    assert entries == [
        StartMark(HOUR, {"AAPL": 57, "MSFT": 1}, {}, conditions="all"),
        Frame(HOUR + 0.25, frame(1)),
        StartMark(
            HOUR + 0.5,
            {"AAPL": 58},
            {"AAPL": 40},
            conditions="eodhd",
            streams=["us", "forex"],
        ),
        Frame(HOUR + 0.75, frame(2)),
    ]
    assert list(read_journal(tmp_path)) == [
        (HOUR + 0.25, frame(1)),
        (HOUR + 0.75, frame(2)),
    ]


def test_it_starts_a_file_each_utc_hour(tmp_path):
    journal = sync_journal(tmp_path)
    stamps = [HOUR + 3598.5, HOUR + 3599.999, HOUR + 3600.0, HOUR + 3700]
    for i, at in enumerate(stamps):
        journal.record(frame(i), at)
    journal.close()

    files = journal_files(tmp_path)

    assert [p.name for p in files] == [
        "frames-2026-11-29T14.jsonl.gz",
        "frames-2026-11-29T15.jsonl.gz",
    ]
    assert list(read_journal(tmp_path)) == [
        (at, frame(i)) for i, at in enumerate(stamps)
    ]
    assert journal.stats.files == 2
    assert journal.stats.records == 4


def test_it_never_goes_back_to_an_earlier_hour(tmp_path):
    # A wall clock stepped back must not reorder the journal.
    journal = sync_journal(tmp_path)
    journal.record(frame(1), HOUR + 3600.5)
    journal.record(frame(2), HOUR + 3599.5)
    journal.close()

    assert [p.name for p in journal_files(tmp_path)] == [
        "frames-2026-11-29T15.jsonl.gz"
    ]
    assert [data for _, data in read_journal(tmp_path)] == [frame(1), frame(2)]


def test_it_writes_one_gzip_member_per_flush(tmp_path):
    journal = sync_journal(tmp_path)
    for flush in range(3):
        for i in range(10):
            journal.record(frame(i), HOUR + flush + i / 100)
        journal.flush()
    journal.close()

    (path,) = journal_files(tmp_path)

    assert members(path) == 3
    assert len(list(read_journal(tmp_path))) == 30


@pytest.mark.parametrize(
    ("cut", "fewest", "most"),
    [(1, 150, 150), (8, 150, 150), (10, 149, 149), (200, 147, 148)],
)
def test_it_reads_every_complete_record_before_a_truncated_tail(
    tmp_path, caplog, cut, fewest, most
):
    # Stored, not deflated, so a cut lands at a known place: the last 8 bytes
    # are the checksum and size, the lines before them 86 bytes each.
    journal = sync_journal(tmp_path, compresslevel=0)
    written = []
    for flush in range(3):
        for i in range(50):
            at = HOUR + flush + i / 100
            journal.record(frame(flush * 50 + i), at)
            written.append((at, frame(flush * 50 + i)))
        journal.flush()
    journal.close()
    (path,) = journal_files(tmp_path)
    os.truncate(path, path.stat().st_size - cut)

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    # Everything of the first two members, then a prefix of the cut one.
    assert got == written[: len(got)]
    assert fewest <= len(got) <= most
    assert "truncated" in caplog.text


def test_it_recovers_the_readable_part_of_a_compressed_tail(tmp_path, caplog):
    journal = sync_journal(tmp_path)
    for i in range(2000):
        journal.record(frame(i), HOUR + i / 1000)
        if i == 999:
            journal.flush()
    journal.close()
    (path,) = journal_files(tmp_path)
    size = path.stat().st_size
    os.truncate(path, size - (size // 4))

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    assert [data for _, data in got] == [frame(i) for i in range(len(got))]
    assert 1000 <= len(got) < 2000
    assert "truncated" in caplog.text


def test_it_gives_a_later_run_in_the_same_hour_its_own_file(tmp_path, caplog):
    first = sync_journal(tmp_path, compresslevel=0)
    for i in range(20):
        first.record(frame(i), HOUR + i)
    first.close()
    (crashed,) = journal_files(tmp_path)
    os.truncate(crashed, crashed.stat().st_size - 100)  # died mid-write
    second = sync_journal(tmp_path)
    second.record(frame(99), HOUR + 100)
    second.close()

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    assert [p.name for p in journal_files(tmp_path)] == [
        "frames-2026-11-29T14.jsonl.gz",
        "frames-2026-11-29T14-2.jsonl.gz",
    ]
    assert got[-1] == (HOUR + 100, frame(99))
    assert [data for _, data in got[:-1]] == [frame(i) for i in range(len(got) - 1)]
    assert len(got) - 1 == 18


def test_it_filters_by_received_at_inclusively(tmp_path):
    journal = sync_journal(tmp_path)
    for i in range(10):
        journal.record(frame(i), HOUR + 3000 + i * 100)  # crosses into 15:00
    journal.close()

    got = list(read_journal(tmp_path, start=HOUR + 3200, end=HOUR + 3600))

    assert got == [(HOUR + 3000 + i * 100, frame(i)) for i in (2, 3, 4, 5, 6)]
    assert list(read_journal(tmp_path, start=HOUR + 3650)) == [
        (HOUR + 3000 + i * 100, frame(i)) for i in (7, 8, 9)
    ]
    assert list(read_journal(tmp_path, end=HOUR + 3050)) == [(HOUR + 3000, frame(0))]


class CountingFile:
    def __init__(self, file, log: list[str]) -> None:
        self.file, self.log = file, log

    def write(self, data: bytes) -> int:
        self.log.append("write")
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)


@pytest.fixture
def file_log(monkeypatch) -> list[str]:
    """Every open and write the journal makes on its files."""
    log: list[str] = []

    def counting_open(path, mode="r", *args, **kwargs):
        if mode == "rb":  # reading the journal back
            return open(path, mode, *args, **kwargs)
        log.append("open")
        return CountingFile(open(path, mode, *args, **kwargs), log)

    monkeypatch.setattr(journal_module, "open", counting_open, raising=False)
    return log


def test_it_records_100000_frames_without_touching_the_file(tmp_path, file_log):
    journal = sync_journal(tmp_path, flush_records=1_000_000)
    data = frame(1)

    for i in range(100_000):
        journal.record(data, HOUR + i / 1000)

    assert file_log == []
    assert list(tmp_path.iterdir()) == []
    journal.flush()
    assert file_log == ["open", "write"]
    journal.close()
    assert len(list(read_journal(tmp_path))) == 100_000


def test_it_flushes_in_batches_of_flush_records(tmp_path, file_log):
    journal = sync_journal(tmp_path, flush_records=10_000)

    for i in range(100_000):
        journal.record(frame(i), HOUR + i / 1000)

    assert file_log.count("write") == 10
    assert journal.stats.flushes == 10
    journal.close()
    assert file_log.count("write") == 10  # nothing was left over
    assert file_log.count("open") == 1


def test_it_fsyncs_on_rotation_and_close_only(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    journal = sync_journal(tmp_path)

    for flush in range(5):
        journal.record(frame(flush), HOUR + flush)
        journal.flush()
    opened = len(synced)  # the directory, once, for the new file's name
    journal.record(frame(9), HOUR + 3600)  # next hour: rotate
    journal.flush()
    rotated = len(synced)
    journal.close()

    assert opened == 1
    assert rotated == 3  # the old file, then the directory for the new one
    assert len(synced) == 4


def test_it_flushes_in_the_background_and_on_close(tmp_path):
    journal = Journal(tmp_path, flush_interval=0.01)
    for i in range(100):
        journal.record(frame(i), HOUR + i)
    journal.close()

    assert [data for _, data in read_journal(tmp_path)] == [
        frame(i) for i in range(100)
    ]
    assert not journal.stats.lost


def test_it_counts_records_a_failed_write_loses(tmp_path, monkeypatch, caplog):
    def broken_open(path, mode="r", *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module, "open", broken_open, raising=False)
    journal = sync_journal(tmp_path)
    journal.record(frame(1), HOUR)
    journal.record(frame(2), HOUR + 1)

    with caplog.at_level(logging.ERROR, logger="api.collector.journal"):
        journal.flush()

    assert journal.stats.lost == 2
    assert journal.stats.records == 0
    assert "No space left" in caplog.text


def test_it_skips_a_damaged_last_member_with_a_warning(tmp_path, caplog):
    journal = sync_journal(tmp_path)
    for flush in range(2):
        for i in range(100):
            journal.record(frame(flush * 100 + i), HOUR + flush + i / 1000)
        journal.flush()
    journal.close()
    (path,) = journal_files(tmp_path)
    data = bytearray(path.read_bytes())
    second = data.index(b"\x1f\x8b\x08", 10)  # where the second member starts
    data[second + 20 : second + 40] = b"\x00" * 20  # zeros, as a crash may leave
    path.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    assert [data for _, data in got] == [frame(i) for i in range(100)]
    assert "damaged" in caplog.text


# Damaged members -------------------------------------------------------------------


def member_starts(path: Path) -> list[int]:
    """Where each gzip member of an intact file starts."""
    data, starts, at = path.read_bytes(), [], 0
    while at < len(data):
        starts.append(at)
        decoder = zlib.decompressobj(wbits=31)
        decoder.decompress(data[at:])
        assert decoder.eof
        at = len(data) - len(decoder.unused_data)
    return starts


def write_members(
    directory: Path, count: int = 3, size: int = 100
) -> tuple[Path, list[list[tuple[float, bytes]]]]:
    """One file of `count` members of `size` frames each, and what each holds."""
    journal = sync_journal(directory)
    written = []
    for flush in range(count):
        batch = []
        for i in range(size):
            at, data = HOUR + flush + i / 1000, frame(flush * size + i)
            journal.record(data, at)
            batch.append((at, data))
        journal.flush()
        written.append(batch)
    journal.close()
    (path,) = journal_files(directory)
    return path, written


def flip(path: Path, at: int, length: int = 8) -> None:
    data = bytearray(path.read_bytes())
    for i in range(at, at + length):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_warnings(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING
        and "a damaged gzip member" in record.getMessage()
    ]


def test_it_skips_only_the_damaged_member_in_the_middle(tmp_path, caplog):
    path, (first, second, third) = write_members(tmp_path)
    _, at_second, at_third = member_starts(path)
    flip(path, (at_second + at_third) // 2)

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    assert got == first + third
    (warning,) = damage_warnings(caplog)
    assert warning.startswith(
        f"⚠️ {path}: a damaged gzip member at byte {at_second} (Error -3 while "
        "decompressing data: "
    )
    assert warning.endswith(f"); skipped to the next member at byte {at_third}")
    assert "truncated" not in caplog.text


@pytest.mark.parametrize("where", ["header", "middle", "trailer"])
def test_it_reads_every_member_after_a_damaged_first_one(tmp_path, caplog, where):
    path, (_, second, third) = write_members(tmp_path)
    _, at_second, _ = member_starts(path)
    at = {"header": 0, "middle": at_second // 2, "trailer": at_second - 8}[where]
    flip(path, at, length=4 if where == "trailer" else 8)  # the checksum

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    assert got == second + third
    (warning,) = damage_warnings(caplog)
    assert warning.startswith(f"⚠️ {path}: a damaged gzip member at byte 0 (")
    assert warning.endswith(f"skipped to the next member at byte {at_second}")


def test_it_skips_a_false_header_inside_a_damaged_member_in_one_warning(
    tmp_path, caplog
):
    path, (first, second, third) = write_members(tmp_path)
    _, at_second, at_third = member_starts(path)
    data = bytearray(path.read_bytes())
    middle = (at_second + at_third) // 2
    # A header-like run that fails once decoded: BFINAL with a reserved BTYPE.
    fake = b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 4
    data[middle : middle + len(fake)] = fake
    path.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    assert got == first + third
    (warning,) = damage_warnings(caplog)
    assert f"at byte {at_second} (" in warning
    assert warning.endswith(f"skipped to the next member at byte {at_third}")


def test_it_reads_past_a_damaged_member_up_to_a_truncated_tail(tmp_path, caplog):
    path, (first, _, third) = write_members(tmp_path)
    _, at_second, at_third = member_starts(path)
    flip(path, (at_second + at_third) // 2)
    os.truncate(path, path.stat().st_size - 100)

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    assert got[: len(first)] == first
    rest = got[len(first) :]
    assert 0 < len(rest) < len(third)
    assert rest == third[: len(rest)]
    assert len(damage_warnings(caplog)) == 1
    assert "truncated" in caplog.text


GARBAGE = {
    "random": random.Random(5).randbytes(300_000),
    "zeros": bytes(100_000),
    "headers then garbage": (b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 6) * 5_000,
    "headers in random bytes": b"\x1f\x8b\x08\x00".join(
        random.Random(6).randbytes(40) for _ in range(5_000)
    ),
    "a lone header": b"\x1f\x8b\x08\x00" + bytes(5) + b"\x03",
    "magic at the very end": b"not gzip\x1f\x8b\x08",
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("chunk", [7, 1 << 20])
@pytest.mark.parametrize("garbage", GARBAGE, ids=list(GARBAGE))
def test_it_finishes_on_garbage_without_a_record(
    tmp_path, caplog, monkeypatch, garbage, chunk
):
    monkeypatch.setattr(journal_module, "READ_CHUNK", chunk)
    (tmp_path / "frames-2026-11-29T14.jsonl.gz").write_bytes(GARBAGE[garbage])

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_entries(tmp_path))

    assert got == []
    assert "damaged" in caplog.text or "truncated" in caplog.text


def header_splits(distance: int) -> dict[str, int]:
    """Chunk sizes that cut a header found `distance` bytes into a scan: after
    its first byte, its second, and between the magic and the flags byte."""
    splits = {}
    for name, before in [("1|3", 1), ("2|2", 2), ("3|1", 3)]:
        # A chunk ends `before` bytes into the header: size divides distance+before.
        splits[name] = next(
            size
            for size in range(4, distance + before + 1)
            if (distance + before) % size == 0
        )
    return splits


@pytest.mark.parametrize("split", ["1|3", "2|2", "3|1"])
def test_it_finds_a_header_cut_by_a_chunk_boundary(
    tmp_path, caplog, monkeypatch, split
):
    path, (first, second, third) = write_members(tmp_path)
    _, at_second, at_third = member_starts(path)
    flip(path, (at_second + at_third) // 2)
    # The search starts one byte after the damaged member's own header.
    chunk = header_splits(at_third - (at_second + 1))[split]
    monkeypatch.setattr(journal_module, "READ_CHUNK", chunk)

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    # Small chunks hand out the damaged member's lines from before the damage.
    assert got[: len(first)] == first
    assert got[-len(third) :] == third
    before_damage = got[len(first) : -len(third)]
    assert len(before_damage) < len(second)
    assert before_damage == second[: len(before_damage)]
    (warning,) = damage_warnings(caplog)
    assert warning.endswith(f"skipped to the next member at byte {at_third}")


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_it_reads_an_intact_file_in_tiny_chunks(tmp_path, caplog, monkeypatch, chunk):
    path, written = write_members(tmp_path)
    monkeypatch.setattr(journal_module, "READ_CHUNK", chunk)

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    assert got == written[0] + written[1] + written[2]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("chunk", [7, 64])
def test_it_reads_a_truncated_tail_in_tiny_chunks(tmp_path, caplog, monkeypatch, chunk):
    path, written = write_members(tmp_path)
    os.truncate(path, path.stat().st_size - 50)
    monkeypatch.setattr(journal_module, "READ_CHUNK", chunk)

    with caplog.at_level(logging.WARNING, logger="api.collector.journal"):
        got = list(read_journal(tmp_path))

    everything = written[0] + written[1] + written[2]
    assert len(written[0]) + len(written[1]) <= len(got) < len(everything)
    assert got == everything[: len(got)]
    assert "truncated" in caplog.text
    assert damage_warnings(caplog) == []


def test_a_start_mark_from_before_the_condition_rules_reads_as_every_print(tmp_path):
    # What collectors wrote before --conditions existed: no "conditions" key.
    path = tmp_path / "frames-2026-11-29T14.jsonl.gz"
    record = {"r": HOUR, "meta": {"next_candle": {"AAPL": 3}, "carried": {}}}
    with gzip.open(path, "wb") as fh:
        fh.write(json.dumps(record).encode() + b"\n")

    [mark] = list(read_entries(tmp_path))

    assert mark == StartMark(HOUR, {"AAPL": 3}, {}, conditions="all")
