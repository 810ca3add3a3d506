//! `serve-api` over real HTTP: the in-process server on port 0 for behaviour, the real binary
//! for start-up errors, exit codes and signals.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::raw_http::{
    HALF_A_REQUEST, LOCAL, OTHER, client, connect_from, exchange, healthz_from, healthz_until_ok,
    read_until_closed, read_until_end, sent,
};
use common::{
    TEST_TIMEOUT, factorypal, http_get, http_get_body, ndjson, run_with_timeout, send_signal,
    stderr,
};
use factorypal::Limits;
use factorypal::api::{Catalog, load_dir, serve};
use factorypal::settings::ApiSettings;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Writes `files` into a fresh data dir.
fn data_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Starts the real server on 127.0.0.1:0; returns its address and the token that stops it.
async fn start(
    dir: &Path,
    delay: Duration,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    start_limited(dir, delay, Limits::default()).await
}

/// [`start`] with `limits` instead of the defaults.
async fn start_limited(
    dir: &Path,
    delay: Duration,
    limits: Limits,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let catalog = Catalog::new(load_dir(dir).unwrap(), delay).with_limits(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, catalog, shutdown.clone()));
    (addr, shutdown, task)
}

const METRICS: &str = r#"[
  {"id": 1, "val": 1.5, "time": 30},
  {"id": 2, "val": 2.5, "time": 10},
  {"id": 3, "val": 3.5, "time": 20},
  {"id": 4, "val": 4.5, "time": 10},
  {"id": 5, "val": 5.5, "time": 40.5}
]"#;

fn ids(records: &[Value]) -> Vec<i64> {
    records.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn streams_ndjson_in_time_order_stable_for_equal_times() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let (addr, shutdown, _) = start(dir.path(), Duration::ZERO).await;
    let (status, content_type, body) = http_get_body(addr, "/stream_data_metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/x-ndjson");
    let records = ndjson(&body);
    assert_eq!(ids(&records), [2, 4, 3, 1, 5]);
    // Compact JSON, field order as in the file.
    assert!(body.starts_with(b"{\"id\":2,\"val\":2.5,\"time\":10}\n"));
    shutdown.cancel();
}

#[tokio::test]
async fn offset_and_limit_select_a_window_of_the_sorted_order() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let (addr, shutdown, _) = start(dir.path(), Duration::ZERO).await;
    let window = |q: &'static str| async move { ndjson(&http_get_body(addr, q).await.2) };
    assert_eq!(
        ids(&window("/stream_data_metrics?offset=1&limit=2").await),
        [4, 3]
    );
    assert_eq!(ids(&window("/stream_data_metrics?offset=3").await), [1, 5]);
    assert_eq!(ids(&window("/stream_data_metrics?limit=1").await), [2]);
    assert!(window("/stream_data_metrics?offset=5").await.is_empty());
    assert!(window("/stream_data_metrics?limit=0").await.is_empty());
    shutdown.cancel();
}

#[tokio::test]
async fn bad_query_values_are_400_with_a_json_error() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let (addr, shutdown, _) = start(dir.path(), Duration::ZERO).await;
    for query in [
        "offset=-1",
        "offset=abc",
        "offset=6",
        "limit=x",
        "delay=-0.5",
        "delay=soon",
        "ofset=1",
    ] {
        let (status, content_type, body) =
            http_get_body(addr, &format!("/stream_data_metrics?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(content_type, "application/json");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().len() > 10,
            "{query}: {error}"
        );
    }
    shutdown.cancel();
}

#[tokio::test]
async fn delay_spaces_records_and_the_query_overrides_it() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let (addr, shutdown, _) = start(dir.path(), Duration::from_millis(150)).await;

    // Server default: 5 records, 4 gaps of 150 ms; each record arrives on its own.
    let started = Instant::now();
    let mut body = http_get(addr, "/stream_data_metrics").await.into_body();
    let mut arrivals = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            for _ in data.iter().filter(|&&b| b == b'\n') {
                arrivals.push(started.elapsed());
            }
        }
    }
    assert_eq!(arrivals.len(), 5);
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(140),
            "gap too short: {arrivals:?}"
        );
    }

    // delay=0 in the query on a server whose default would take 4 × 2 s.
    let (slow, slow_shutdown, _) = start(dir.path(), Duration::from_secs(2)).await;
    let started = Instant::now();
    let records = ndjson(&http_get_body(slow, "/stream_data_metrics?delay=0").await.2);
    assert_eq!(records.len(), 5);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "delay=0 still waited"
    );
    slow_shutdown.cancel();

    // A larger per-request delay.
    let started = Instant::now();
    let records = ndjson(
        &http_get_body(addr, "/stream_data_metrics?limit=3&delay=0.3")
            .await
            .2,
    );
    assert_eq!(records.len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(590));
    shutdown.cancel();
}

