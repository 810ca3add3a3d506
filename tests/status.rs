//! The live status server (`--status-bind`) of `run`, `consume` and `produce`, against the
//! real broker: `/status` JSON checked against what the broker holds, `/metrics` read by the
//! official Prometheus client's parser, and `/` rendered by a real headless Chromium.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TEST_TIMEOUT;
use common::raw_http::{
    HALF_A_REQUEST, LOCAL, OTHER, connect_from, healthz_from, read_until_closed, sent,
};
use common::{
    Spawned, chromium, configured, free_port, http_get_body, python, raw_topic, run_with_timeout,
    sample_data, send_signal, start_api, stderr, unique_topic, write_run_config,
};
use factorypal::Limits;
use factorypal::status::Status;
use factorypal::status::server::StatusServer;
use serde_json::Value;

const METRICS: u64 = 3000;
const WORKORDERS: u64 = 300;

/// The page at `url` as a real browser renders it: the DOM after its script ran and fetched
/// `/status`.
fn rendered_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "chromium: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the cell `data-field="{field}"` in the row that starts with `row_start`.
fn cell_text<'a>(html: &'a str, row_start: &str, field: &str) -> &'a str {
    let start = html
        .find(row_start)
        .unwrap_or_else(|| panic!("no {row_start} in the rendered page:\n{html}"));
    let row = &html[start..];
    let row = &row[..row.find("</tr>").unwrap_or(row.len())];
    let cell = row
        .find(&format!("data-field=\"{field}\""))
        .unwrap_or_else(|| panic!("no {field} cell in {row}"));
    let text = &row[cell..];
    let text = &text[text.find('>').unwrap() + 1..];
    &text[..text.find('<').unwrap()]
}

/// A number as the page shows it (`1,234`) read back.
fn shown_number(text: &str) -> i64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a number"))
}

/// The rendered page shows each partition's committed offset, latest offset and lag as
/// `topic` (one entry of `/status`'s `topics`) has them.
fn assert_page_shows_partitions(dom: &str, topic: &Value) {
    let name = topic["topic"].as_str().unwrap();
    for p in topic["partitions"].as_array().unwrap() {
        let row = format!(
            "<tr data-topic=\"{name}\" data-partition=\"{}\">",
            p["partition"]
        );
        for field in ["committed", "latest", "lag"] {
            assert_eq!(
                shown_number(cell_text(dom, &row, field)),
                p[field].as_i64().unwrap(),
                "{field} of {name}/{}",
                p["partition"]
            );
        }
    }
}

