#!/usr/bin/env bash
# Long-line benchmark: how long `factorypal produce` takes over a stream whose first line is
# LINE_MB megabytes long (one JSON object with a big string), followed by 1,000 small records,
# and its peak RSS. The reader used to rescan its buffer from the start on every frame, so the
# time grew with the square of the line's length; with `producer.max_line_bytes` the line is
# discarded as it streams in, in time linear in its length.
#
# usage: scripts/bench-long-line.sh [LINE_MB]            (default 20)
#   FACTORYPAL_BENCH_BOOTSTRAP=HOST:PORT  a running broker (required)
#   FACTORYPAL_BIN=PATH                   the binary to measure (default: a release build here)
#   BENCH_MAX_LINE_BYTES=N                producer.max_line_bytes for the run (default: unset,
#                                         i.e. the built-in default; an older build without
#                                         the setting must leave it unset)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

line_mb="${1:-20}"
bootstrap="${FACTORYPAL_BENCH_BOOTSTRAP:?set FACTORYPAL_BENCH_BOOTSTRAP=HOST:PORT}"
work="$PWD/target/bench/long-line"
mkdir -p "$work"
if [[ -n "${FACTORYPAL_BIN:-}" ]]; then
  bin="$FACTORYPAL_BIN"
else
  cargo build --release --locked --bin factorypal >&2
  bin="$PWD/target/release/factorypal"
fi

# A tiny HTTP server: the long line, then 1,000 records, honouring ?offset=N, in 64 KiB writes.
port_file="$work/port"
rm -f "$port_file"
python3 - "$line_mb" "$port_file" <<'PY' &
import http.server, sys, urllib.parse
mb, port_file = int(sys.argv[1]), sys.argv[2]
lines = [b'{"id":0,"blob":"' + b"x" * (mb * 1024 * 1024) + b'"}\n']
lines += [b'{"id":%d,"val":%d.5}\n' % (i % 7, i) for i in range(1, 1001)]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def log_message(self, *a): pass
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        offset = int(q.get("offset", ["0"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        body = b"".join(lines[offset:])
        for i in range(0, len(body), 65536):
            self.wfile.write(body[i:i + 65536])
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(port_file, "w").write(str(s.server_address[1]))
s.serve_forever()
PY
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until [[ -s "$port_file" ]]; do sleep 0.1; done
port="$(cat "$port_file")"

topic="bench-long-line-$(date +%s%N)"
"$bin" -q --bootstrap "$bootstrap" admin create-topic "$topic" --partitions 1 >/dev/null
{
  echo "[producer]"
  echo "api_url = \"http://127.0.0.1:$port\""
  [[ -z "${BENCH_MAX_LINE_BYTES:-}" ]] || echo "max_line_bytes = $BENCH_MAX_LINE_BYTES"
  echo "[[producer.sources]]"
  echo 'name = "long"'
  echo 'path = "/long"'
  echo "topic = \"$topic\""
  echo 'key = "id"'
} >"$work/c.toml"
/usr/bin/time -f "%e %M" -o "$work/time" "$bin" -q --config "$work/c.toml" --bootstrap "$bootstrap" \
  produce long >"$work/summary" 2>"$work/stderr"
read -r secs rss <"$work/time"
echo "a ${line_mb} MB line then 1,000 records: ${secs} s wall, peak RSS $((rss / 1024)) MB; $(cat "$work/summary")"
