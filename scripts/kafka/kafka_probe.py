#!/usr/bin/env python3
"""Readiness probe for scripts/kafka-local.sh: one real Kafka request, stdlib only.

Sends a Metadata request (api key 3, version 4, empty topic list, so it never
creates topics) and succeeds only if the response lists a broker on the probed
port. A broker is only in its own metadata once it has registered with the
controller and been unfenced, i.e. once startup has really finished. Version 4
because Kafka 4.0 removed Metadata v0-v3 (KIP-896); v4 is still non-flexible,
so the plain (non-tagged) encoding below is correct.

With --brokers N it also requires the response to list at least N brokers
(a cluster is ready once every node is registered and unfenced).

usage: kafka_probe.py HOST PORT [TIMEOUT_SECONDS] [--brokers N]
exit 0 = ready (prints "node_id host:port" per broker), 1 = not ready.
"""
import argparse
import socket
import struct
import sys

API_METADATA = 3
VERSION = 4
CORRELATION_ID = 0x4B4C  # arbitrary, checked in the response
CLIENT_ID = b"kafka-local-probe"


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed by broker")
        buf += chunk
    return buf


def probe(host, port, timeout):
    # Request header v1: api_key, api_version, correlation_id, client_id.
    header = struct.pack(">hhih", API_METADATA, VERSION, CORRELATION_ID, len(CLIENT_ID)) + CLIENT_ID
    # Body v4: topics = empty array (not null, which means all topics),
    # allow_auto_topic_creation = false.
    body = struct.pack(">ib", 0, 0)
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", read_exact(sock, 4))
        resp = read_exact(sock, size)
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, resp, pos)
        pos += struct.calcsize(fmt)
        return vals

    def take_string(nullable=False):
        nonlocal pos
        (n,) = take(">h")
        if n < 0:
            if nullable:
                return None
            raise ValueError("null non-nullable string")
        s = resp[pos:pos + n].decode("utf-8")
        pos += n
        return s

    (corr,) = take(">i")  # response header v0
    if corr != CORRELATION_ID:
        raise ValueError("correlation id mismatch: %d" % corr)
    take(">i")  # throttle_time_ms
    (count,) = take(">i")
    brokers = []
    for _ in range(max(count, 0)):
        (node_id,) = take(">i")
        b_host = take_string()
        (b_port,) = take(">i")
        take_string(nullable=True)  # rack
        brokers.append((node_id, b_host, b_port))
    return brokers


def main():
    parser = argparse.ArgumentParser(usage=__doc__.rsplit("usage: ", 1)[1])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("timeout", type=float, nargs="?", default=2.0)
    parser.add_argument("--brokers", type=int, default=1)
    args = parser.parse_args()
    port = args.port
    try:
        brokers = probe(args.host, port, args.timeout)
    except (OSError, EOFError, ValueError, struct.error) as exc:
        print("not ready: %s" % exc, file=sys.stderr)
        return 1
    if not any(b_port == port for _, _, b_port in brokers):
        print("not ready: brokers in metadata: %r" % (brokers,), file=sys.stderr)
        return 1
    if len(brokers) < args.brokers:
        print("not ready: %d of %d brokers in metadata: %r" % (len(brokers), args.brokers, brokers),
              file=sys.stderr)
        return 1
    for node_id, b_host, b_port in brokers:
        print("%d %s:%d" % (node_id, b_host, b_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
