//! `produce` end to end: the real binary reads real HTTP streams and writes to the real broker;
//! kcat (librdkafka, an independent client) reads the topics back.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    KcatRecord, SpareBroker, Spawned, bootstrap, configured, factorypal, free_port, http_get_body,
    kcat_read, run_with_timeout, sample_data, send_signal, start_api, stderr, stdout,
    survive_broker_restart, unique_topic,
};
use factorypal::kafka::partitioner::partition_for_key;

/// A source line for the config: (name, path, topic, key).
type Source<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// Writes a config with these sources and extra `[producer]` lines into `dir/c.toml`.
fn write_config(dir: &Path, api: SocketAddr, sources: &[Source<'_>], producer_extra: &str) {
    let mut text = format!("[producer]\napi_url = \"http://{api}\"\n{producer_extra}\n");
    for (name, path, topic, key) in sources {
        text += &format!(
            "\n[[producer.sources]]\nname = \"{name}\"\npath = \"{path}\"\ntopic = \"{topic}\"\n"
        );
        if let Some(key) = key {
            text += &format!("key = \"{key}\"\n");
        }
    }
    std::fs::write(dir.join("c.toml"), text).unwrap();
}

fn produce_cmd(dir: &Path, args: &[&str]) -> std::process::Command {
    configured(dir, "produce", args)
}

fn produce(dir: &Path, args: &[&str]) -> Output {
    run_with_timeout(&mut produce_cmd(dir, args), Duration::from_secs(120))
}

fn admin(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        factorypal(dir.path())
            .args(["--bootstrap", &bootstrap(), "admin"])
            .args(args),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "admin {args:?}: {}", stderr(&out));
}