fn status_json(addr: SocketAddr) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, content_type, body) = rt.block_on(http_get_body(addr, "/status"));
    assert_eq!(code, 200);
    assert_eq!(content_type, "application/json");
    serde_json::from_slice(&body).unwrap()
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, content_type, body) = rt.block_on(http_get_body(addr, path));
    (
        code,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// Polls `/status` until `done` holds for it (the process must stay up meanwhile).
fn wait_for_status(
    process: &mut Spawned,
    addr: SocketAddr,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        assert!(
            process.is_running(),
            "the process ended early: {}",
            process.log("err")
        );
        // Until the server is up, connecting fails; that is part of waiting.
        if std::net::TcpStream::connect(addr).is_ok() {
            let status = status_json(addr);
            if done(&status) {
                return status;
            }
            if Instant::now() > deadline {
                panic!("status never got there within {limit:?}: {status:#}");
            }
        } else if Instant::now() > deadline {
            panic!(
                "no status server at {addr} within {limit:?}: {}",
                process.log("err")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn topic<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == name)
        .unwrap_or_else(|| panic!("no topic {name} in {status:#}"))
}

fn sum(topic: &Value, field: &str) -> i64 {
    topic["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[field].as_i64().unwrap_or(-1_000_000))
        .sum()
}

/// `/metrics` through the official Prometheus client's parser: (family types, samples by
/// name and labels).
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

fn parsed_metrics(addr: SocketAddr) -> (HashMap<String, String>, Samples) {
    let (code, content_type, text) = get(addr, "/metrics");
    assert_eq!(code, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parse_metrics.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics: {}\n{text}",
        stderr(&out)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let families = parsed["families"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let samples = parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut labels: Vec<(String, String)> = s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            labels.sort();
            (
                (s[0].as_str().unwrap().to_string(), labels),
                s[2].as_f64().unwrap(),
            )
        })
        .collect();
    (families, samples)
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut key: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    key.sort();
    *samples
        .get(&(name.to_string(), key.clone()))
        .unwrap_or_else(|| panic!("no sample {name}{key:?}"))
}

#[test]
fn run_status_page_renders_topics_and_offsets_in_a_real_browser() {
    let data = sample_data(METRICS, WORKORDERS);
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("st-metrics");
    let workorder = unique_topic("st-workorder");
    write_run_config(
        dir.path(),
        data.path(),
        &metrics,
        &workorder,
        "trigger = \"300ms\"",
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut run = Spawned::start(&mut configured(
        dir.path(),
        "run",
        &["--delay", "0", "--status-bind", &addr.to_string()],
    ));

    // The daemon keeps running (and serving) once everything is consumed.
    let status = wait_for_status(&mut run, addr, Duration::from_secs(120), |s| {
        s["sources"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["state"] == "finished"))
            && s["topics"].as_array().is_some_and(|t| {
                t.len() == 2
                    && t.iter()
                        .all(|t| t["lag"] == 0 && t["batches"].as_u64() > Some(0))
            })
    });
    assert_eq!(status["command"], "run");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    for (source, expected) in [("metrics", METRICS), ("workorder", WORKORDERS)] {
        let s = status["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == source)
            .unwrap();
        assert_eq!(s["records"], expected, "{s:#}");
        assert_eq!(s["bad_records"], 0);
    }
    for (name, expected) in [(&metrics, METRICS), (&workorder, WORKORDERS)] {
        let t = topic(&status, name);
        assert_eq!(t["consumer"], "running");
        assert_eq!(t["rows"], expected, "{t:#}");
        assert_eq!(t["partitions"].as_array().unwrap().len(), 3);
        assert_eq!(sum(t, "committed"), expected as i64);
        assert_eq!(sum(t, "latest"), expected as i64);
        assert_eq!(sum(t, "consumed"), expected as i64);
        assert!(t["files"].as_u64().unwrap() >= 1);
        assert!(t["last_batch"]["duration_seconds"].as_f64().unwrap() > 0.0);
    }

    // /metrics says the same, as Prometheus' own parser reads it.
    let (families, samples) = parsed_metrics(addr);
    assert_eq!(families["factorypal_partition_lag"], "gauge");
    assert_eq!(families["factorypal_consumer_rows"], "counter");
    for (name, _) in [(&metrics, METRICS), (&workorder, WORKORDERS)] {
        for p in topic(&status, name)["partitions"].as_array().unwrap() {
            let partition = p["partition"].to_string();
            let labels = [("topic", name.as_str()), ("partition", partition.as_str())];
            assert_eq!(
                sample(&samples, "factorypal_partition_committed_offset", &labels),
                p["committed"].as_f64().unwrap()
            );
            assert_eq!(sample(&samples, "factorypal_partition_lag", &labels), 0.0);
        }
    }
    assert_eq!(
        sample(
            &samples,
            "factorypal_source_records_total",
            &[("source", "metrics"), ("topic", &metrics)]
        ),
        METRICS as f64
    );

    // The page, as a real browser renders it.
    let dom = rendered_dom(&format!("http://{addr}/"));
    assert!(dom.contains("<span id=\"command\">run</span>"), "{dom}");
    for name in [&metrics, &workorder] {
        assert!(
            dom.contains(&format!("<span class=\"topic-name\">{name}</span>")),
            "{dom}"
        );
        assert_page_shows_partitions(&dom, topic(&status, name));
    }
    let metrics_row = "<tr data-source=\"metrics\">";
    assert_eq!(
        shown_number(cell_text(&dom, metrics_row, "records")),
        METRICS as i64
    );

    send_signal(run.child.id(), "TERM");
    let (exit, _, err) = run.finish(Duration::from_secs(60));
    assert!(exit.success(), "{err}");
}

#[test]
fn consume_status_shows_the_lag_of_what_waits() {
    // 2000 records wait; one batch of 500 runs, the next trigger is an hour away.
    let data = sample_data(2000, 10);
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("st-lag");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (api, stop_api, _) = rt.block_on(start_api(data.path(), Duration::ZERO));
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[producer]\napi_url = \"http://{api}\"\n\
             [[producer.sources]]\nname = \"metrics\"\npath = \"/stream_data_metrics\"\ntopic = \"{metrics}\"\nkey = \"id\"\n\
             [consumer]\noutput = \"out\"\n\
             [consumer.topics.{metrics}.schema]\nid = \"int32\"\nval = \"float64\"\ntime = \"timestamp\"\n"
        ),
    )
    .unwrap();
    let out = run_with_timeout(
        &mut configured(dir.path(), "produce", &["metrics", "--create-topics"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stop_api.cancel();

    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut consume = Spawned::start(&mut configured(
        dir.path(),
        "consume",
        &[
            "--trigger",
            "1h",
            "--max-offsets-per-trigger",
            "500",
            "--status-bind",
            &addr.to_string(),
        ],
    ));
    let status = wait_for_status(&mut consume, addr, Duration::from_secs(60), |s| {
        s["topics"]
            .as_array()
            .is_some_and(|t| t.len() == 1 && t[0]["batches"] == 1 && t[0]["lag"].as_i64().is_some())
    });
    let t = topic(&status, &metrics);
    assert_eq!(status["command"], "consume");
    assert_eq!(status["sources"], serde_json::json!([]));
    assert_eq!(sum(t, "committed"), 500, "{t:#}");
    assert_eq!(sum(t, "latest"), 2000, "{t:#}");
    assert_eq!(t["lag"], 1500);
    assert_eq!(t["last_batch"]["records"], 500);
    for p in t["partitions"].as_array().unwrap() {
        assert_eq!(
            p["lag"].as_i64().unwrap(),
            p["latest"].as_i64().unwrap() - p["committed"].as_i64().unwrap()
        );
    }

    // The browser shows the numbers apart: committed, latest and lag all differ here.
    let dom = rendered_dom(&format!("http://{addr}/"));
    assert!(dom.contains("<span id=\"command\">consume</span>"), "{dom}");
    assert_page_shows_partitions(&dom, t);
    assert!(dom.contains("This process produces no source."), "{dom}");

    // The other endpoints of the server.
    assert_eq!(get(addr, "/healthz").0, 200);
    let (code, content_type, page) = get(addr, "/");
    assert_eq!(
        (code, content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page must not load anything from elsewhere"
    );
    let (code, _, body) = get(addr, "/nope");
    assert_eq!(code, 404);
    assert!(body.contains("/metrics"), "{body}");

    send_signal(consume.child.id(), "TERM");
    let (exit, _, err) = consume.finish(Duration::from_secs(60));
    assert!(exit.success(), "{err}");
}

/// `produce metrics --create-topics` from the API at `api` into `topic`, with a status server:
/// the process and the status server's address.
fn watched_producer(dir: &Path, api: SocketAddr, topic: &str) -> (Spawned, SocketAddr) {
    std::fs::write(
        dir.join("c.toml"),
        format!(
            "[producer]\napi_url = \"http://{api}\"\n\
             [[producer.sources]]\nname = \"metrics\"\npath = \"/stream_data_metrics\"\ntopic = \"{topic}\"\nkey = \"id\"\n"
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let status_bind = addr.to_string();
    let args = ["metrics", "--create-topics", "--status-bind", &status_bind];
    (Spawned::start(&mut configured(dir, "produce", &args)), addr)
}

#[test]
fn produce_status_shows_each_source_while_it_runs() {
    let data = sample_data(400, 10);
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("st-produce");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 400 records 10 ms apart: about four seconds to watch.
    let (api, stop_api, _) = rt.block_on(start_api(data.path(), Duration::from_millis(10)));
    let (mut produce, addr) = watched_producer(dir.path(), api, &metrics);
    let status = wait_for_status(&mut produce, addr, Duration::from_secs(60), |s| {
        s["sources"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["records"].as_u64() > Some(0))
    });
    let source = &status["sources"][0];
    assert_eq!(source["name"], "metrics");
    assert_eq!(source["topic"], metrics.as_str());
    assert_eq!(source["state"], "running", "{status:#}");
    // Only produced here: the end offsets are known, nothing is committed by a consumer.
    let t = topic(&status, &metrics);
    assert_eq!(t["consumer"], Value::Null);
    assert_eq!(t["lag"], Value::Null);
    assert!(sum(t, "latest") > 0);

    let (exit, out, err) = produce.finish(Duration::from_secs(60));
    assert!(exit.success(), "{err}");
    assert!(out.contains("metrics: 400 records"), "{out}");
    stop_api.cancel();
}

#[test]
fn a_status_address_in_use_is_reported_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_with_timeout(
        &mut configured(dir.path(), "consume", &["--status-bind", &addr]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&addr) && err.contains("--status-bind"),
        "{err}"
    );
}

#[test]
fn a_failing_write_is_retried_shown_on_the_status_page_and_committed_once() {
    // 200 records, one of them bad. The bad-records file cannot be written while a plain file
    // sits where its directory belongs: the batch fails whole, uncommitted, and is retried.
    let mut payloads: Vec<String> = (0..200)
        .map(|i| {
            format!(
                r#"{{"id": {}, "val": {i}.5, "time": {}}}"#,
                i % 20,
                1_767_225_600 + i
            )
        })
        .collect();
    payloads[50] = "not json".into();
    let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let name = raw_topic(&payloads);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[consumer]\noutput = \"out\"\ntrigger = \"500ms\"\nmax_offsets_per_trigger = 0\n\
             [consumer.topics.{name}.schema]\nid = \"int32\"\nval = \"float64\"\ntime = \"timestamp\"\n"
        ),
    )
    .unwrap();
    let topic_dir = dir.path().join("out").join(&name);
    std::fs::create_dir_all(&topic_dir).unwrap();
    let blocker = topic_dir.join("_bad_records");
    std::fs::write(&blocker, "in the way").unwrap();

    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut consume = Spawned::start(&mut configured(
        dir.path(),
        "consume",
        &["--status-bind", &addr.to_string()],
    ));
    let status = wait_for_status(&mut consume, addr, Duration::from_secs(60), |s| {
        s["topics"]
            .as_array()
            .is_some_and(|t| t.len() == 1 && t[0]["retries"].as_u64() >= Some(2))
    });
    let t = topic(&status, &name);
    assert_eq!(
        t["batches"], 0,
        "nothing is committed while the batch fails"
    );
    assert_eq!(t["lag"], 200);
    let problem = t["problem"]["message"].as_str().unwrap();
    assert!(
        problem.contains("batch 0") && problem.contains("_bad_records"),
        "{problem}"
    );
    let (_, samples) = parsed_metrics(addr);
    assert_eq!(
        sample(
            &samples,
            "factorypal_consumer_retrying",
            &[("topic", &name)]
        ),
        1.0
    );
    let dom = rendered_dom(&format!("http://{addr}/"));
    assert!(dom.contains("class=\"problem\">retrying"), "{dom}");

    // The disk is usable again: the same batch goes through, once.
    std::fs::remove_file(&blocker).unwrap();
    let status = wait_for_status(&mut consume, addr, Duration::from_secs(60), |s| {
        s["topics"][0]["lag"] == 0
    });
    let t = topic(&status, &name);
    assert_eq!(t["problem"], Value::Null);
    assert_eq!(
        (t["rows"].as_u64(), t["bad_records"].as_u64()),
        (Some(199), Some(1))
    );
    send_signal(consume.child.id(), "TERM");
    let (exit, _, err) = consume.finish(Duration::from_secs(60));
    assert!(exit.success(), "{err}");
    assert!(
        err.contains("batch 0 (not committed) failed; retrying"),
        "{err}"
    );

    let count = Command::new(python())
        .args([
            "-c",
            "import sys, pyarrow.dataset as ds; print(ds.dataset(sys.argv[1], format='parquet').count_rows())",
        ])
        .arg(&topic_dir)
        .output()
        .unwrap();
    assert!(count.status.success(), "{}", stderr(&count));
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "199");
    let bad = std::fs::read_to_string(blocker.join("batch-00000000.jsonl")).unwrap();
    assert_eq!(bad.lines().count(), 1);
    assert!(bad.contains("\"offset\":50"), "{bad}");
}

#[test]
fn a_producer_waiting_for_its_api_shows_why_on_the_status_page() {
    let data = sample_data(100, 10);
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("st-wait");
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (mut produce, addr) = watched_producer(dir.path(), api, &metrics);
    // Nothing listens at the API's address yet.
    let status = wait_for_status(&mut produce, addr, Duration::from_secs(60), |s| {
        s["sources"][0]["retries"].as_u64() >= Some(1)
    });
    let source = &status["sources"][0];
    assert_eq!(source["state"], "running");
    let problem = source["problem"]["message"].as_str().unwrap();
    assert!(problem.contains(&api.to_string()), "{problem}");
    let (_, samples) = parsed_metrics(addr);
    let labels = [("source", "metrics"), ("topic", metrics.as_str())];
    assert_eq!(sample(&samples, "factorypal_source_retrying", &labels), 1.0);

    // The API comes up: the producer connects and every record goes through.
    let mut server = Spawned::start(common::factorypal(dir.path()).args([
        "serve-api",
        "--bind",
        &api.to_string(),
        "--data-dir",
        &data.path().display().to_string(),
        "--delay",
        "0",
    ]));
    let (exit, out, err) = produce.finish(Duration::from_secs(60));
    assert!(exit.success(), "{err}");
    assert!(out.contains("metrics: 100 records"), "{out}");
    server.kill();
}

/// The status server has limits like serve-api's (built in: it has no settings for them): a
/// client's share of connections, and a deadline for the request head. Checked with small
/// ones, so the test holds a few descriptors rather than the 2 × 256 of the built-in share.
#[tokio::test]
async fn the_status_server_refuses_a_clients_excess_and_cuts_half_sent_requests() {
    let status = Status::new("test");
    let limits = Limits {
        max_connections_per_client: 8,
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = StatusServer::start_with_limits("127.0.0.1:0".parse().unwrap(), &status, limits)
        .await
        .unwrap();
    let addr = server.addr();
    let mut held = Vec::new();
    for _ in 0..limits.max_connections_per_client {
        held.push(sent(LOCAL, addr, HALF_A_REQUEST).await);
    }
    let mut over = connect_from(LOCAL, addr, None).await;
    let refusal = read_until_closed(&mut over, TEST_TIMEOUT)
        .await
        .expect("a connection over one client's share was not refused");
    let refusal = String::from_utf8(refusal).unwrap();
    assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
    assert!(
        refusal.contains("too many connections from 127.0.0.1: at most 8 at once"),
        "{refusal}"
    );

    let answer = healthz_from(OTHER, addr, TEST_TIMEOUT)
        .await
        .expect("/healthz from another client did not answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The half-sent requests are cut once the header timeout passes.
    for (i, stream) in held.iter_mut().enumerate() {
        let rest = read_until_closed(stream, TEST_TIMEOUT).await;
        assert_eq!(rest, Some(Vec::new()), "held connection {i}");
    }
    server.stop().await;
}
