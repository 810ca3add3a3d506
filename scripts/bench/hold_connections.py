"""Holds N half-sent HTTP connections spread over K loopback source addresses (127.0.0.2 on),
then times a GET /healthz from 127.0.0.1 and counts how the held ones ended.

usage: python3 scripts/bench/hold_connections.py HOST PORT N K
Loopback only; raise `ulimit -n` above N first.
"""
import socket, sys, time
host, port, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
held = []; t0 = time.monotonic()
for i in range(n):
    s = socket.socket()
    s.bind((f"127.0.0.{2 + i % k}", 0))
    s.connect((host, port))
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    except OSError:
        pass
    held.append(s)
print(f"holding {len(held)} half-sent connections from {k} addresses (opened in {time.monotonic()-t0:.1f} s)", flush=True)
start = time.monotonic()
c = socket.create_connection((host, port), timeout=30)
c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
try:
    data = c.recv(4096)
    print(f"/healthz answered after {time.monotonic()-start:.2f} s: {data.splitlines()[0]!r}")
except socket.timeout:
    print("/healthz: no answer within 30 s")
time.sleep(1)
closed = refused = 0
for s in held:
    s.setblocking(False)
    try:
        d = s.recv(65536)
        if d.startswith(b"HTTP/1.1 503"): refused += 1
        elif d == b"": closed += 1
    except BlockingIOError: pass
    except ConnectionError: closed += 1
print(f"{refused} refused with 503, {closed} closed without an answer, {len(held)-closed-refused} still open")