/// The served lines of one endpoint, in stream order.
async fn served_lines(api: SocketAddr, path: &str) -> Vec<String> {
    let (status, _, body) = http_get_body(api, &format!("{path}?delay=0")).await;
    assert_eq!(status, 200);
    String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Checks that `records` hold every served line exactly once, byte for byte, on the partition
/// its key dictates, in stream order within each partition.
fn assert_exactly_once(
    records: &[KcatRecord],
    served: &[String],
    source: &str,
    key: Option<&str>,
    partitions: i32,
) {
    let mut by_offset: BTreeMap<u64, &KcatRecord> = BTreeMap::new();
    for r in records {
        assert_eq!(r.header("source"), Some(source));
        let previous = by_offset.insert(r.source_offset(), r);
        assert!(
            previous.is_none(),
            "source-offset {} written twice",
            r.source_offset()
        );
    }
    assert_eq!(by_offset.len(), served.len(), "records missing");
    for (offset, record) in &by_offset {
        let line = &served[*offset as usize];
        assert_eq!(
            &record.payload, line,
            "value differs at source-offset {offset}"
        );
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        match key {
            Some(field) => {
                let key = value[field].to_string();
                assert_eq!(record.key.as_deref(), Some(key.as_str()));
                assert_eq!(
                    record.partition,
                    partition_for_key(key.as_bytes(), partitions)
                );
            }
            None => {
                assert_eq!(record.key, None);
                assert_eq!(record.partition as u64, offset % partitions as u64);
            }
        }
    }
    // Per partition, and so per key: stream order.
    let mut last: HashMap<i32, (i64, u64)> = HashMap::new();
    let mut sorted: Vec<&KcatRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in sorted {
        if let Some((_, prev)) = last.insert(r.partition, (r.offset, r.source_offset())) {
            assert!(
                r.source_offset() > prev,
                "partition {} out of stream order",
                r.partition
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sample_data_lands_exactly_once_keyed_like_the_java_client() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (api, stop_api, _) = start_api(&repo.join("data_source"), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("p-metrics");
    let workorder = unique_topic("p-workorder");
    write_config(
        dir.path(),
        api,
        &[
            ("metrics", "/stream_data_metrics", &metrics, Some("id")),
            (
                "workorder",
                "/stream_data_workorder",
                &workorder,
                Some("product"),
            ),
        ],
        "",
    );
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || produce(&dir, &["--all", "--create-topics"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("metrics: 7000 records"), "{summary}");
    assert!(summary.contains("workorder: 576 records"), "{summary}");
    assert!(summary.contains("records/s"), "{summary}");

    let b = bootstrap();
    let served = served_lines(api, "/stream_data_metrics").await;
    assert_exactly_once(&kcat_read(&b, &metrics), &served, "metrics", Some("id"), 3);
    let served = served_lines(api, "/stream_data_workorder").await;
    assert_exactly_once(
        &kcat_read(&b, &workorder),
        &served,
        "workorder",
        Some("product"),
        3,
    );
    stop_api.cancel();
}

#[test]
fn key_placement_matches_librdkafkas_murmur2_partitioner() {
    // kcat produces keys with the Java client's partitioner; each must land where ours puts it.
    let topic = unique_topic("p-placement");
    admin(&["create-topic", &topic, "--partitions", "3"]);
    let keys: Vec<String> = (0..20)
        .map(|k| k.to_string())
        .chain(["product-a".into(), "ü".into()])
        .collect();
    let input: String = keys
        .iter()
        .map(|k| format!("{k}\t{{\"k\":\"{k}\"}}\n"))
        .collect();
    let mut kcat = std::process::Command::new("kcat")
        .args([
            "-b",
            &bootstrap(),
            "-P",
            "-t",
            &topic,
            "-K",
            "\t",
            "-X",
            "topic.partitioner=murmur2_random",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    kcat.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(kcat.wait().unwrap().success());
    let records = kcat_read(&bootstrap(), &topic);
    assert_eq!(records.len(), keys.len());
    for r in records {
        let key = r.key.unwrap();
        assert_eq!(
            r.partition,
            partition_for_key(key.as_bytes(), 3),
            "key {key}"
        );
    }
}

#[test]
fn a_missing_topic_stops_before_reading_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("p-missing");
    // Nothing listens at this API address: an attempt to read it would retry, not fail fast.
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    write_config(
        dir.path(),
        api,
        &[("metrics", "/stream_data_metrics", &topic, Some("id"))],
        "",
    );
    let started = Instant::now();
    let out = produce(dir.path(), &["metrics"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("factorypal admin create-topic {topic}")),
        "{err}"
    );
    assert!(err.contains("--create-topics"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // An unknown source name lists the configured ones (usage error).
    let out = produce(dir.path(), &["nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("configured sources: metrics"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_topics_uses_the_admin_defaults() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("w.json"),
        r#"[{"time":2,"product":1},{"time":1,"product":0}]"#,
    )
    .unwrap();
    let (api, stop_api, _) = start_api(data.path(), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("p-create");
    write_config(
        dir.path(),
        api,
        &[("w", "/stream_data_w", &topic, Some("product"))],
        "",
    );
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            run_with_timeout(
                produce_cmd(&dir, &["w", "--create-topics"])
                    .env("FACTORYPAL__ADMIN__PARTITIONS", "2"),
                Duration::from_secs(60),
            )
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let records = kcat_read(&bootstrap(), &topic);
    assert_eq!(records.len(), 2);
    for r in &records {
        assert!(r.partition < 2);
        assert_eq!(
            r.partition,
            partition_for_key(r.key.as_ref().unwrap().as_bytes(), 2)
        );
    }
    stop_api.cancel();
}

/// Produces the one source `plant` (`/x` of `api`, keyed by `id`) into `topic`, with
/// `producer_extra` lines in `[producer]`, and returns the finished process.
async fn produce_plant(api: SocketAddr, topic: &str, producer_extra: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let sources = [("plant", "/x", topic, Some("id"))];
    write_config(dir.path(), api, &sources, producer_extra);
    tokio::task::spawn_blocking(move || produce(dir.path(), &["plant"]))
        .await
        .unwrap()
}

/// Every record of `topic`, as kcat reads it.
async fn read_back(topic: &str) -> Vec<KcatRecord> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || kcat_read(&bootstrap(), &topic))
        .await
        .unwrap()
}

/// A real HTTP server that serves fixed NDJSON lines at any path, honouring `?offset=N`:
/// bad lines cannot come from serve-api, which refuses bad data at start.
async fn line_server<L: Into<String>>(lines: impl IntoIterator<Item = L>) -> SocketAddr {
    paced_line_server(lines, usize::MAX, Duration::ZERO).await
}

/// [`line_server`] sending `per_tick` lines every `tick` (chunked), so a test can tell how far
/// the stream got in a given time on any machine.
async fn paced_line_server<L: Into<String>>(
    lines: impl IntoIterator<Item = L>,
    per_tick: usize,
    tick: Duration,
) -> SocketAddr {
    use http_body_util::StreamBody;
    use hyper::body::{Bytes, Frame};
    let lines: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(lines.into_iter().map(Into::into).collect());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let lines = std::sync::Arc::clone(&lines);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let offset: usize = req
                            .uri()
                            .query()
                            .and_then(|q| q.strip_prefix("offset="))
                            .map_or(0, |n| n.parse().unwrap());
                        let lines = std::sync::Arc::clone(&lines);
                        let chunks =
                            futures::stream::unfold(offset.min(lines.len()), move |from| {
                                let lines = std::sync::Arc::clone(&lines);
                                async move {
                                    if from >= lines.len() {
                                        return None;
                                    }
                                    if from > offset {
                                        tokio::time::sleep(tick).await;
                                    }
                                    let to = from.saturating_add(per_tick).min(lines.len());
                                    let chunk: String =
                                        lines[from..to].iter().map(|l| format!("{l}\n")).collect();
                                    let frame = Frame::data(Bytes::from(chunk));
                                    Some((Ok::<_, std::convert::Infallible>(frame), to))
                                }
                            });
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                StreamBody::new(chunks),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_are_counted_and_skipped_or_stop_the_producer() {
    let api = line_server(vec![
        r#"{"id": 1, "val": 1.0, "time": 1}"#,
        r#"not json"#,
        r#"[1, 2]"#,
        r#"{"val": 2.0, "time": 2}"#,
        r#"{"id": {"nested": 1}, "time": 3}"#,
        r#"{"id": "two", "val": 2.5, "time": 4}"#,
    ])
    .await;
    let topic = unique_topic("p-bad");
    admin(&["create-topic", &topic]);
    let out = produce_plant(api, &topic, "").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("plant: 2 records"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("(4 bad"), "{}", stdout(&out));
    let err = stderr(&out);
    for (offset, why) in [
        (1, "not valid JSON"),
        (2, "not a JSON object"),
        (3, "no key field `id`"),
        (4, "an object"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("source_offset={offset}")) && l.contains(why)),
            "no log of bad record {offset} ({why}): {err}"
        );
    }
    let records = kcat_read(&bootstrap(), &topic);
    let mut offsets: Vec<u64> = records.iter().map(KcatRecord::source_offset).collect();
    offsets.sort();
    assert_eq!(offsets, [0, 5]);
    assert_eq!(
        records
            .iter()
            .find(|r| r.source_offset() == 5)
            .unwrap()
            .key
            .as_deref(),
        Some("two")
    );

    // fail mode: stops at the first bad record, naming it.
    let topic = unique_topic("p-bad-fail");
    admin(&["create-topic", &topic]);
    let out = produce_plant(api, &topic, "on_bad_record = \"fail\"").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("source-offset 1"), "{}", stderr(&out));
    assert!(stderr(&out).contains("on_bad_record"), "{}", stderr(&out));
}

fn spawn_serve_api(data: &Path, port: u16, delay: &str) -> Child {
    factorypal(data)
        .args([
            "serve-api",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            ".",
            "--delay",
            delay,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_killed_and_restarted_mid_stream_loses_and_repeats_nothing() {
    let data = sample_data(2000, 400);
    let port = free_port();
    let mut api = spawn_serve_api(data.path(), port, "0.001");
    wait_for_port(port);
    let topic = unique_topic("p-api-restart");
    admin(&["create-topic", &topic]);
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    write_config(
        dir.path(),
        addr,
        &[("metrics", "/stream_data_metrics", &topic, Some("id"))],
        "retry_max_backoff = 0.5",
    );
    let producer = Spawned::start(&mut produce_cmd(dir.path(), &["metrics"]));

    // Twice: kill the API hard mid-stream, leave it down a moment, bring it back.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(700));
        api.kill().unwrap();
        api.wait().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        api = spawn_serve_api(data.path(), port, "0.001");
        wait_for_port(port);
    }
    let (status, _, err) = producer.finish(Duration::from_secs(90));
    assert!(status.success(), "{err}");
    // Usually mid-stream; on a loaded machine the first cut can come before the first byte.
    assert!(
        err.contains("API stream dropped") || err.contains("cannot open API stream"),
        "the API was never cut: {err}"
    );

    let served = served_lines(addr, "/stream_data_metrics").await;
    api.kill().unwrap();
    assert_exactly_once(
        &kcat_read(&bootstrap(), &topic),
        &served,
        "metrics",
        Some("id"),
        3,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_then_resume_writes_no_gaps_and_no_duplicates() {
    let data = sample_data(4000, 400);
    let (api, stop_api, _) = start_api(data.path(), Duration::from_micros(500)).await;
    let metrics = unique_topic("p-resume-m");
    let workorder = unique_topic("p-resume-w");
    admin(&["create-topic", &metrics]);
    admin(&["create-topic", &workorder, "--partitions", "4"]);
    let dir = tempfile::tempdir().unwrap();
    // Small batches and a short linger: several batches are in flight when the kill lands.
    // workorder is unkeyed here, to cover round-robin placement.
    write_config(
        dir.path(),
        api,
        &[
            ("metrics", "/stream_data_metrics", &metrics, Some("id")),
            ("workorder", "/stream_data_workorder", &workorder, None),
        ],
        "linger = 0.002\nbatch_max_bytes = 4096\nmax_pending_records = 500",
    );
    let kills = [300u64, 600, 300];
    let mut finished = false;
    for (round, kill_after) in kills.iter().chain([&0]).enumerate() {
        let args: &[&str] = if round == 0 {
            &["--all"]
        } else {
            &["--all", "--resume"]
        };
        let mut producer = Spawned::start(&mut produce_cmd(dir.path(), args));
        if *kill_after == 0 {
            let (status, out, err) = producer.finish(Duration::from_secs(90));
            assert!(status.success(), "{err}");
            assert!(out.contains("resumed at source-offset"), "{out}");
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(*kill_after)).await;
        assert!(
            producer.is_running(),
            "producer finished before the kill in round {round}; slow the stream down: {}",
            producer.log("err")
        );
        producer.kill(); // SIGKILL
    }
    assert!(finished);
    let b = bootstrap();
    let served = served_lines(api, "/stream_data_metrics").await;
    let records = tokio::task::spawn_blocking({
        let (b, m) = (b.clone(), metrics.clone());
        move || kcat_read(&b, &m)
    })
    .await
    .unwrap();
    assert_exactly_once(&records, &served, "metrics", Some("id"), 3);
    let served = served_lines(api, "/stream_data_workorder").await;
    let records = tokio::task::spawn_blocking(move || kcat_read(&b, &workorder))
        .await
        .unwrap();
    assert_exactly_once(&records, &served, "workorder", None, 4);
    stop_api.cancel();
}

#[test]
fn an_unreachable_broker_fails_within_the_timeout_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    write_config(
        dir.path(),
        api,
        &[("metrics", "/stream_data_metrics", "metrics", Some("id"))],
        "",
    );
    let started = Instant::now();
    let out = run_with_timeout(
        factorypal(dir.path())
            .env("FACTORYPAL__KAFKA__TIMEOUT", "2")
            .args([
                "--config",
                "c.toml",
                "--bootstrap",
                "127.0.0.1:1",
                "produce",
                "metrics",
            ]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("could not reach Kafka at 127.0.0.1:1"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// Waits until `topic` on `bootstrap` holds records: the producer is past its setup and
/// writing, which is when an outage should hit.
async fn wait_until_flowing(bootstrap: &str, topic: &str, producer: &mut Spawned) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dir = tempfile::tempdir().unwrap();
        let out = factorypal(dir.path())
            .args([
                "--bootstrap",
                bootstrap,
                "admin",
                "describe-topic",
                topic,
                "--json",
            ])
            .output()
            .unwrap();
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let written: i64 = v["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["latest"].as_i64().unwrap())
                .sum();
            if written > 0 {
                return;
            }
        }
        assert!(
            producer.is_running(),
            "producer ended early: {}",
            producer.log("err")
        );
        assert!(Instant::now() < deadline, "no record reached {topic}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_crash_and_restart_is_retried_and_an_endless_outage_gives_up() {
    let broker = tokio::task::spawn_blocking(SpareBroker::start)
        .await
        .unwrap();
    let b = broker.bootstrap();
    let data = sample_data(3000, 400);
    let (api, stop_api, _) = start_api(data.path(), Duration::from_millis(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let producer_cmd = |timeout: &str| {
        let mut cmd = factorypal(dir.path());
        cmd.env("FACTORYPAL__KAFKA__TIMEOUT", timeout).args([
            "--config",
            "c.toml",
            "--bootstrap",
            &b,
            "produce",
            "metrics",
            "--create-topics",
        ]);
        cmd
    };

    // The broker dies (SIGKILL: requests in flight get no answer) and comes back.
    let topic = unique_topic("p-broker-restart");
    write_config(
        dir.path(),
        api,
        &[("metrics", "/stream_data_metrics", &topic, Some("id"))],
        "linger = 0.002\nretry_max_backoff = 0.5\nretry_deadline = 90",
    );
    let mut producer = Spawned::start(&mut producer_cmd("3"));
    wait_until_flowing(&b, &topic, &mut producer).await;
    let broker = survive_broker_restart(broker, producer, Duration::from_secs(120)).await;
    let served = served_lines(api, "/stream_data_metrics").await;
    let records = tokio::task::spawn_blocking({
        let (b, topic) = (b.clone(), topic.clone());
        move || kcat_read(&b, &topic)
    })
    .await
    .unwrap();
    assert_exactly_once(&records, &served, "metrics", Some("id"), 3);

    // An outage longer than the retry deadline: a clear error and exit 1, not a hang.
    let topic = unique_topic("p-broker-gone");
    write_config(
        dir.path(),
        api,
        &[("metrics", "/stream_data_metrics", &topic, Some("id"))],
        "retry_max_backoff = 0.5\nretry_deadline = 3",
    );
    let mut producer = Spawned::start(&mut producer_cmd("2"));
    wait_until_flowing(&b, &topic, &mut producer).await;
    broker.crash();
    let crashed = Instant::now();
    let (status, _, err) =
        tokio::task::spawn_blocking(move || producer.finish(Duration::from_secs(60)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("gave up writing to") && err.contains("retry_deadline"),
        "{err}"
    );
    assert!(
        crashed.elapsed() < Duration::from_secs(30),
        "took {:?}",
        crashed.elapsed()
    );
    stop_api.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_what_was_read_and_exits_0_with_a_summary() {
    let data = sample_data(3000, 400);
    let (api, stop_api, _) = start_api(data.path(), Duration::from_millis(2)).await;
    let topic = unique_topic("p-sigterm");
    admin(&["create-topic", &topic]);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        api,
        &[("metrics", "/stream_data_metrics", &topic, Some("id"))],
        "",
    );
    let mut producer = Spawned::start(&mut produce_cmd(dir.path(), &["metrics"]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(producer.is_running(), "{}", producer.log("err"));
    send_signal(producer.child.id(), "TERM");
    let (status, out, err) =
        tokio::task::spawn_blocking(move || producer.finish(Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    // The summary counts exactly what reached the topic: a prefix of the stream, once each.
    let count: usize = out
        .split("metrics: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {out:?}"));
    assert!(count > 0 && count < 3000, "{out}");
    let served = served_lines(api, "/stream_data_metrics").await;
    let records = read_back(&topic).await;
    assert_exactly_once(&records, &served[..count], "metrics", Some("id"), 3);
    stop_api.cancel();
}

/// `count` compact JSON lines keyed by `id`, except every third, which lacks its key and so is
/// a bad record for a source keyed by `id`.
fn every_third_unkeyed(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            if i % 3 == 2 {
                format!(r#"{{"val":{i}.5,"time":{i}}}"#)
            } else {
                format!(r#"{{"id":{},"val":{i}.5,"time":{i}}}"#, i % 97)
            }
        })
        .collect()
}

/// Checks that `records` hold exactly the lines of `served` that have an `id`, each once, byte
/// for byte, keyed and placed like the Java client.
fn assert_good_lines_exactly_once(records: &[KcatRecord], served: &[String], partitions: i32) {
    let mut seen: BTreeMap<u64, &KcatRecord> = BTreeMap::new();
    for r in records {
        let offset = r.source_offset();
        assert!(
            seen.insert(offset, r).is_none(),
            "source-offset {offset} written twice"
        );
    }
    let good: Vec<u64> = served
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(r#""id":"#))
        .map(|(o, _)| o as u64)
        .collect();
    let missing: Vec<u64> = good
        .iter()
        .copied()
        .filter(|o| !seen.contains_key(o))
        .collect();
    assert!(
        missing.is_empty(),
        "{} good records never reached the topic, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(seen.len(), good.len(), "records that are not good lines");
    for (offset, r) in seen {
        let line = &served[offset as usize];
        assert_eq!(&r.payload, line, "value differs at source-offset {offset}");
        let key = serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].to_string();
        assert_eq!(r.key.as_deref(), Some(key.as_str()));
        assert_eq!(r.partition, partition_for_key(key.as_bytes(), partitions));
    }
}

/// Issue 4: the window counted good records only, while `--resume` assumed it spans at most
/// `W` stream offsets; with bad records in between, four SIGKILLs and `--resume` lost records.
#[tokio::test(flavor = "multi_thread")]
async fn resume_after_sigkills_loses_nothing_when_bad_records_sit_between_good_ones() {
    const RECORDS: usize = 60_000;
    let served = every_third_unkeyed(RECORDS);
    // 20,000 lines a second at most: the kills land mid-stream however fast the machine.
    let api = paced_line_server(served.clone(), 500, Duration::from_millis(25)).await;
    let topic = unique_topic("p-resume-bad");
    admin(&["create-topic", &topic, "--partitions", "3"]);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        api,
        &[("plant", "/x", &topic, Some("id"))],
        "linger = 0.005\nmax_pending_records = 64",
    );
    let started = Instant::now();
    for (round, kill_after_ms) in [500u64, 400, 450, 350].into_iter().enumerate() {
        let args: &[&str] = if round == 0 {
            &["plant"]
        } else {
            &["plant", "--resume"]
        };
        let mut producer = Spawned::start(&mut produce_cmd(dir.path(), args));
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        assert!(
            producer.is_running(),
            "producer finished before the kill in round {round}: {}",
            producer.log("err")
        );
        producer.kill(); // SIGKILL
    }
    let producer = Spawned::start(&mut produce_cmd(dir.path(), &["plant", "--resume"]));
    let (status, out, err) =
        tokio::task::spawn_blocking(move || producer.finish(Duration::from_secs(120)))
            .await
            .unwrap();
    assert!(status.success(), "{err}");
    assert!(out.contains("resumed at source-offset"), "{out}");
    eprintln!("five runs took {:?}: {out}", started.elapsed());
    let records = read_back(&topic).await;
    assert_good_lines_exactly_once(&records, &served, 3);
}

/// A close-delimited HTTP/1.1 server (no `Content-Length`, not chunked, `Connection: close`),
/// like some gateways: the body ends when the connection closes. It serves `lines` from
/// `?offset=N`; on the first connection it sends `cut_after` whole lines and half of the
/// next, then closes, which HTTP cannot tell from a complete body. Returns the address and the
/// offsets requested, in order.
fn close_delimited_server(
    lines: Vec<String>,
    cut_after: usize,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<usize>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requested = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&requested);
    std::thread::spawn(move || {
        for (connection, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                    break;
                }
            }
            let target = request_line.split(' ').nth(1).unwrap_or("/");
            let offset: usize = target
                .split_once("offset=")
                .map_or(0, |(_, n)| n.parse().unwrap());
            log.lock().unwrap().push(offset);
            let mut body: String = lines[offset.min(lines.len())..]
                .iter()
                .map(|l| format!("{l}\n"))
                .collect();
            if connection == 0 {
                let whole: usize = lines[offset..offset + cut_after]
                    .iter()
                    .map(|l| l.len() + 1)
                    .sum();
                body.truncate(whole + lines[offset + cut_after].len() / 2);
            }
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n";
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    (addr, requested)
}

/// Issue 6: a close-delimited stream cut mid-line ended as if complete: the partial line became
/// a bad record and the rest was never fetched, exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_mid_line_reconnects_at_that_line() {
    let lines: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"id":{},"val":{i}.25,"time":{i}}}"#, i % 11))
        .collect();
    let (api, requested) = close_delimited_server(lines.clone(), 120);
    let topic = unique_topic("p-cut");
    admin(&["create-topic", &topic]);
    let out = produce_plant(api, &topic, "retry_initial_backoff = 0.05").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("plant: 200 records"), "{summary}");
    assert!(summary.contains("(0 bad"), "{summary}");
    assert!(
        stderr(&out).contains("source-offset 120"),
        "the cut was not reported: {}",
        stderr(&out)
    );
    assert_eq!(*requested.lock().unwrap(), [0, 120]);
    let records = read_back(&topic).await;
    assert_exactly_once(&records, &lines, "plant", Some("id"), 3);
}

/// A line of about `bytes` bytes that no codec shrinks much: random letters and digits.
fn incompressible_line(id: u32, bytes: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let blob: String = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            alphabet[(state % alphabet.len() as u64) as usize] as char
        })
        .collect();
    format!(r#"{{"id":{id},"blob":"{blob}"}}"#)
}

/// Issue 7: one record larger than the broker accepts (`MessageTooLarge`) failed the whole
/// source, and `--resume` failed the same way every time. It is a bad record now.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_for_the_topic_is_a_bad_record_not_a_halt() {
    // The broker's default max.message.bytes is 1,048,588: 1.5 MB of random text exceeds it
    // whatever the codec; the normal records around it share its batches.
    let mut lines: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"id":{},"val":{i}.5,"time":{i}}}"#, i % 7))
        .collect();
    lines[120] = incompressible_line(3, 1_500_000);
    let api = line_server(lines.clone()).await;
    let topic = unique_topic("p-too-large");
    admin(&["create-topic", &topic, "--partitions", "1"]);
    // A long linger: the records before it gather into its batch, which the broker refuses
    // whole. (A line limit above the record's size: the broker is to refuse it, not the reader.)
    let out = produce_plant(api, &topic, "linger = 1.0\nmax_line_bytes = 4194304").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("plant: 299 records"), "{summary}");
    assert!(summary.contains("(1 bad"), "{summary}");
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.contains("source_offset=120")
            && l.contains("bytes=")
            && l.contains("max.message.bytes")),
        "the oversize record was not logged with its source-offset and size: {err}"
    );
    let records = read_back(&topic).await;
    let mut offsets: Vec<u64> = records.iter().map(KcatRecord::source_offset).collect();
    let in_order = offsets.windows(2).all(|w| w[0] < w[1]);
    assert!(in_order, "out of stream order: {offsets:?}");
    offsets.sort();
    let expected: Vec<u64> = (0..300).filter(|&o| o != 120).collect();
    assert_eq!(offsets, expected);
    for r in &records {
        assert_eq!(r.payload, lines[r.source_offset() as usize]);
    }

    // fail mode: stops at it, naming it; what came before it is written.
    let topic = unique_topic("p-too-large-fail");
    admin(&["create-topic", &topic, "--partitions", "1"]);
    let out = produce_plant(
        api,
        &topic,
        "on_bad_record = \"fail\"\nmax_line_bytes = 4194304",
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("source-offset 120"), "{err}");
    assert!(err.contains("max.message.bytes"), "{err}");
    assert!(err.contains("on_bad_record"), "{err}");
}

/// Issue 7 with a topic of its own limit, set with Kafka's own tool: a 2 KiB
/// `max.message.bytes`, uncompressed records of ~50 bytes gathering for a second (a batch of
/// all of them would be ~100 KB), and one record that cannot fit at all. The producer reads
/// the limit, keeps its batches below it, skips the one record as bad, and writes every
/// other once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_small_max_message_bytes_caps_batches_and_skips_only_what_cannot_fit() {
    let topic = unique_topic("p-small-limit");
    admin(&["create-topic", &topic, "--partitions", "1"]);
    let limit = "2048";
    common::kafka_tool(
        "kafka.admin.ConfigCommand",
        &[
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &topic,
            "--add-config",
            &format!("max.message.bytes={limit}"),
        ],
    );
    let mut kafka = factorypal::settings::Settings::default().kafka;
    kafka.bootstrap = bootstrap();
    let security = factorypal::kafka::Security::load(&kafka).unwrap();
    let read = factorypal::kafka::topic_config::describe(
        &kafka,
        &security,
        &topic,
        factorypal::kafka::topic_config::MAX_MESSAGE_BYTES,
    )
    .await
    .unwrap();
    assert_eq!(read.as_deref(), Some(limit), "the limit Kafka's tool set");

    let mut lines: Vec<String> = (0..2000)
        .map(|i| format!(r#"{{"id":{},"val":{i}.25,"time":{i}}}"#, i % 7))
        .collect();
    lines[1500] = incompressible_line(5, 3000);
    let api = line_server(lines.clone()).await;
    let out = produce_plant(api, &topic, "linger = 1.0\ncompression = \"none\"").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("plant: 1999 records"), "{summary}");
    assert!(summary.contains("(1 bad"), "{summary}");
    // Kept below the limit from the start: no batch of several records was refused.
    assert!(!stderr(&out).contains("in halves"), "{}", stderr(&out));
    let records = read_back(&topic).await;
    let offsets: Vec<u64> = records.iter().map(KcatRecord::source_offset).collect();
    let expected: Vec<u64> = (0..2000).filter(|&o| o != 1500).collect();
    assert_eq!(
        offsets, expected,
        "every other record once, in stream order"
    );
    for r in &records {
        assert_eq!(r.payload, lines[r.source_offset() as usize]);
    }
}

/// The producer caps batches at the topic's `max.message.bytes`, read with a DescribeConfigs
/// request of our own: the real broker must understand it and give its default (1,048,588).
#[tokio::test(flavor = "multi_thread")]
async fn the_topic_batch_limit_is_read_from_the_broker() {
    let topic = unique_topic("p-limit");
    admin(&["create-topic", &topic, "--partitions", "1"]);
    let mut kafka = factorypal::settings::Settings::default().kafka;
    kafka.bootstrap = bootstrap();
    let security = factorypal::kafka::Security::load(&kafka).unwrap();
    let limit = factorypal::kafka::topic_config::describe(
        &kafka,
        &security,
        &topic,
        factorypal::kafka::topic_config::MAX_MESSAGE_BYTES,
    )
    .await
    .unwrap();
    assert_eq!(limit.as_deref(), Some("1048588"));
    // A topic that does not exist is an error that names it, not a limit.
    let missing = unique_topic("p-limit-missing");
    let error =
        factorypal::kafka::topic_config::describe(&kafka, &security, &missing, "max.message.bytes")
            .await
            .unwrap_err();
    assert!(error.to_string().contains(&missing), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Issue 10: bounded under abuse, honest in its logs.

/// One request as [`raw_server`] parsed it.
struct RawRequest {
    /// `?offset=N`, 0 without.
    offset: usize,
    /// The query without `offset=`, as sent.
    query: String,
    /// Header names lower-cased.
    headers: HashMap<String, String>,
}

/// A raw HTTP/1.1 server on threads, one per connection: `respond` writes the whole answer
/// (status line, headers, body) to the stream, which is then closed. Close-delimited bodies
/// let a test send whatever it likes, as slowly or as long as it likes.
fn raw_server(
    respond: impl Fn(&RawRequest, &mut std::net::TcpStream) + Send + Sync + 'static,
) -> SocketAddr {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let respond = std::sync::Arc::clone(&respond);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                let mut headers = HashMap::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        headers.insert(name.trim().to_lowercase(), value.trim().to_string());
                    }
                }
                let target = request_line.split(' ').nth(1).unwrap_or("/");
                let query = target.split_once('?').map_or("", |(_, q)| q);
                let mut offset = 0;
                let mut rest = Vec::new();
                for part in query.split('&').filter(|p| !p.is_empty()) {
                    match part.strip_prefix("offset=") {
                        Some(n) => offset = n.parse().unwrap(),
                        None => rest.push(part),
                    }
                }
                let request = RawRequest {
                    offset,
                    query: rest.join("&"),
                    headers,
                };
                respond(&request, &mut stream);
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

/// Writes a `200` NDJSON head with no length: the body ends when the connection closes.
fn ndjson_head(stream: &mut std::net::TcpStream) -> std::io::Result<()> {
    use std::io::Write;
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n",
    )
}

/// Writes `lines[offset..]`, each with its newline.
fn write_lines(stream: &mut std::net::TcpStream, lines: &[String], offset: usize) {
    use std::io::Write;
    for line in &lines[offset.min(lines.len())..] {
        if stream.write_all(line.as_bytes()).is_err() || stream.write_all(b"\n").is_err() {
            return;
        }
    }
}

/// Small records keyed by `id`, for stream offsets `range`.
fn small_lines(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| format!(r#"{{"id":{},"val":{i}.5,"time":{i}}}"#, i % 13))
        .collect()
}

/// Checks that `records` are exactly `lines` at `offsets` (and nothing else), once each.
fn assert_records_at(records: &[KcatRecord], lines: &[String], offsets: &[u64]) {
    let mut found: Vec<u64> = records.iter().map(KcatRecord::source_offset).collect();
    found.sort();
    assert_eq!(found, offsets, "source-offsets in the topic");
    for r in records {
        assert_eq!(r.payload, lines[r.source_offset() as usize]);
    }
}

/// The resident memory of process `pid`, from `/proc`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// Issue 10, item 2: a 5 MB line was read whole (quadratically) and written as a record. It is
/// a bad record now, at its own source-offset, and every line after it lands.
#[tokio::test(flavor = "multi_thread")]
async fn a_line_longer_than_max_line_bytes_is_a_bad_record_and_the_rest_lands() {
    let mut lines = small_lines(0..300);
    // Valid JSON, keyed, compressible: nothing but its length is wrong with it.
    lines[100] = format!(r#"{{"id":1,"blob":"{}"}}"#, "x".repeat(5 * 1024 * 1024));
    let served = lines.clone();
    let api = raw_server(move |request, stream| {
        if ndjson_head(stream).is_ok() {
            write_lines(stream, &served, request.offset);
        }
    });
    let topic = unique_topic("p-long-line");
    admin(&["create-topic", &topic]);
    let out = produce_plant(api, &topic, "").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("plant: 299 records"), "{summary}");
    assert!(summary.contains("(1 bad"), "{summary}");
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.contains("source_offset=100")
            && l.contains("longer than producer.max_line_bytes")),
        "the long line was not logged with its source-offset: {err}"
    );
    let expected: Vec<u64> = (0..300).filter(|&o| o != 100).collect();
    assert_records_at(&read_back(&topic).await, &lines, &expected);

    // fail mode: it stops the source, naming it.
    let topic = unique_topic("p-long-line-fail");
    admin(&["create-topic", &topic]);
    let out = produce_plant(api, &topic, "on_bad_record = \"fail\"").await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("source-offset 100"), "{err}");
    assert!(err.contains("longer than producer.max_line_bytes"), "{err}");
}

/// Issue 10, item 2: a line that never ends grew the reader's buffer (and the time to search
/// it) without bound. Now its bytes are discarded as they come: the API keeps streaming it
/// while the producer stays small, and once the connection breaks the producer reconnects
/// after it and reads on.
#[tokio::test(flavor = "multi_thread")]
async fn a_line_that_never_ends_is_discarded_in_bounded_memory() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const ENDLESS_AT: usize = 10;
    let lines = small_lines(0..40);
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let api = raw_server({
        let (lines, sent, stop) = (lines.clone(), sent.clone(), stop.clone());
        move |request, stream| {
            if ndjson_head(stream).is_err() {
                return;
            }
            if request.offset > ENDLESS_AT {
                write_lines(stream, &lines, request.offset);
                return;
            }
            write_lines(stream, &lines[..ENDLESS_AT], request.offset);
            // The line at ENDLESS_AT: a JSON start, then 'x' until told to stop (at most 4 GiB).
            let chunk = [b'x'; 64 * 1024];
            let _ = stream.write_all(b"{\"id\":1,\"blob\":\"");
            for _ in 0..(64 * 1024) {
                if stop.load(Ordering::Relaxed) || stream.write_all(&chunk).is_err() {
                    return;
                }
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
    });
    let topic = unique_topic("p-endless");
    admin(&["create-topic", &topic]);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        api,
        &[("plant", "/x", &topic, Some("id"))],
        "retry_initial_backoff = 0.05",
    );
    let mut producer = Spawned::start(&mut produce_cmd(dir.path(), &["plant"]));
    let pid = producer.child.id();
    // Watch the producer's memory while 256 MiB of the line stream through it: 256 times the
    // line limit, far more than it may hold.
    let target = 256 * 1024 * 1024;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak_rss = 0;
    while sent.load(Ordering::Relaxed) < target {
        assert!(
            producer.is_running(),
            "producer ended: {}",
            producer.log("err")
        );
        assert!(
            Instant::now() < deadline,
            "the producer stopped reading the endless line after {} bytes (RSS {} bytes): {}",
            sent.load(Ordering::Relaxed),
            rss_bytes(pid),
            producer.log("err")
        );
        peak_rss = peak_rss.max(rss_bytes(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak_rss = peak_rss.max(rss_bytes(pid));
    eprintln!("peak RSS {peak_rss} bytes while {target} bytes of one line streamed");
    assert!(
        peak_rss < 128 * 1024 * 1024,
        "the producer grew to {peak_rss} bytes of RSS while reading one endless line"
    );
    // The connection breaks; the producer reconnects after the line and reads the rest.
    stop.store(true, Ordering::Relaxed);
    let (status, out, err) =
        tokio::task::spawn_blocking(move || producer.finish(Duration::from_secs(60)))
            .await
            .unwrap();
    assert!(status.success(), "{err}");
    assert!(out.contains("plant: 39 records"), "{out}");
    assert!(out.contains("(1 bad"), "{out}");
    assert!(
        err.lines()
            .any(|l| l.contains(&format!("source_offset={ENDLESS_AT}"))
                && l.contains("longer than producer.max_line_bytes")),
        "{err}"
    );
    let expected: Vec<u64> = (0..40).filter(|&o| o != ENDLESS_AT as u64).collect();
    assert_records_at(&read_back(&topic).await, &lines, &expected);
}

/// Issue 10, item 3: what a bad record's log line quotes of it is capped (an excerpt with the
/// full length), so five 900 KB bad lines cost a few kB of stderr, each still named by source
/// and source-offset.
#[tokio::test(flavor = "multi_thread")]
async fn huge_bad_lines_make_small_log_lines() {
    let big = "y".repeat(900 * 1024);
    let mut lines = small_lines(0..20);
    let bad = [
        (3, format!(r#"{{"id":1,"blob":"{big}"}} trailing"#)), // not valid JSON
        (5, format!(r#"{{"blob":"{big}"}}"#)),                 // no key field
        (8, format!(r#"{{"id":{{"blob":"{big}"}}}}"#)),        // a key that is an object
        (13, format!(r#"["{big}"]"#)),                         // not an object
        (17, format!(r#"{{"id":1,"blob":"{big}"#)),            // cut short
    ];
    for (offset, line) in &bad {
        lines[*offset] = line.clone();
    }
    let api = line_server(lines.clone()).await;
    let topic = unique_topic("p-huge-bad");
    admin(&["create-topic", &topic]);
    let out = produce_plant(api, &topic, "").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("(5 bad"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.len() < 20_000, "{} bytes of stderr", err.len());
    for (offset, line) in &bad {
        let logged = err
            .lines()
            .find(|l| l.contains(&format!("source_offset={offset} ")))
            .unwrap_or_else(|| panic!("bad record {offset} not logged: {err}"));
        assert!(logged.contains("plant"), "{logged}");
        assert!(
            logged.contains(&format!("({} bytes)", line.len())),
            "no full length in the excerpt: {logged}"
        );
    }
    let expected: Vec<u64> = (0..20u64)
        .filter(|&o| !bad.iter().any(|&(b, _)| b as u64 == o))
        .collect();
    assert_records_at(&read_back(&topic).await, &lines, &expected);
}

/// Issue 10, item 5: a `200` that is an HTML page (a proxy's error page) fails the source with
/// a message saying so, instead of one bad record per line of HTML.
#[tokio::test(flavor = "multi_thread")]
async fn an_html_answer_fails_the_source_instead_of_making_bad_records() {
    use std::io::Write;
    let api = raw_server(|_, stream| {
        let page = "<!DOCTYPE html>\n<html>\n<head><title>Sign in</title></head>\n<body>\n<p>Please sign in</p>\n</body>\n</html>\n";
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{page}",
            page.len()
        );
    });
    let topic = unique_topic("p-html");
    admin(&["create-topic", &topic]);
    let out = produce_plant(api, &topic, "").await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("source plant"), "{err}");
    assert!(err.contains("text/html"), "{err}");
    assert!(err.contains("not NDJSON"), "{err}");
    assert!(err.contains(&format!("http://{api}/x")), "{err}");
    assert!(err.contains("DOCTYPE"), "the start of the page: {err}");
    assert!(!err.contains("bad record"), "{err}");
    assert!(stdout(&out).contains("(0 bad"), "{}", stdout(&out));
}

/// Issue 10, item 4: `user:password@` in a source URL was dropped silently (never sent), and
/// the URL showed in logs and on the status page with its query's secrets. Now the credentials
/// go as basic auth, and neither the password nor a query value shows anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn url_credentials_are_sent_as_basic_auth_and_never_shown() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    const PASSWORD: &str = "pw-7c1e9b";
    const TOKEN: &str = "tok-52aa0f";
    let lines = small_lines(0..50);
    // Answers 503 until `open`, so the producer retries and its trouble shows on /status.
    let open = std::sync::Arc::new(AtomicBool::new(false));
    let expected_auth = {
        use base64::Engine as _;
        let pair = format!("ops:{PASSWORD}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let api = raw_server({
        let (lines, open) = (lines.clone(), open.clone());
        move |request, stream| {
            if request.headers.get("authorization") != Some(&expected_auth) {
                let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"plant\"\r\nContent-Length: 14\r\n\r\nwho are you?\r\n");
                return;
            }
            assert_eq!(request.query, format!("token={TOKEN}"));
            if !open.load(Ordering::Relaxed) {
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            if ndjson_head(stream).is_ok() {
                write_lines(stream, &lines, request.offset);
            }
        }
    });
    let topic = unique_topic("p-basic-auth");
    admin(&["create-topic", &topic]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://ops:{PASSWORD}@{api}/x?token={TOKEN}");
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[producer]\nretry_initial_backoff = 0.05\nretry_max_backoff = 0.2\n\n[[producer.sources]]\nname = \"plant\"\nurl = \"{url}\"\ntopic = \"{topic}\"\nkey = \"id\"\n"
        ),
    )
    .unwrap();
    let status_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut producer = Spawned::start(&mut produce_cmd(
        dir.path(),
        &["plant", "--status-bind", &status_addr.to_string()],
    ));
    // The trouble (503) shows on /status, with the URL masked.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        assert!(producer.is_running(), "{}", producer.log("err"));
        assert!(Instant::now() < deadline, "no trouble on /status");
        if std::net::TcpStream::connect(status_addr).is_ok() {
            let (code, _, body) = http_get_body(status_addr, "/status").await;
            let body = String::from_utf8(body.to_vec()).unwrap();
            if code == 200 && body.contains("503") {
                break body;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.contains(&format!("http://ops:***@{api}/x?token=***")),
        "{status}"
    );
    for secret in [PASSWORD, TOKEN] {
        assert!(!status.contains(secret), "/status shows {secret}: {status}");
    }
    let (_, _, page) = http_get_body(status_addr, "/").await;
    let page = String::from_utf8_lossy(&page).into_owned();
    for secret in [PASSWORD, TOKEN] {
        assert!(!page.contains(secret), "the status page shows {secret}");
    }

    open.store(true, Ordering::Relaxed);
    let (status, out, err) =
        tokio::task::spawn_blocking(move || producer.finish(Duration::from_secs(60)))
            .await
            .unwrap();
    assert!(status.success(), "{err}");
    assert!(out.contains("plant: 50 records"), "{out}");
    assert!(
        err.contains("ops:***@"),
        "the retries were not logged: {err}"
    );
    for secret in [PASSWORD, TOKEN] {
        assert!(!err.contains(secret), "stderr shows {secret}: {err}");
        assert!(!out.contains(secret), "stdout shows {secret}: {out}");
    }
    let expected: Vec<u64> = (0..50).collect();
    assert_records_at(&read_back(&topic).await, &lines, &expected);

    // Wrong credentials: a clear error, the password still masked.
    let wrong = url.replace(PASSWORD, "nope-pw");
    let config = std::fs::read_to_string(dir.path().join("c.toml")).unwrap();
    std::fs::write(dir.path().join("c.toml"), config.replace(&url, &wrong)).unwrap();
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || produce(&dir, &["plant"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("answered 401"), "{err}");
    assert!(err.contains("user:password"), "{err}");
    assert!(!err.contains("nope-pw") && !err.contains(TOKEN), "{err}");
}

/// Issue 10, item 6: a failed source did not stop the others; the process went on until every
/// other stream ended, then exited 1. Now the first failure stops them: they write what they
/// read, the process exits 1 with the failure's error, and `--resume` goes on from there
/// without a gap or a duplicate.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_source_stops_the_others_after_they_flush_and_resume_continues() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    const TOTAL: usize = 50_000;
    let lines = small_lines(0..TOTAL);
    // The long stream: paced at 2,500 lines a second (20 s in all) until `fast`.
    let fast = std::sync::Arc::new(AtomicBool::new(false));
    let good_api = raw_server({
        let (lines, fast) = (lines.clone(), fast.clone());
        move |request, stream| {
            if ndjson_head(stream).is_err() {
                return;
            }
            let mut from = request.offset.min(TOTAL);
            while from < TOTAL {
                let to = (from + 50).min(TOTAL);
                let chunk: String = lines[from..to].iter().map(|l| format!("{l}\n")).collect();
                if stream.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
                from = to;
                if !fast.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    });
    // The failing source: an HTML page, once the test lets it answer.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let broken_api = raw_server(move |_, stream| {
        let _ = released
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(120));
        let page = "<html><body>502 Bad Gateway</body></html>\n";
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
            page.len()
        );
    });
    let good_topic = unique_topic("p-policy-good");
    let broken_topic = unique_topic("p-policy-broken");
    admin(&["create-topic", &good_topic]);
    admin(&["create-topic", &broken_topic]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[producer]\nmax_pending_records = 500\n\n\
         [[producer.sources]]\nname = \"good\"\nurl = \"http://{good_api}/good\"\ntopic = \"{good_topic}\"\nkey = \"id\"\n\n\
         [[producer.sources]]\nname = \"broken\"\nurl = \"http://{broken_api}/broken\"\ntopic = \"{broken_topic}\"\n"
    );
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let mut producer = Spawned::start(&mut produce_cmd(dir.path(), &["--all"]));
    // The good source is writing; now the other one fails.
    wait_until_flowing(&bootstrap(), &good_topic, &mut producer).await;
    release.send(()).unwrap();
    let (status, out, err) =
        tokio::task::spawn_blocking(move || producer.finish(Duration::from_secs(60)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("source broken") && err.contains("text/html"),
        "{err}"
    );
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.contains("source broken")),
        "the last line is not the failure's error: {err}"
    );
    assert!(out.contains("broken: 0 records"), "{out}");
    let written: usize = out
        .split("good: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary for good in {out:?}"));
    assert!(
        written > 0 && written < TOTAL,
        "the good source was not stopped: {out}"
    );
    // What it read is all in the topic: the first `written` lines, once each.
    let prefix: Vec<u64> = (0..written as u64).collect();
    assert_records_at(&read_back(&good_topic).await, &lines, &prefix);

    // --resume goes on from there: the whole stream, once each.
    fast.store(true, Ordering::Relaxed);
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || produce(&dir, &["good", "--resume"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("resumed at source-offset"),
        "{}",
        stdout(&out)
    );
    let all: Vec<u64> = (0..TOTAL as u64).collect();
    assert_records_at(&read_back(&good_topic).await, &lines, &all);
}