/// `stamp=FIELD` adds the send time to every record as its last member (the benchmark's way
/// to tell each record's latency), leaving the record otherwise as it was; a field name that
/// would need escaping is a 400.
#[tokio::test]
async fn stamp_adds_the_send_time_to_every_record() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let (addr, shutdown, _) = start(dir.path(), Duration::ZERO).await;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let plain = ndjson(&http_get_body(addr, "/stream_data_metrics").await.2);
    for query in ["delay=0", "delay=0.001"] {
        let before = now();
        let stamped = ndjson(
            &http_get_body(addr, &format!("/stream_data_metrics?stamp=sent_at&{query}"))
                .await
                .2,
        );
        let after = now();
        assert_eq!(stamped.len(), plain.len(), "{query}");
        for (mut record, original) in stamped.into_iter().zip(&plain) {
            let sent_at = record["sent_at"].as_f64().unwrap();
            // Microseconds, so a little below `before` when it falls within one.
            assert!(
                (before - 1e-6..=after).contains(&sent_at),
                "{query}: {before} <= {sent_at} <= {after}"
            );
            record.as_object_mut().unwrap().remove("sent_at");
            assert_eq!(&record, original, "{query}");
        }
    }
    for bad in ["stamp=", "stamp=a%22b", "stamp=sent-at"] {
        let (status, _, body) = http_get_body(addr, &format!("/stream_data_metrics?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("field name"),
            "{bad}: {error}"
        );
    }
    shutdown.cancel();
}

#[tokio::test]
async fn fifty_concurrent_clients_each_get_the_whole_stream() {
    let records: Vec<Value> = (0..2000)
        .rev()
        .map(|i| json!({"id": i % 20, "val": i, "time": i}))
        .collect();
    let text = serde_json::to_string(&records).unwrap();
    let dir = data_dir(&[
        ("metrics.json", &text),
        (
            "workorder.json",
            r#"[{"time":1,"product":0,"production":1.0}]"#,
        ),
    ]);
    let (addr, shutdown, _) = start(dir.path(), Duration::ZERO).await;
    let clients: Vec<_> = (0..50)
        .map(|i| {
            tokio::spawn(async move {
                let path = if i % 10 == 0 {
                    "/stream_data_workorder"
                } else {
                    "/stream_data_metrics"
                };
                (path, ndjson(&http_get_body(addr, path).await.2))
            })
        })
        .collect();
    for client in clients {
        let (path, got) = client.await.unwrap();
        if path == "/stream_data_workorder" {
            assert_eq!(got.len(), 1);
        } else {
            let times: Vec<i64> = got.iter().map(|r| r["time"].as_i64().unwrap()).collect();
            assert_eq!(times, (0..2000).collect::<Vec<_>>());
        }
    }
    shutdown.cancel();
}

#[tokio::test]
async fn a_client_that_disconnects_stops_only_its_own_stream() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let (addr, shutdown, _) = start(dir.path(), Duration::from_millis(100)).await;
    let mut quitter = http_get(addr, "/stream_data_metrics").await.into_body();
    quitter.frame().await.unwrap().unwrap();
    let stayer =
        tokio::spawn(async move { ndjson(&http_get_body(addr, "/stream_data_metrics").await.2) });
    drop(quitter);
    assert_eq!(ids(&stayer.await.unwrap()), [2, 4, 3, 1, 5]);
    shutdown.cancel();
}

#[tokio::test]
async fn root_lists_endpoints_healthz_answers_unknown_paths_are_404() {
    let dir = data_dir(&[
        ("metrics.json", METRICS),
        ("workorder.json", r#"[{"time":1}]"#),
    ]);
    let (addr, shutdown, _) = start(dir.path(), Duration::ZERO).await;

    let (status, _, body) = http_get_body(addr, "/").await;
    assert_eq!(status, 200);
    let listing: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        listing,
        json!({"endpoints": [
            {"path": "/stream_data_metrics", "records": 5},
            {"path": "/stream_data_workorder", "records": 1},
        ]})
    );

    assert_eq!(http_get_body(addr, "/healthz").await.0, 200);

    let (status, content_type, body) = http_get_body(addr, "/stream_data_nope").await;
    assert_eq!(status, 404);
    assert_eq!(content_type, "application/json");
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        error["endpoints"],
        json!(["/stream_data_metrics", "/stream_data_workorder"])
    );
    shutdown.cancel();
}

