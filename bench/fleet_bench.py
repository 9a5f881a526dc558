"""A fleet of collector processes sharing symbols two by two; one is killed.

Four `manage.py run_websocket_collector_v2` processes (each its own spool
directory and API key) share 400 symbols in four slices of 100: collector i is
given slices i and i+1 (mod 4), 200 symbols = 4 connections of 50, so every
symbol has two candidates - one writes it (its advisory lock), the other
stands by. The feed is the built-in simulator (api.simulator.FeedServer) in
this process: every connection streams its own random trades, so each stored
row tells which collector's stream it came from. After --before seconds the
collector writing the most symbols is SIGKILLed; after --after more seconds the
feed goes silent, and 2 s later the others get SIGTERM (all at once).

Measured: takeover time per symbol (the first row stored after the kill, by its
created_at, minus the kill time) and per standby (its "is the writer for" log
line); bars lost around the takeover, checked against reference bars built from
what the simulator sent on each connection (tests/integration/reference.py);
which symbols changed writer; 100-trade numbering; RSS per process.

Run from the repository root:  .venv/bin/python bench/fleet_bench.py
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from harness import (
    ROOT,
    cpu_seconds,
    peak_rss_of,
    percentile,
    pss_mb,
    rss_mb,
    setup_django,
    truncate_bars,
)

COLLECTORS = 4
PER_SLICE = 100
PER_CONNECTION = 50


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (a collector's receiver processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def memory(pid: int) -> dict:
    helpers = children(pid)
    return {
        "rss": rss_mb(pid),
        "peak": peak_rss_of(pid),
        "helpers": len(helpers),
        "helpers_rss": sum(rss_mb(p) for p in helpers),
        "helpers_pss": sum(pss_mb(p) for p in helpers),
        "cpu": cpu_seconds(pid) + sum(cpu_seconds(p) for p in helpers),
    }


class Member:
    """One collector process of the fleet, its output stamped as it arrives."""

    def __init__(self, index: int, symbols: list[str], url: str, spool: Path) -> None:
        self.index = index
        self.symbols = symbols
        self.identity = f"{index + 1:016x}"
        spool.mkdir(parents=True)
        # The identity ends the session's application_name: pg_locks then says
        # which member holds a symbol's lock.
        (spool / "identity").write_text(self.identity + "\n")
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_websocket_collector_v2",
                "--ws-url",
                url,
                "--skip-market-hours",
                "--no-news",
                "--grace",
                "0.5",
                "--symbols-per-connection",
                str(PER_CONNECTION),
                "--spool-dir",
                str(spool),
                "--symbols",
                ",".join(symbols),
            ],
            cwd=ROOT,
            env={**os.environ, "EODHD_API_KEY": self.token},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @property
    def token(self) -> str:
        return f"fleet-key-{self.index}"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def wait(self) -> int:
        """Its exit code once it ended (killed after 30 s). Signal it once only:
        a second SIGTERM ends the command at once."""
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        self.reader.join(5)
        return code


def stored_rows() -> tuple[dict, dict]:
    """Stored 1-second bars as reference.second_bars keys them, and each row's
    created_at (epoch seconds: when the writer sent its first version)."""
    from django.db import connection

    from api.models import SecondSnapshot
    from tests.integration import reference

    bars = reference.stored_second_bars()
    created = {
        (symbol, int(ts.timestamp())): at.timestamp()
        for symbol, ts, at in SecondSnapshot.objects.values_list(
            "ticker__symbol", "timestamp", "created_at"
        )
    }
    connection.close()
    return bars, created


def lock_writers(members: list[Member], symbols: list[str]) -> dict[str, int | None]:
    """Who holds each symbol's lock now, by member (pg_locks)."""
    from django.db import connection

    from api.collector.leader import unit, writers

    held = writers([unit("trades", s) for s in symbols])
    connection.close()
    by_identity = {m.identity: m.index for m in members}
    out = {}
    for symbol in symbols:
        holder = held.get(unit("trades", symbol), "")
        name = holder.split(" (pid")[0]
        out[symbol] = by_identity.get(name.rsplit("/", 1)[-1])
    return out


def count_stored_symbols() -> int:
    from django.db import connection

    from api.models import SecondSnapshot

    n = SecondSnapshot.objects.values("ticker").distinct().count()
    connection.close()
    return n


