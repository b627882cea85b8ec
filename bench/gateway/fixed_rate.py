#!/usr/bin/env python3
"""A small open-loop, fixed-rate HTTP/1.1 load generator for bench/gateway_load.py.

Why not oha -q: oha picks URLs from a file at random, so pre-signed requests would be sent
twice (a replay, refused by gatehouse) and the latency of refusals would mix with the latency
of forwarded requests. This one walks the file in order, each target once.

Open loop: request k is due at start + k/rate whatever happened to earlier ones; at each
wake-up every due request goes out on an idle keep-alive connection (a new connection is
opened when none is idle, and counted). Latency is measured from the moment the request is
written to the moment its whole answer has been read (time.perf_counter_ns), so the 1 ms
granularity of epoll timeouts shifts when requests leave (reported as send lag) but not what
is measured. Responses are parsed just enough (status, Content-Length or chunked).

Usage: fixed_rate.py --port P --rate 2000 --seconds 10 --targets FILE [--header 'K: V']...
Prints one JSON line: count, statuses, achieved rate, latency percentiles in ms, send lag.
"""
import argparse
import json
import select
import socket
import time


class Conn:
    __slots__ = ("sock", "buf", "sent_ns", "measured")

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.sent_ns = 0
        self.measured = False


def parse(buf):
    """(status, bytes consumed) for one complete response at the start of buf, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v.strip())
        elif k == "transfer-encoding" and "chunked" in v.lower():
            chunked = True
    body_start = end + 4
    if chunked:
        stop = buf.find(b"\r\n0\r\n\r\n", body_start - 2)
        if stop < 0:
            return None
        return status, stop + 7
    length = length or 0
    if len(buf) < body_start + length:
        return None
    return status, body_start + length


def pct(sorted_ns, p):
    if not sorted_ns:
        return 0.0
    k = min(len(sorted_ns) - 1, max(0, int(round(p / 100.0 * len(sorted_ns) + 0.5)) - 1))
    return sorted_ns[k] / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--targets", required=True, help="file of request targets, one per line, used in order")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--connections", type=int, default=16, help="keep-alive connections opened up front")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds sent at the rate but not measured")
    args = ap.parse_args()

    with open(args.targets) as f:
        targets = [line.rstrip("\n") for line in f if line.strip()]
    extra = "".join(h.strip() + "\r\n" for h in args.header)
    head = f"Host: 127.0.0.1:{args.port}\r\nUser-Agent: python-requests/2.34.2\r\nAccept: */*\r\n{extra}\r\n"
    total = int(args.rate * (args.seconds + args.warmup))
    if total > len(targets):
        raise SystemExit(f"need {total} targets, file has {len(targets)}")
    warm = int(args.rate * args.warmup)

    ep = select.epoll()
    conns = {}
    idle = []

    def open_conn():
        c = Conn(args.port)
        conns[c.sock.fileno()] = c
        ep.register(c.sock.fileno(), select.EPOLLIN)
        idle.append(c)

    for _ in range(args.connections):
        open_conn()

    lat = []
    statuses = {}
    errors = 0
    opened_extra = 0
    max_lag_ns = 0
    sent = 0
    done = 0
    interval_ns = int(1e9 / args.rate)
    start = time.perf_counter_ns() + 5_000_000
    deadline = start + int((args.seconds + args.warmup) * 1e9) + 5_000_000_000
    while done < total:
        now = time.perf_counter_ns()
        if now > deadline:
            errors += total - done
            break
        # Send everything that is due.
        while sent < total and start + sent * interval_ns <= now:
            if not idle:
                open_conn()
                opened_extra += 1
            c = idle.pop()
            req = f"GET {targets[sent]} HTTP/1.1\r\n{head}".encode()
            c.sent_ns = time.perf_counter_ns()
            max_lag_ns = max(max_lag_ns, c.sent_ns - (start + sent * interval_ns))
            c.sock.sendall(req)
            c.measured = sent >= warm
            c.buf = b""
            sent += 1
            now = time.perf_counter_ns()
        timeout = 0.5 if sent >= total else max(0.0, (start + sent * interval_ns - now) / 1e9)
        for fd, _ev in ep.poll(timeout):
            c = conns[fd]
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            got = time.perf_counter_ns()
            if not data:
                errors += 1
                done += 1
                ep.unregister(fd)
                del conns[fd]
                continue
            c.buf += data
            r = parse(c.buf)
            if r is None:
                continue
            status, _used = r
            if c.measured:
                lat.append(got - c.sent_ns)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            done += 1
            c.buf = b""
            idle.append(c)
    measured_s = args.seconds
    lat.sort()
    print(json.dumps({
        "count": len(lat),
        "statuses": statuses,
        "errors": errors,
        "rate": len(lat) / measured_s,
        "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99), "p999_ms": pct(lat, 99.9),
        "max_ms": lat[-1] / 1e6 if lat else 0.0,
        "max_send_lag_ms": max_lag_ns / 1e6,
        "extra_connections": opened_extra,
    }))


if __name__ == "__main__":
    main()