#[tokio::test]
async fn shutdown_cuts_open_streams_so_clients_see_them_incomplete() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let (addr, shutdown, task) = start(dir.path(), Duration::from_secs(5)).await;
    let mut body = http_get(addr, "/stream_data_metrics").await.into_body();
    body.frame().await.unwrap().unwrap(); // the first record; the next would come in 5 s
    shutdown.cancel();
    // The stream ends at once, as an error: a client must not mistake a shutdown for the end
    // of the data. The server task returns.
    let rest = tokio::time::timeout(Duration::from_secs(3), body.collect())
        .await
        .expect("stream ended");
    assert!(
        rest.is_err(),
        "a stream cut by shutdown must not look complete"
    );
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("server returned")
        .unwrap();
}

#[tokio::test]
async fn error_answers_quote_a_long_path_or_value_cut_short() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let (addr, shutdown, _) = start(dir.path(), Duration::ZERO).await;
    let long = "x".repeat(20_000);
    for target in [
        format!("/{long}"),
        format!("/stream_data_metrics?offset={long}"),
        format!("/stream_data_metrics?{long}=1"),
    ] {
        let (status, _, body) = http_get_body(addr, &target).await;
        assert!(status == 404 || status == 400, "{status}");
        let error: Value = serde_json::from_slice(&body).unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.len() < 400, "{} bytes: {message}", message.len());
        assert!(message.contains("bytes)"), "{message}");
    }
    shutdown.cancel();
}

/// The end of a `/healthz` answer, which is `{"status":"ok"}` and a newline.
const HEALTHZ_END: &[u8] = b"\"ok\"}\n";

