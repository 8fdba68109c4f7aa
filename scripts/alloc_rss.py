#!/usr/bin/env python3
"""Memory after load: how much a bandsync server holds per idle connection, at the peak of
a load of half-sent messages, and after every connection has closed, for one server binary.

Usage: scripts/alloc_rss.py BINARY [--conns 2000] [--idle 5000] [--part-bytes 30000]

Starts BINARY on a free loopback port, then:
  1. idle:  opens --idle WebSockets that join 500 sessions and stay idle; RSS per connection.
  2. load:  --conns more sockets each send a binary frame's first --part-bytes bytes and
            never finish it (the frame guard holds them, within PARTIAL_MESSAGE_BUDGET_BYTES),
            while the idle ones stay; RSS at the peak.
  3. after: closes every socket, waits 20 s (allocators that purge on a timer get it),
            RSS again.
Prints one JSON line. Targets 127.0.0.1 only; stops the server it started.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def frame(opcode, payload, fin=True, declared=None):
    mask = b"\x11\x22\x33\x44"
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


async def open_ws(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head[:80])
    return reader, writer


async def drain_forever(reader):
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, asyncio.CancelledError):
        pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--part-bytes", type=int, default=30000)
    args = ap.parse_args()

    port = free_port()
    env = dict(os.environ, PORT=str(port), LOG_LEVEL="warn", RATE_LIMIT_MAX_REQUESTS="100000")
    server = subprocess.Popen([args.binary], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.3)
        base = rss_kib(server.pid)

        sockets, tasks = [], []
        ping = frame(0x9, b"")
        for i in range(args.idle):
            reader, writer = await open_ws(port)
            join = json.dumps({"type": "join_session", "data": {"sessionId": f"s{i % 500}"}})
            writer.write(frame(0x1, join.encode()))
            sockets.append(writer)
            tasks.append(asyncio.create_task(drain_forever(reader)))
        await asyncio.sleep(2)
        idle = rss_kib(server.pid)

        part = frame(0x2, b"\x07" * args.part_bytes, fin=True, declared=args.part_bytes * 2)
        for _ in range(args.conns):
            reader, writer = await open_ws(port)
            writer.write(part)
            sockets.append(writer)
            tasks.append(asyncio.create_task(drain_forever(reader)))
        for w in sockets:
            w.write(ping)
        await asyncio.sleep(2)
        peak = rss_kib(server.pid)

        for w in sockets:
            w.close()
        for t in tasks:
            t.cancel()
        await asyncio.sleep(2)
        after_2s = rss_kib(server.pid)
        await asyncio.sleep(18)
        after_20s = rss_kib(server.pid)
        print(json.dumps({
            "binary": args.binary,
            "rss_start_mib": round(base / 1024, 1),
            "idle_conns": args.idle,
            "kib_per_idle_conn": round((idle - base) / args.idle, 2),
            "loaded_conns": args.conns,
            "part_bytes": args.part_bytes,
            "rss_peak_mib": round(peak / 1024, 1),
            "rss_after_close_2s_mib": round(after_2s / 1024, 1),
            "rss_after_close_20s_mib": round(after_20s / 1024, 1),
            "returned_share": round((peak - after_20s) / max(1, peak - base), 3),
        }))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
