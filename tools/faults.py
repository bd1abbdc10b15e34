"""Fault scripts against a running web page, bounded and meant for loopback (the README's limits, shown live).

    python -m tools.faults bomb URL [--side 30000] [--token T]
    python -m tools.faults flood URL [--connections 1100] [--hold 3] [--token T]

``bomb`` posts a valid PNG that claims side × side pixels (0.1 MB that would decode into side² × 3 bytes) to
``/api/classify`` and prints the status, the one-line answer and how long it took. ``flood`` opens
``--connections`` connections that never send a byte, times ``GET /api/health`` while they are open, then
counts how many of them the server has closed; every socket is closed at the end. Exit 1 if the page did not
hold (the bomb not refused with 413, the health request failing during the flood).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import struct
import sys
import time
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit


def png_bomb(side: int = 30000) -> bytes:
    """A real, valid 1-bit PNG of side × side black pixels: about 0.1 MB for 30000 (2.7 GB decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def request(url: str, path: str, token: str, method: str = "GET", body: bytes | None = None,
            content_type: str | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    """(status, body) of one request to the page at ``url``."""
    parts = urlsplit(url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["Content-Type"] = content_type
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def bomb(url: str, side: int, token: str) -> bool:
    data = png_bomb(side)
    started = time.monotonic()
    status, body = request(url, "/api/classify", token, "POST", data, "image/png")
    seconds = time.monotonic() - started
    try:
        answer = json.loads(body).get("error", body.decode(errors="replace"))
    except ValueError:
        answer = body.decode(errors="replace")[:200]
    print(f"bomb: {side}x{side} PNG, {len(data) / 1e6:.2f} MB: {status} in {seconds:.2f} s: {answer}")
    return status == 413


def flood(url: str, connections: int, hold: float, token: str, during: Callable[[], None] | None = None) -> bool:
    """Open the silent connections, hold them (calling ``during`` once, if given, while they are open), time a
    health request, count the connections the server closed; True if the health request got a 200."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    sockets: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(connections):
            try:
                sockets.append(socket.create_connection(address, timeout=5))
            except OSError:
                refused += 1
        time.sleep(hold)
        if during is not None:
            during()
        started = time.monotonic()
        try:
            status, _ = request(url, "/api/health", token, timeout=10)
        except OSError as exc:
            status = 0
            print(f"flood: GET /api/health failed: {exc}")
        seconds = time.monotonic() - started
        closed = sum(1 for s in sockets if _closed_by_peer(s))
    finally:
        for s in sockets:
            s.close()
    print(f"flood: {connections} silent connections ({refused} refused at connect), held {hold:g} s: "
          f"{closed} closed by the server; GET /api/health during the flood: {status} in {seconds * 1000:.0f} ms")
    return status == 200


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.faults", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="fault", required=True)
    for name in ("bomb", "flood"):
        sub = commands.add_parser(name)
        sub.add_argument("url", help="the page, e.g. http://127.0.0.1:8080/")
        sub.add_argument("--token", default="", help="the page's access token, if it has one")
    commands.choices["bomb"].add_argument("--side", type=int, default=30000, help="pixels per side")
    commands.choices["flood"].add_argument("--connections", type=int, default=1100, help="silent connections")
    commands.choices["flood"].add_argument("--hold", type=float, default=3.0, help="seconds to hold them")
    args = parser.parse_args(argv)
    if args.fault == "bomb":
        held = bomb(args.url, args.side, args.token)
    else:
        held = flood(args.url, args.connections, args.hold, args.token)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