def candles_follow(trades: list[dict], candles: list[tuple[int, tuple]]) -> bool:
    """Are these stored 100-trade bars (number, values), in order, 100
    consecutive trades each of this stream, one after the other?"""
    from tests.integration import reference

    if not candles:
        return True
    number, first = candles[0]
    first_ms = first[5]
    for start in (j for j, t in enumerate(trades) if int(t["t"]) == first_ms):
        ok = True
        for k, (num, values) in enumerate(candles):
            chunk = trades[start + 100 * k : start + 100 * (k + 1)]
            built = reference.tick_candles(chunk, first_number=num)
            if built.get((chunk[0]["s"] if chunk else "", num)) != values:
                ok = False
                break
        if ok:
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="simulator frames/s per connection (across its 50 symbols): 10 "
        "trades/s per symbol, a 100-trade bar every 10 s",
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--before", type=float, default=20.0, help="seconds from start to the kill"
    )
    parser.add_argument(
        "--after", type=float, default=20.0, help="seconds from the kill to silence"
    )
    parser.add_argument(
        "--kill",
        type=int,
        default=None,
        help="the member to kill (default: the one writing the most symbols)",
    )
    args = parser.parse_args()
    setup_django()
    truncate_bars()
    from django.db import connection

    from api.models import Coverage
    from api.simulator import FeedServer, SimOptions
    from tests.integration import reference

    Coverage.objects.all().delete()  # earlier runs' intervals: not this fleet's
    connection.close()

    symbols = [f"F{i:03d}" for i in range(COLLECTORS * PER_SLICE)]
    slices = [symbols[j * PER_SLICE : (j + 1) * PER_SLICE] for j in range(COLLECTORS)]
    server = FeedServer(
        options=SimOptions(rate=args.rate, seed=args.seed, jitter_ms=0)
    ).start()
    spools = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    members: list[Member] = []
    bench_cpu0 = cpu_seconds(os.getpid())
    started = time.time()
    try:
        for i in range(COLLECTORS):
            given = slices[i] + slices[(i + 1) % COLLECTORS]
            members.append(Member(i, given, server.url, spools / f"c{i}"))
        connections = COLLECTORS * 2 * PER_SLICE // PER_CONNECTION
        if not server.wait_for_connections(connections, timeout=60):
            raise SystemExit(f"only {server.connections} connections after 60 s")
        deadline = time.time() + 60
        while count_stored_symbols() < len(symbols):
            if time.time() > deadline:
                raise SystemExit("not every symbol stored a bar within 60 s")
            time.sleep(0.5)
        ready = time.time() - started
        time.sleep(max(3.0, args.before - (time.time() - started)))

        owners = lock_writers(members, symbols)
        written = Counter(owners.values())
        victim = args.kill
        if victim is None:
            victim = max(range(COLLECTORS), key=lambda i: (written[i], -i))
        at_kill = {m.index: memory(m.proc.pid) for m in members}
        killed_at = time.time()
        members[victim].proc.kill()
        members[victim].proc.wait(10)
        time.sleep(args.after)
        server.set_silent(True)
        silent_at = time.time()
        time.sleep(2.0)
        survivors = [m for m in members if m.index != victim]
        at_end = {m.index: memory(m.proc.pid) for m in survivors}
        # All at once, as a fleet is stopped: one by one, each stop would hand
        # its symbols to a standby that is still running.
        stop_at = time.time()
        for m in survivors:
            m.proc.send_signal(signal.SIGTERM)
        codes = {m.index: m.wait() for m in survivors}
        bench_cpu = cpu_seconds(os.getpid()) - bench_cpu0
        wall = time.time() - started
        log = server.connection_log
        sent = {r.index: server.sent_trades(connection=r.index) for r in log}
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(10)
        server.stop()
        shutil.rmtree(spools, ignore_errors=True)

    # What each connection was: its member (by API key), its symbols, its stream.
    member_of = {r.index: int(r.token.rsplit("-", 1)[1]) for r in log}
    conns_of: dict[tuple[str, int], list[int]] = {}
    for r in log:
        for s in r.symbols:
            conns_of.setdefault((s, member_of[r.index]), []).append(r.index)
    refs = {c: reference.second_bars(trades) for c, trades in sent.items()}
    stored, created = stored_rows()
    stored_candles = reference.stored_tick_candles()
    trades_of: dict[tuple[int, str], list[dict]] = {}
    for c, trades in sent.items():
        for t in trades:
            trades_of.setdefault((c, t["s"]), []).append(t)

    by_symbol: dict[str, list[tuple[int, tuple]]] = {}
    for (s, sec), values in stored.items():
        by_symbol.setdefault(s, []).append((sec, values))

    def ref_for(symbol: str, member: int) -> dict[int, tuple]:
        out = {}
        for c in conns_of.get((symbol, member), []):
            out.update({sec: v for (s, sec), v in refs[c].items() if s == symbol})
        return out

    candidates = {
        s: [m for m in range(COLLECTORS) if (s, m) in conns_of] for s in symbols
    }
    switches: dict[str, int] = {}
    first_writer: dict[str, int | None] = {}
    last_writer: dict[str, int | None] = {}
    unmatched = 0
    ambiguous = 0
    late_rows: Counter = Counter()  # stored after the SIGTERM: same writer or not
    lost_gap: dict[str, int] = {}
    missing: dict[str, int] = {}
    takeover: dict[str, float] = {}
    for s in symbols:
        rows = sorted(by_symbol.get(s, []))
        streams = {m: ref_for(s, m) for m in candidates[s]}
        labels, late = [], []
        for sec, values in rows:
            match = [m for m, ref in streams.items() if ref.get(sec) == values]
            if not match:
                unmatched += 1
            elif len(match) > 1:
                ambiguous += 1
            elif created[(s, sec)] < stop_at:
                labels.append((sec, match[0]))
            else:
                late.append(match[0])
        owners_seen = [m for _, m in labels]
        switches[s] = sum(
            1 for a, b in zip(owners_seen, owners_seen[1:], strict=False) if a != b
        )
        first_writer[s] = labels[0][1] if labels else None
        last_writer[s] = labels[-1][1] if labels else None
        for m in late:
            late_rows["same writer" if m == last_writer[s] else "another"] += 1
        have = {sec for sec, _ in rows}
        old, new = first_writer[s], last_writer[s]
        if old is None:
            missing[s] = -1
            continue
        last_old = max(sec for sec, m in labels if m == old)
        expected = {sec for sec in streams[old] if sec <= last_old}
        if new != old:
            first_new = min(sec for sec, m in labels if m == new)
            # Seconds the standby's stream had trades in, between the dead
            # owner's last stored bar and the first the standby stored: lost.
            lost_gap[s] = sum(1 for sec in streams[new] if last_old < sec < first_new)
            expected |= {sec for sec in streams[new] if sec > last_old}
            after = [created[(s, sec)] for sec in have if created[(s, sec)] > killed_at]
            if after:
                takeover[s] = min(after) - killed_at
        else:
            expected = set(streams[old])
        missing[s] = len(expected - have)

    # 100-trade bars: numbered 1..n per symbol; the unchanged ones exactly the
    # writer's stream; a changed symbol's: the old stream's up to some number,
    # then 100 consecutive trades each of the new writer's stream.
    numbers: dict[str, list[tuple[int, tuple]]] = {}
    for (s, num), values in stored_candles.items():
        numbers.setdefault(s, []).append((num, values))
    gaps = 0
    candle_bad = 0
    candle_split = []
    for s in symbols:
        items = sorted(numbers.get(s, []))
        if [n for n, _ in items] != list(range(1, len(items) + 1)):
            gaps += 1
        old, new = first_writer[s], last_writer[s]
        if old is None:
            continue
        old_c = reference.tick_candles(
            [t for c in conns_of[(s, old)] for t in trades_of.get((c, s), [])]
        )
        prefix = 0
        for num, values in items:
            if old_c.get((s, num)) != values:
                break
            prefix = num
        rest = [(n, v) for n, v in items if n > prefix]
        if new == old:
            if rest or len(items) != sum(1 for k in old_c if k[0] == s):
                candle_bad += 1
        else:
            stream = [t for c in conns_of[(s, new)] for t in trades_of.get((c, s), [])]
            if not candles_follow(stream, rest):
                candle_bad += 1
            candle_split.append((prefix, len(rest)))

    # Report ------------------------------------------------------------------------
    print(
        f"fleet: {COLLECTORS} collectors x {2 * PER_SLICE} symbols "
        f"({2 * PER_SLICE // PER_CONNECTION} connections each), {len(symbols)} "
        f"symbols, simulator {args.rate:.0f} frames/s per connection; all "
        f"symbols stored within {ready:.1f} s of the start; run {wall:.0f} s"
    )
    rates = []
    for r in log:
        ts = [int(t["t"]) for t in sent[r.index]]
        if len(ts) > 1 and ts[-1] > ts[0]:
            rates.append((len(ts) - 1) / ((ts[-1] - ts[0]) / 1000))
    print(
        f"simulator: {len(log)} connections, {sum(len(v) for v in sent.values())} "
        f"trades; achieved frames/s per connection min {min(rates):.0f}, median "
        f"{statistics.median(rates):.0f}, max {max(rates):.0f} (asked "
        f"{args.rate:.0f}); this process (simulator, idle Django) used "
        f"{bench_cpu:.1f} s of CPU in {wall:.0f} s on {os.cpu_count()} cores"
    )
    print(
        "writers at the kill (pg_locks): "
        + ", ".join(f"collector {i}: {written[i]}" for i in range(COLLECTORS))
        + (f", none: {written[None]}" if written[None] else "")
    )
    mine = {s for s, m in owners.items() if m == victim}
    changed = {s for s in symbols if first_writer[s] != last_writer[s]}
    print(
        f"killed collector {victim} (SIGKILL) {killed_at - started:.1f} s after the "
        f"start, writing {len(mine)} symbols; feed silent "
        f"{silent_at - killed_at:.1f} s after the kill"
    )
    for m in members:
        if m.index == victim:
            continue
        said = [
            (at - killed_at, line.split("writer for ", 1)[1])
            for at, line in m.lines
            if at > killed_at and "is the writer for" in line
        ]
        for after, what in said:
            print(
                f"  collector {m.index} log, {after:.2f} s after the kill: "
                f"writer for {what}"
            )
    times = sorted(takeover.values())
    by_new = {}
    for s, t in takeover.items():
        by_new.setdefault(last_writer[s], []).append(t)
    print(
        f"takeover (first row stored after the kill, by created_at): {len(times)} "
        f"symbols, min {min(times, default=float('nan')):.2f} s, p50 "
        f"{percentile(times, 0.5):.2f} s, max {max(times, default=float('nan')):.2f}"
        " s; by new writer: "
        + ", ".join(
            f"collector {m} {len(v)} symbols p50 {percentile(v, 0.5):.2f} s"
            for m, v in sorted(by_new.items())
        )
    )
    first_ok = sum(1 for s in symbols if first_writer[s] == owners[s])
    print(
        f"changed writer: {len(changed)} symbols; the killed collector wrote "
        f"{len(mine)}: {'the same set' if changed == mine else 'DIFFERENT'} "
        f"({len(changed - mine)} more, {len(mine - changed)} fewer); first "
        f"writer = lock holder at the kill for {first_ok} of {len(symbols)}"
    )
    print(
        f"bars lost in the takeover gap: {sum(lost_gap.values())} (over "
        f"{len(lost_gap)} symbols); stored vs expected elsewhere: missing "
        f"{sum(v for v in missing.values() if v > 0)}, rows matching no stream "
        f"{unmatched}, matching both {ambiguous}, symbols with no rows "
        f"{sum(1 for v in missing.values() if v < 0)}"
    )
    print(
        f"rows stored after the SIGTERM: {late_rows['same writer']} by the "
        f"symbol's writer, {late_rows['another']} by another collector (a "
        f"standby that outlived the writer for a moment; not counted above)"
    )
    changed_switch = Counter(switches[s] for s in changed)
    other_switch = Counter(switches[s] for s in symbols if s not in changed)
    print(
        f"stream switches per symbol: changed {dict(sorted(changed_switch.items()))},"
        f" others {dict(sorted(other_switch.items()))}"
    )
    splits = Counter(candle_split)
    print(
        f"100-trade bars: {len(stored_candles)} stored; numbering not 1..n for "
        f"{gaps} symbols; not the expected trades for {candle_bad}; changed "
        f"symbols (old stream's bars, new stream's bars): "
        f"{dict(splits.most_common(6))}"
    )
    for i in range(COLLECTORS):
        k, e = at_kill[i], at_end.get(i)
        end = (
            f"; at the end {e['rss']:.0f} MB + {e['helpers_rss']:.0f} MB "
            f"(PSS {e['helpers_pss']:.0f} MB), CPU {e['cpu']:.1f} s, exit "
            f"{codes[i]}"
            if e
            else " (killed)"
        )
        print(
            f"collector {i}: RSS at the kill {k['rss']:.0f} MB (peak "
            f"{k['peak']:.0f}) + {k['helpers']} receiver processes "
            f"{k['helpers_rss']:.0f} MB (PSS {k['helpers_pss']:.0f} MB){end}"
        )
    per_member = max(k["rss"] + k["helpers_rss"] for k in at_kill.values())
    bad = [m for m in members if m.index != victim and codes.get(m.index)]
    for m in bad:
        print(f"--- collector {m.index} output (last 20 lines) ---")
        for _, line in m.lines[-20:]:
            print(line)
    print(
        f"RESULT takeover_p50_s={percentile(times, 0.5):.2f} "
        f"takeover_max_s={max(times, default=float('nan')):.2f} "
        f"bars_lost={sum(lost_gap.values())} changed={len(changed)} "
        f"killed_wrote={len(mine)} same_set={changed == mine} "
        f"numbering_gaps={gaps} rss_per_collector_mb={per_member:.0f}"
    )


if __name__ == "__main__":
    main()