#[tokio::test]
async fn connections_without_a_whole_request_are_cut_so_healthz_answers_again() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let limits = Limits {
        max_connections: 24,
        max_connections_per_client: 1000,
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (addr, shutdown, _) = start_limited(dir.path(), Duration::ZERO, limits).await;
    let mut held = Vec::new();
    // Kept alive after one answered request, then idle.
    for _ in 0..8 {
        let mut stream = sent(LOCAL, addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
        let response = read_until_end(&mut stream, HEALTHZ_END).await;
        assert!(response.starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    // Half a request head, then silence; and nothing at all.
    for _ in 0..8 {
        held.push(sent(LOCAL, addr, HALF_A_REQUEST).await);
    }
    for _ in 0..8 {
        held.push(connect_from(LOCAL, addr, None).await);
    }
    // 24 connections for 24 places: the cap is full, and another client is refused until
    // the server cuts the idle ones.
    let answer = healthz_until_ok(OTHER, addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for (i, stream) in held.iter_mut().enumerate() {
        let rest = read_until_closed(stream, TEST_TIMEOUT).await;
        // Cut without an answer: no request came whole.
        assert_eq!(rest, Some(Vec::new()), "held connection {i}");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn clients_that_stop_reading_are_cut_after_the_idle_timeout() {
    // 16 MB: far more than the socket buffers and hyper's write buffer hold.
    let filler = "x".repeat(4000);
    let records: Vec<Value> = (0..4000)
        .map(|i| json!({"time": i, "filler": filler}))
        .collect();
    let dir = data_dir(&[("big.json", &serde_json::to_string(&records).unwrap())]);
    let limits = Limits {
        max_connections: 4,
        max_connections_per_client: 1000,
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (addr, shutdown, _) = start_limited(dir.path(), Duration::ZERO, limits).await;
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(LOCAL, addr, Some(4096)).await;
        stream
            .write_all(b"GET /stream_data_big?delay=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        readers.push(stream);
    }
    // All 4 places hold a stream nobody reads: another client is refused until they are cut.
    let answer = healthz_until_ok(OTHER, addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for (i, stream) in readers.iter_mut().enumerate() {
        let got = read_until_closed(stream, TEST_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("stalled stream {i} was not closed"));
        assert!(got.starts_with(b"HTTP/1.1 200"), "stream {i}");
        // Cut mid-way: the chunked body never got its final empty chunk.
        assert!(got.len() < 16_000_000, "stream {i}: {} bytes", got.len());
        assert!(!got.ends_with(b"0\r\n\r\n"), "stream {i} looks complete");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn one_client_cannot_take_the_whole_connection_cap() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let limits = Limits {
        max_connections: 16,
        max_connections_per_client: 8,
        // Nothing is cut for idling during this test: only the per-client share frees places.
        header_timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let (addr, shutdown, _) = start_limited(dir.path(), Duration::ZERO, limits).await;
    let mut held = Vec::new();
    for i in 0..20 {
        if i < 8 {
            held.push(sent(LOCAL, addr, HALF_A_REQUEST).await);
            continue;
        }
        // Connections are accepted in order, so the first 8 are in; this one is over the
        // share. It sent nothing, so it gets the whole refusal and then the end.
        let mut over = connect_from(LOCAL, addr, None).await;
        let refusal = read_until_closed(&mut over, TEST_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("connection {i} from one client was not refused"));
        let refusal = String::from_utf8(refusal).unwrap();
        assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
        assert!(
            refusal.contains("too many connections from 127.0.0.1: at most 8 at once"),
            "{refusal}"
        );
    }
    // Another client gets in at once, while the first still holds its 8.
    let answer = healthz_from(OTHER, addr, TEST_TIMEOUT).await.expect(
        "/healthz from another client did not answer while one client held many connections",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The client closes what it holds: its share is released, and it is served again.
    drop(held);
    let answer = healthz_until_ok(LOCAL, addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    shutdown.cancel();
}

/// How long a test waits for an answer that must come at once (a refusal): far more than it
/// takes, far less than any timeout of the server, so waiting in the backlog shows as a failure.
const PROMPTLY: Duration = Duration::from_secs(10);

/// `count` connections holding the server's places with half a request head each, two per
/// client address (so no client is over a share of two).
async fn hold_places(addr: SocketAddr, count: u8) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for i in 0..count {
        held.push(sent(client(10 + i / 2), addr, HALF_A_REQUEST).await);
    }
    held
}

#[tokio::test]
async fn a_full_server_answers_a_new_client_503_at_once() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let limits = Limits {
        max_connections: 6,
        max_connections_per_client: 2,
        header_timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let (addr, shutdown, _) = start_limited(dir.path(), Duration::ZERO, limits).await;
    let mut held = hold_places(addr, 6).await;
    // Every place is taken and no client is over its share: the newcomer is told so, rather
    // than left waiting in the listen backlog with no answer.
    let mut newcomer = sent(
        OTHER,
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let refusal = read_until_closed(&mut newcomer, PROMPTLY)
        .await
        .expect("a client of a full server got no answer: it waits in the listen backlog");
    let refusal = String::from_utf8(refusal).unwrap();
    assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
    assert!(refusal.contains("retry-after: 1\r\n"), "{refusal}");
    assert!(
        refusal.contains("all 6 connections the server takes are in use"),
        "{refusal}"
    );
    // A place frees: the next client is served.
    drop(held.pop());
    let answer = healthz_until_ok(OTHER, addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    shutdown.cancel();
}

/// A request as a real client sends it: the head and a 16 KiB body, written at once.
fn eager_request() -> String {
    let body = "x".repeat(16 * 1024);
    format!(
        "GET /healthz HTTP/1.1\r\nHost: test\r\nUser-Agent: test\r\nAccept: */*\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Refusals (20 in a row) of the eager request from `from`, each read whole and ending in a
/// clean close; each must say `why`.
async fn expect_clean_refusals(from: std::net::Ipv4Addr, addr: SocketAddr, why: &str) {
    let request = eager_request();
    for round in 0..20 {
        let answer = exchange(from, addr, request.as_bytes(), PROMPTLY)
            .await
            .unwrap_or_else(|e| panic!("{from}, round {round}: no clean 503 but: {e}"));
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{from}: {answer}");
        assert!(answer.contains(why), "{from}: {answer}");
    }
}

#[tokio::test]
async fn a_refused_client_that_sent_its_whole_request_at_once_reads_the_503() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let limits = Limits {
        max_connections: 3,
        max_connections_per_client: 1,
        header_timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let (addr, shutdown, _) = start_limited(dir.path(), Duration::ZERO, limits).await;
    // LOCAL holds its share, with a place left on the server.
    let mut held = vec![
        sent(LOCAL, addr, HALF_A_REQUEST).await,
        sent(client(10), addr, HALF_A_REQUEST).await,
    ];
    expect_clean_refusals(LOCAL, addr, "too many connections from 127.0.0.1").await;
    // The server is full: any other client is refused the same way.
    held.push(sent(client(11), addr, HALF_A_REQUEST).await);
    expect_clean_refusals(OTHER, addr, "connections the server takes are in use").await;
    shutdown.cancel();
}

#[tokio::test]
async fn shutdown_closes_the_connections_left_after_the_grace_period() {
    // 16 MB: far more than the socket buffers and hyper's write buffer hold.
    let filler = "x".repeat(4000);
    let records: Vec<Value> = (0..4000)
        .map(|i| json!({"time": i, "filler": filler}))
        .collect();
    let dir = data_dir(&[("big.json", &serde_json::to_string(&records).unwrap())]);
    // Neither timeout would close anything during this test.
    let limits = Limits {
        header_timeout: Duration::from_secs(300),
        idle_timeout: Duration::from_secs(300),
        ..Limits::default()
    };
    let (addr, shutdown, task) = start_limited(dir.path(), Duration::ZERO, limits).await;
    let mut stalled = connect_from(LOCAL, addr, Some(4096)).await;
    stalled
        .write_all(b"GET /stream_data_big?delay=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut half = sent(LOCAL, addr, HALF_A_REQUEST).await;
    let mut silent = connect_from(LOCAL, addr, None).await;
    // Connections are accepted in order: once this is answered, the three above are served.
    let answer = healthz_from(OTHER, addr, TEST_TIMEOUT).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    shutdown.cancel();
    // The grace period is 5 s; the bound is far below both timeouts.
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
    // Returned, and nothing of it is left: the connections are closed already.
    for (name, stream) in [("half-sent", &mut half), ("silent", &mut silent)] {
        let rest = read_until_closed(stream, PROMPTLY).await;
        assert_eq!(rest, Some(Vec::new()), "{name} connection still open");
    }
    let got = read_until_closed(&mut stalled, PROMPTLY)
        .await
        .expect("the stalled connection is still open");
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "the cut stream looks complete"
    );
}

/// `api.bind` as `factorypal config show` prints it for `cmd`.
fn shown_bind(cmd: &mut std::process::Command) -> String {
    let out = run_with_timeout(cmd.args(["config", "show"]), Duration::from_secs(20));
    assert!(out.status.success(), "config show: {}", stderr(&out));
    let shown: toml::Table = common::stdout(&out).parse().unwrap();
    shown["api"]["bind"].as_str().unwrap().to_string()
}

#[test]
fn serve_api_listens_on_loopback_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    // No config file: the built-in default.
    assert_eq!(shown_bind(&mut factorypal(dir.path())), "127.0.0.1:5000");
    // The shipped config file does not widen it.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    assert_eq!(
        shown_bind(factorypal(dir.path()).arg("--config").arg(&shipped)),
        "127.0.0.1:5000"
    );
    // Every interface only when asked.
    assert_eq!(
        shown_bind(factorypal(dir.path()).env("FACTORYPAL__API__BIND", "0.0.0.0:5000")),
        "0.0.0.0:5000"
    );
}

#[test]
fn connection_limits_must_be_positive_and_not_absurd() {
    let dir = tempfile::tempdir().unwrap();
    for (variable, value, key) in [
        ("FACTORYPAL__API__HEADER_TIMEOUT", "0", "api.header_timeout"),
        ("FACTORYPAL__API__IDLE_TIMEOUT", "-1", "api.idle_timeout"),
        (
            "FACTORYPAL__API__MAX_CONNECTIONS",
            "0",
            "api.max_connections",
        ),
        // tokio's semaphore panics beyond usize::MAX >> 3: refused with the key, not a panic.
        (
            "FACTORYPAL__API__MAX_CONNECTIONS",
            "3000000000000000000",
            "api.max_connections",
        ),
        (
            "FACTORYPAL__API__MAX_CONNECTIONS_PER_CLIENT",
            "0",
            "api.max_connections_per_client",
        ),
    ] {
        let out = run_with_timeout(
            factorypal(dir.path())
                .env(variable, value)
                .args(["config", "show"]),
            Duration::from_secs(20),
        );
        assert_eq!(out.status.code(), Some(2), "{variable}={value}");
        assert!(stderr(&out).contains(key), "{key}: {}", stderr(&out));
    }
}

/// Runs the binary on `dir` expecting it to refuse to start with exit 2 and `needles` in stderr.
fn expect_refusal(dir: &Path, needles: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        factorypal(work.path())
            .args(["serve-api", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
}

#[test]
fn bad_data_refuses_to_start_naming_the_file_and_the_problem() {
    let invalid = data_dir(&[
        ("good.json", METRICS),
        ("metrics.json", "[\n  {\"time\": 1},\n  {\"time\": 2,\n]"),
    ]);
    expect_refusal(
        invalid.path(),
        &["metrics.json", "not valid JSON", "line 4", "column 1"],
    );

    let not_array = data_dir(&[("metrics.json", r#"{"time": 1}"#)]);
    expect_refusal(not_array.path(), &["metrics.json", "array", "an object"]);

    let not_object = data_dir(&[("metrics.json", r#"[{"time": 1}, 42]"#)]);
    expect_refusal(
        not_object.path(),
        &["metrics.json", "element 1", "not a JSON object"],
    );

    let missing_time = data_dir(&[("metrics.json", r#"[{"time": 1}, {"time": 2}, {"id": 3}]"#)]);
    expect_refusal(
        missing_time.path(),
        &["metrics.json", "element 2", "no `time`"],
    );

    let text_time = data_dir(&[("metrics.json", r#"[{"time": "yesterday"}]"#)]);
    expect_refusal(
        text_time.path(),
        &[
            "metrics.json",
            "element 0",
            "non-numeric `time`",
            "yesterday",
        ],
    );

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("notes.txt"), "not data").unwrap();
    expect_refusal(empty.path(), &["no *.json files", "gen-data"]);

    expect_refusal(
        &empty.path().join("missing"),
        &["does not exist", "--data-dir"],
    );
}

/// A data dir with `metrics.json`, `alias.json` (a relative link to it) and `leak.json` (a link
/// to `secret.json` in a sibling dir, outside). Returns (parent, data dir).
fn data_dir_with_links() -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::symlink;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let outside = root.path().join("outside");
    std::fs::create_dir(&data).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(data.join("metrics.json"), METRICS).unwrap();
    std::fs::write(
        outside.join("secret.json"),
        r#"[{"time": 1, "secret": "not for the network"}]"#,
    )
    .unwrap();
    symlink("metrics.json", data.join("alias.json")).unwrap();
    symlink(outside.join("secret.json"), data.join("leak.json")).unwrap();
    (root, data)
}

#[test]
fn a_symlink_leaving_the_data_dir_refuses_the_start_naming_it() {
    let (_root, data) = data_dir_with_links();
    expect_refusal(
        &data,
        &[
            "leak.json",
            "is a symlink to",
            "secret.json",
            "outside the data dir",
            "api.follow_symlinks = true",
        ],
    );
    // A link that leads nowhere is named too, not silently left out.
    let (_root, dangling) = data_dir_with_links();
    std::fs::remove_file(dangling.join("leak.json")).unwrap();
    std::os::unix::fs::symlink("gone.json", dangling.join("dangling.json")).unwrap();
    expect_refusal(&dangling, &["dangling.json", "cannot read"]);
}

/// Starts serve-api in-process from `settings` (bound to 127.0.0.1:0), as the binary does.
async fn start_from_settings(
    settings: ApiSettings,
) -> Result<(SocketAddr, CancellationToken), String> {
    let settings = ApiSettings {
        bind: "127.0.0.1:0".parse().unwrap(),
        delay: factorypal::settings::Seconds::from_secs(0.0),
        ..settings
    };
    let (listener, catalog) = factorypal::api::bind(&settings)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, catalog, shutdown.clone()));
    Ok((addr, shutdown))
}

#[tokio::test]
async fn links_inside_the_data_dir_are_served_and_follow_symlinks_serves_the_rest() {
    // Reached through a link itself: inside is judged against where the dir really is.
    let (root, data) = data_dir_with_links();
    let linked_dir = root.path().join("data-link");
    std::os::unix::fs::symlink(&data, &linked_dir).unwrap();

    let default = ApiSettings {
        data_dir: linked_dir.clone(),
        ..ApiSettings::default()
    };
    let refused = start_from_settings(default.clone()).await.unwrap_err();
    assert!(refused.contains("leak.json"), "{refused}");

    std::fs::remove_file(data.join("leak.json")).unwrap();
    let (addr, shutdown) = start_from_settings(default).await.unwrap();
    let alias = ndjson(&http_get_body(addr, "/stream_data_alias").await.2);
    assert_eq!(ids(&alias), [2, 4, 3, 1, 5]);
    shutdown.cancel();

    std::os::unix::fs::symlink(
        root.path().join("outside/secret.json"),
        data.join("leak.json"),
    )
    .unwrap();
    let following = ApiSettings {
        data_dir: linked_dir,
        follow_symlinks: true,
        ..ApiSettings::default()
    };
    let (addr, shutdown) = start_from_settings(following).await.unwrap();
    let leak = ndjson(&http_get_body(addr, "/stream_data_leak").await.2);
    assert_eq!(leak, [json!({"time": 1, "secret": "not for the network"})]);
    shutdown.cancel();
}

#[test]
fn sigterm_stops_the_binary_with_exit_0() {
    let dir = data_dir(&[("metrics.json", METRICS)]);
    let mut child = factorypal(dir.path())
        .args(["serve-api", "--bind", "127.0.0.1:0", "--data-dir", "."])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for "serving" in the log: the data is loaded and the port bound.
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = lines
            .next()
            .expect("serve-api exited before serving")
            .unwrap();
        if line.contains("serving") {
            break;
        }
        assert!(Instant::now() < deadline, "serve-api did not start");
    }
    send_signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve-api ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

/// The loader reads files in 1 MiB chunks (src/api/scan.rs). A file of ~2.5 MiB whose records
/// have escapes, multi-byte UTF-8, odd whitespace and many equal times, out of order, with one
/// record starting exactly at 1 MiB and a 4-byte character straddling 2 MiB, is served exactly
/// as Python's json reads it: stably sorted by `time`, each record compact.
#[tokio::test]
async fn a_file_bigger_than_the_read_chunk_is_served_as_python_reads_it() {
    const MIB: usize = 1 << 20;
    let mut text = String::from("[\n");
    let mut i = 0u64;
    while text.len() < 5 * MIB / 2 {
        if i > 0 {
            text.push_str(if i.is_multiple_of(3) { ",\n  " } else { " , " });
        }
        let pad_to = |text: &mut String, target: usize| {
            while text.len() < target {
                text.push(' ');
            }
        };
        // The record after this padding starts exactly at 1 MiB.
        if text.len() > MIB - 200 && text.len() < MIB {
            pad_to(&mut text, MIB);
        }
        let prefix = format!("{{\"id\": {i}, \"s\": \"");
        // `😀` (4 bytes) starts 2 bytes before 2 MiB.
        if text.len() > 2 * MIB - 200 && text.len() < 2 * MIB {
            pad_to(&mut text, 2 * MIB - 2 - prefix.len());
        }
        let time = [7, 3, 5, 3, 1][(i % 5) as usize] * 1000 + (i % 11) as i64 - 5;
        text.push_str(&format!(
            "{prefix}😀 é \\\" q \\\" \\\\ \\n{}\",\t\"time\" :{time},\"v\": {}, \"n\": [1, {{\"k\": null}}, true]}}",
            "x".repeat((i % 13) as usize),
            i as f64 / 4.0
        ));
        i += 1;
    }
    text.push_str("\n]\n");
    let start_at_1mib = &text.as_bytes()[MIB..MIB + 7];
    assert_eq!(start_at_1mib, b"{\"id\": ", "a record starts at 1 MiB");
    assert_eq!(&text.as_bytes()[2 * MIB - 2..2 * MIB + 2], "😀".as_bytes());

    let dir = data_dir(&[("metrics.json", &text)]);
    let (addr, shutdown, _) = start(dir.path(), Duration::ZERO).await;
    let (status, _, body) = http_get_body(addr, "/stream_data_metrics").await;
    assert_eq!(status, 200);
    let served = dir.path().join("served.ndjson");
    std::fs::write(&served, &body).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api_stream_check.py");
    let out = run_with_timeout(
        std::process::Command::new(common::python())
            .arg(script)
            .arg(dir.path().join("metrics.json"))
            .arg(&served),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        stderr(&out)
    );
    shutdown.cancel();
}
