//! `consume` end to end: records produced into the real broker by the real pipeline, consumed
//! by the real binary to Parquet, read back by pyarrow and DuckDB (independent readers).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{
    SpareBroker, Spawned, bootstrap, configured, factorypal, kcat_produce, raw_topic,
    run_with_timeout, sample_data, send_signal, start_api, stderr, stdout, survive_broker_restart,
    unique_topic, write_config, write_run_config,
};
use serde_json::Value;

/// What pyarrow and DuckDB read from a topic's output directory.
struct ParquetView {
    schema: Vec<(String, String)>,
    rows: Vec<HashMap<String, Value>>,
}

fn read_parquet(topic_dir: &Path) -> ParquetView {
    let v = common::read_parquet_report(topic_dir);
    ParquetView {
        schema: v["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f[0].as_str().unwrap().into(), f[1].as_str().unwrap().into()))
            .collect(),
        rows: serde_json::from_value(v["rows"].clone()).unwrap(),
    }
}

/// A config whose consumer writes under `dir/out` with schemas for `metrics` and
/// `workorder` topics named as given.
fn consume_cmd(dir: &Path, args: &[&str]) -> std::process::Command {
    configured(dir, "consume", args)
}

fn consume(dir: &Path, args: &[&str]) -> Output {
    run_with_timeout(&mut consume_cmd(dir, args), Duration::from_secs(180))
}

/// Produces `data`'s metrics (and workorder) into new topics with the real producer.
async fn fill(data: &Path, metrics: &str, workorder: &str, partitions: &str) {
    fill_at(&bootstrap(), data, metrics, workorder, partitions).await;
}

/// [`fill`] on the broker at `broker`.
async fn fill_at(broker: &str, data: &Path, metrics: &str, workorder: &str, partitions: &str) {
    let (api, stop_api, _) = start_api(data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[admin]\npartitions = {partitions}\n[producer]\napi_url = \"http://{api}\"\n\
         [[producer.sources]]\nname = \"metrics\"\npath = \"/stream_data_metrics\"\ntopic = \"{metrics}\"\nkey = \"id\"\n\
         [[producer.sources]]\nname = \"workorder\"\npath = \"/stream_data_workorder\"\ntopic = \"{workorder}\"\nkey = \"product\"\n"
    );
    std::fs::write(dir.path().join("p.toml"), config).unwrap();
    let out = tokio::task::spawn_blocking({
        let (dir, broker) = (dir.path().to_path_buf(), broker.to_string());
        move || {
            run_with_timeout(
                factorypal(&dir).args([
                    "--config",
                    "p.toml",
                    "--bootstrap",
                    &broker,
                    "produce",
                    "--all",
                    "--create-topics",
                ]),
                Duration::from_secs(180),
            )
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "produce: {}", stderr(&out));
    stop_api.cancel();
}

/// The source records of a data file, keyed by (id or product, time) for comparison.
fn source_records(file: &Path) -> Vec<Value> {
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

/// Checks the Parquet rows are exactly the source metrics, each once.
fn assert_metrics_once(view: &ParquetView, source: &[Value]) {
    assert_eq!(
        view.schema,
        [
            ("id".to_string(), "int32".to_string()),
            ("val".into(), "double".into()),
            ("time".into(), "timestamp[us, tz=UTC]".into()),
        ]
    );
    assert_eq!(view.rows.len(), source.len(), "row count");
    let mut expected: HashMap<i64, (i64, f64)> = HashMap::new();
    for r in source {
        let time = r["time"].as_i64().unwrap() * 1_000_000;
        expected.insert(
            time,
            (r["id"].as_i64().unwrap(), r["val"].as_f64().unwrap()),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for row in &view.rows {
        let time = row["time"].as_i64().unwrap();
        assert!(seen.insert(time), "row with time {time} appears twice");
        let (id, val) = expected
            .get(&time)
            .unwrap_or_else(|| panic!("unexpected row {row:?}"));
        assert_eq!(row["id"].as_i64().unwrap(), *id);
        assert_eq!(
            row["val"].as_f64().unwrap(),
            *val,
            "float64 keeps every digit"
        );
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sample_data_reaches_parquet_once_with_the_configured_types() {
    let metrics = unique_topic("c-metrics");
    let workorder = unique_topic("c-workorder");
    fill(&repo().join("data_source"), &metrics, &workorder, "3").await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &metrics, &workorder, "");
    // 1000 per trigger (the default): several batches; 2500 rows per file.
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            consume(
                &dir,
                &[
                    "--trigger",
                    "available-now",
                    "--max-records-per-file",
                    "400",
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains(&format!("{metrics}: 7000 rows in 7 batches")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("{workorder}: 576 rows in 1 batches")),
        "{summary}"
    );

    let out_dir = dir.path().join("out");
    let view = read_parquet(&out_dir.join(&metrics));
    assert_metrics_once(
        &view,
        &source_records(&repo().join("data_source/metrics.json")),
    );
    // File layout: zero-padded batch and chunk numbers, at most 400 rows each.
    let mut files: Vec<String> = std::fs::read_dir(out_dir.join(&metrics))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    files.sort();
    assert_eq!(
        files.first().map(String::as_str),
        Some("part-00000000-0000.parquet")
    );
    assert!(
        files
            .iter()
            .all(|f| f.len() == "part-00000000-0000.parquet".len())
    );
    assert_eq!(
        files.len(),
        7 * 3,
        "each 1000-record batch makes three files of ≤ 400 rows"
    );

    let view = read_parquet(&out_dir.join(&workorder));
    assert_eq!(
        view.schema[0],
        ("time".to_string(), "timestamp[us, tz=UTC]".to_string())
    );
    assert_eq!(view.schema[1].1, "int32");
    assert_eq!(view.rows.len(), 576);

    // A second run finds nothing new: the checkpoint holds, nothing is written twice.
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || consume(&dir, &["--trigger", "available-now"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{metrics}: 0 rows in 0 batches")),
        "{}",
        stdout(&out)
    );
    assert_eq!(read_parquet(&out_dir.join(&metrics)).rows.len(), 7000);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_still_writes_every_record_once() {
    // Enough small batches that a run outlives several kills (the consumer reads a million
    // records in well under a second since issue 14; 300 batches of 1000 take a few seconds).
    let data = sample_data(300000, 10);
    let metrics = unique_topic("c-kill-m");
    let workorder = unique_topic("c-kill-w");
    fill(data.path(), &metrics, &workorder, "3").await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &metrics, &workorder, "");
    let args = [
        "--topics",
        metrics.as_str(),
        "--trigger",
        "available-now",
        "--max-offsets-per-trigger",
        "1000",
        "--max-records-per-file",
        "300",
    ];
    // Kill at pseudo-random moments (fixed seed: a failure can be replayed).
    let mut seed: u64 = 0x5eed;
    let mut kills = 0;
    let started = Instant::now();
    loop {
        let mut child = consume_cmd(dir.path(), &args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = Duration::from_millis(150 + seed % 700);
        tokio::time::sleep(wait).await;
        if child.try_wait().unwrap().is_some() {
            break; // finished before this kill: the run is complete
        }
        send_signal(child.id(), "KILL");
        child.wait().unwrap();
        kills += 1;
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "never finished"
        );
    }
    assert!(
        kills >= 5,
        "only {kills} kills landed; the run is too fast for this test"
    );
    // One last run to completion, cleanly.
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || consume(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let view = read_parquet(&dir.path().join("out").join(&metrics));
    assert_metrics_once(&view, &source_records(&data.path().join("metrics.json")));
    eprintln!("{kills} SIGKILLs; every record once");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_split_a_topic_and_find_every_record_once() {
    let metrics = unique_topic("c-inst-m");
    let workorder = unique_topic("c-inst-w");
    fill(&repo().join("data_source"), &metrics, &workorder, "4").await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &metrics, &workorder, "");
    let run = |instance: &'static str| {
        let dir = dir.path().to_path_buf();
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || {
            consume(
                &dir,
                &[
                    "--topics",
                    &metrics,
                    "--trigger",
                    "available-now",
                    "--instance",
                    instance,
                ],
            )
        })
    };
    let (a, b) = (run("0/2"), run("1/2"));
    for out in [a.await.unwrap(), b.await.unwrap()] {
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let topic_dir = dir.path().join("out").join(&metrics);
    let names: Vec<String> = std::fs::read_dir(&topic_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("-i0of2.parquet")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("-i1of2.parquet")),
        "{names:?}"
    );
    assert!(topic_dir.join("_checkpoint/i0of2").is_dir());
    assert!(topic_dir.join("_checkpoint/i1of2").is_dir());
    let view = read_parquet(&topic_dir);
    assert_metrics_once(
        &view,
        &source_records(&repo().join("data_source/metrics.json")),
    );
}

#[test]
fn bad_records_go_to_bad_records_or_stop_the_batch() {
    let topic = raw_topic(&[
        r#"{"id": 1, "val": 1.5, "time": 1767225600}"#,
        r#"not json"#,
        r#"{"id": "one", "val": 2.5, "time": 1767225601}"#,
        r#"[1, 2, 3]"#,
        r#"{"id": 2, "time": "2026-01-01T00:00:02Z"}"#,
    ]);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &topic, "unused-workorder", "");
    let out = consume(
        dir.path(),
        &["--topics", &topic, "--trigger", "available-now"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 rows in 1 batches, 1 files, 3 bad records"),
        "{}",
        stdout(&out)
    );

    let bad_dir = dir.path().join("out").join(&topic).join("_bad_records");
    let text = std::fs::read_to_string(bad_dir.join("batch-00000000.jsonl")).unwrap();
    let bad: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(bad.len(), 3);
    let offsets: Vec<i64> = bad.iter().map(|b| b["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, [1, 2, 3]);
    assert_eq!(bad[0]["topic"], topic.as_str());
    assert_eq!(bad[0]["partition"], 0);
    assert_eq!(bad[0]["payload"], "not json");
    assert!(
        bad[1]["reason"]
            .as_str()
            .unwrap()
            .contains("field `id` should be an int32"),
        "{}",
        bad[1]
    );
    let view = read_parquet(&dir.path().join("out").join(&topic));
    assert_eq!(view.rows.len(), 2);
    assert!(view.rows[1]["val"].is_null(), "a missing field is null");
    assert_eq!(view.rows[1]["time"].as_i64(), Some(1_767_225_602_000_000));

    // fail mode: stops with exit 1, naming topic, partition and offset; nothing committed.
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &topic,
        "unused-workorder",
        "on_bad_record = \"fail\"",
    );
    let out = consume(
        dir.path(),
        &["--topics", &topic, "--trigger", "available-now"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&topic) && err.contains("partition 0, offset 1"),
        "{err}"
    );
    let checkpoint = dir.path().join("out").join(&topic).join("_checkpoint/all");
    assert!(!std::fs::read_dir(&checkpoint).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".commit.json")
    }));

    // A failing topic stops a running consumer of several: the healthy one does not keep the
    // process alive (and the failure out of sight) until someone looks at the log.
    let healthy = raw_topic(&[r#"{"time": 1767225600, "product": 1, "production": 2.5}"#]);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &topic, &healthy, "on_bad_record = \"fail\"");
    let out = consume(dir.path(), &["--trigger", "200ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopping the other topics"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_topic_or_schema_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("c-missing");
    write_config(dir.path(), &topic, "unused-workorder", "");
    let out = consume(
        dir.path(),
        &["--topics", &topic, "--trigger", "available-now"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&topic), "{}", stderr(&out));

    let out = consume(
        dir.path(),
        &["--topics", "no-schema-here", "--trigger", "available-now"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("has no schema"), "{}", stderr(&out));
}

#[test]
fn console_sink_prints_batches_like_spark() {
    let topic = raw_topic(&[
        r#"{"id": 1, "val": 1.5, "time": 1767225600}"#,
        r#"{"id": 2, "val": 2.5, "time": 1767225601}"#,
        r#"{"id": 3, "val": 3.5, "time": 1767225602}"#,
    ]);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &topic, "unused-workorder", "console_rows = 2");
    let out = consume(
        dir.path(),
        &[
            "--sink",
            "console",
            "--topics",
            &topic,
            "--trigger",
            "available-now",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Batch: 0"), "{text}");
    assert!(text.contains("| id | val | time"), "{text}");
    assert!(text.contains("2026-01-01T00:00:00Z"), "{text}");
    assert!(text.contains("only showing top 2 of 3 rows"), "{text}");
    assert!(
        !dir.path().join("out").exists(),
        "the console sink writes no files"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_removed_by_retention_fail_unless_skipped() {
    let topic = raw_topic(&[
        r#"{"id": 1, "time": 1}"#,
        r#"{"id": 2, "time": 2}"#,
        r#"{"id": 3, "time": 3}"#,
        r#"{"id": 4, "time": 4}"#,
    ]);
    // Delete the first two records, as retention would.
    let client = rskafka::client::ClientBuilder::new(vec![bootstrap()])
        .build()
        .await
        .unwrap();
    let partition = client
        .partition_client(
            topic.clone(),
            0,
            rskafka::client::partition::UnknownTopicHandling::Retry,
        )
        .await
        .unwrap();
    partition.delete_records(2, 10_000).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    // A checkpoint from an earlier run that stopped at offset 0.
    let checkpoint = dir.path().join("out").join(&topic).join("_checkpoint/all");
    std::fs::create_dir_all(&checkpoint).unwrap();
    std::fs::write(
        checkpoint.join("000000000000.commit.json"),
        r#"{"batch": 0, "next_offsets": {"0": 0}, "files": [], "rows": 0, "bad_records": 0}"#,
    )
    .unwrap();
    write_config(dir.path(), &topic, "unused-workorder", "");
    let run = |dir: PathBuf, topic: String| {
        tokio::task::spawn_blocking(move || {
            consume(&dir, &["--topics", &topic, "--trigger", "available-now"])
        })
    };
    let out = run(dir.path().into(), topic.clone()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("partition 0: offsets 0..2 no longer exist") && err.contains("on_data_loss"),
        "{err}"
    );

    write_config(
        dir.path(),
        &topic,
        "unused-workorder",
        "on_data_loss = \"skip\"",
    );
    let out = run(dir.path().into(), topic.clone()).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 rows in 1 batches"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_cleanly_and_a_rerun_completes_the_topic_once() {
    let metrics = unique_topic("c-term-m");
    let workorder = unique_topic("c-term-w");
    fill(&repo().join("data_source"), &metrics, &workorder, "3").await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &metrics, &workorder, "");
    // Small batches on a fast trigger: the signal lands while batches keep coming.
    let mut child = Spawned::start(&mut consume_cmd(
        dir.path(),
        &[
            "--topics",
            &metrics,
            "--trigger",
            "100ms",
            "--max-offsets-per-trigger",
            "100",
        ],
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.is_running(),
        "consume ended on its own: {}",
        child.log("err")
    );
    send_signal(child.child.id(), "TERM");
    let (status, _, _) = tokio::task::spawn_blocking(move || child.finish(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let topic_dir = dir.path().join("out").join(&metrics);
    let partial = read_parquet(&topic_dir).rows.len();
    assert!(
        partial > 0 && partial < 7000,
        "{partial} rows after the signal"
    );
    assert!(
        !std::fs::read_dir(&topic_dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "a temporary file was left behind"
    );
    let out = tokio::task::spawn_blocking({
        let (dir, metrics) = (dir.path().to_path_buf(), metrics.clone());
        move || consume(&dir, &["--topics", &metrics, "--trigger", "available-now"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let view = read_parquet(&topic_dir);
    assert_metrics_once(
        &view,
        &source_records(&repo().join("data_source/metrics.json")),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_crash_mid_run_is_retried_and_nothing_is_lost_or_repeated() {
    let broker = tokio::task::spawn_blocking(SpareBroker::start)
        .await
        .unwrap();
    let b = broker.bootstrap();
    let data = sample_data(100000, 10);
    let metrics = unique_topic("c-crash-m");
    let workorder = unique_topic("c-crash-w");
    fill_at(&b, data.path(), &metrics, &workorder, "3").await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &metrics, &workorder, "");
    let mut child = Spawned::start(
        factorypal(dir.path())
            .env("FACTORYPAL__KAFKA__TIMEOUT", "3")
            .args([
                "--config",
                "c.toml",
                "--bootstrap",
                &b,
                "consume",
                "--topics",
                &metrics,
            ])
            .args([
                "--trigger",
                "available-now",
                "--max-offsets-per-trigger",
                "1000",
            ]),
    );
    // Crash once batches are being committed.
    let checkpoint = dir
        .path()
        .join("out")
        .join(&metrics)
        .join("_checkpoint/all");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !checkpoint.exists()
        || std::fs::read_dir(&checkpoint)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".commit.json")
            })
            .count()
            < 3
    {
        assert!(
            child.is_running(),
            "consume ended before the crash: {}",
            child.log("err")
        );
        assert!(Instant::now() < deadline, "no batch committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _broker = survive_broker_restart(broker, child, Duration::from_secs(180)).await;
    let view = read_parquet(&dir.path().join("out").join(&metrics));
    assert_metrics_once(&view, &source_records(&data.path().join("metrics.json")));
}

#[test]
fn run_stops_the_pipeline_when_a_consumer_fails() {
    // Producing takes minutes (0.05 s between records); a consumer that must fail on its
    // first batch stops the whole run long before that.
    let data = sample_data(3000, 10);
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("rf-metrics");
    let workorder = unique_topic("rf-workorder");
    write_run_config(
        dir.path(),
        data.path(),
        &metrics,
        &workorder,
        "trigger = \"300ms\"\non_bad_record = \"fail\"",
    );
    // The metrics schema now wants a bool where the records carry numbers.
    let config = std::fs::read_to_string(dir.path().join("c.toml"))
        .unwrap()
        .replace("id = \"int32\"", "id = \"bool\"");
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let out = run_with_timeout(
        &mut configured(dir.path(), "run", &["--delay", "0.05"]),
        Duration::from_secs(300),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad record"), "{}", stderr(&out));
    // The producer's summary: it stopped with the consumer, long before its stream ended.
    let produced: u64 = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("metrics: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no producer summary in {}", stdout(&out)));
    assert!(produced < 3000, "the producer went on: {}", stdout(&out));
}

#[test]
fn run_until_drained_writes_every_sample_record_to_parquet_once() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("r-metrics");
    let workorder = unique_topic("r-workorder");
    write_run_config(
        dir.path(),
        &repo().join("data_source"),
        &metrics,
        &workorder,
        "trigger = \"500ms\"",
    );
    for round in 0..2 {
        let out = run_with_timeout(
            &mut configured(dir.path(), "run", &["--until-drained", "--delay", "0"]),
            Duration::from_secs(180),
        );
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("pipeline finished"),
            "{}",
            stdout(&out)
        );
        // The second round finds everything done: nothing is written twice.
        let view = read_parquet(&dir.path().join("out").join(&metrics));
        assert_metrics_once(
            &view,
            &source_records(&repo().join("data_source/metrics.json")),
        );
        assert_eq!(
            read_parquet(&dir.path().join("out").join(&workorder))
                .rows
                .len(),
            576
        );
    }
}

/// The file work of a batch runs off the async runtime: while a file write of a batch is
/// stuck (here: its `_bad_records/` temporary is a FIFO nobody reads, so writing ~900 KB into
/// it blocks after the pipe's 64 KB), the runtime that fetches from Kafka goes on.
///
/// Consumed in-process on a `current_thread` runtime, where a blocking call on the runtime's
/// thread cannot hide: it stops every task, so the heartbeat task below stops counting. (On
/// a multi-thread runtime it only takes one of a few workers, which a test cannot tell from
/// a busy one.) A watchdog thread holds the write blocked until the heartbeat advances, for
/// at most 30 s, then reads the FIFO empty so the consumer can go on either way.
#[test]
fn a_file_write_that_blocks_does_not_stall_the_runtime() {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let big = format!(r#"{{"id": "{}"}}"#, "x".repeat(900_000));
    let topic = raw_topic(&[r#"{"id": 1, "time": 1}"#, &big]);
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap = \"{}\"\n[consumer]\noutput = \"{}\"\ntrigger = \"available-now\"\n\
             [consumer.topics.{topic}.schema]\nid = \"int32\"\ntime = \"timestamp\"\n",
            bootstrap(),
            out_dir.display()
        ),
    )
    .unwrap();
    let bad_dir = out_dir.join(&topic).join("_bad_records");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let fifo = bad_dir.join(".batch-00000000.jsonl.tmp");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());

    let beats = Arc::new(AtomicU64::new(0));
    // `None`: the consumer never opened the FIFO; `Some(alive)`: whether the heartbeat went on
    // while the consumer's write was blocked in it.
    let watchdog = std::thread::spawn({
        let (beats, fifo) = (Arc::clone(&beats), fifo.clone());
        move || -> Option<bool> {
            // Blocks until the consumer opens the FIFO to write (or the test does, below).
            let mut reader = std::fs::File::open(&fifo).unwrap();
            if !fifo.exists() {
                return None; // the test's own open after the consumer finished
            }
            let before = beats.load(Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut alive = false;
            while Instant::now() < deadline {
                if beats.load(Ordering::SeqCst) >= before + 5 {
                    alive = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // Gone before the writer finishes: its retry writes a regular file.
            std::fs::remove_file(&fifo).unwrap();
            let mut drained = Vec::new();
            reader.read_to_end(&mut drained).unwrap();
            Some(alive)
        }
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async {
        let heartbeat = tokio::spawn({
            let beats = Arc::clone(&beats);
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    beats.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let sources = factorypal::settings::SettingsSources {
            config_file: Some(config.clone()),
            overrides: Vec::new(),
        };
        let settings = factorypal::settings::Settings::load_with_env(
            &sources,
            std::iter::empty::<(String, String)>(),
        )
        .unwrap();
        let options = factorypal::consume::ConsumeOptions {
            sink: factorypal::consume::SinkKind::Parquet,
            topics: Some(vec![topic.clone()]),
            partitions: factorypal::consume::PartitionSelection::All,
            print_summaries: false,
            overwrite: false,
        };
        let status = factorypal::status::Status::new("consume");
        let run = factorypal::consume::run(
            &settings,
            &options,
            &status,
            tokio_util::sync::CancellationToken::new(),
        );
        let result = tokio::time::timeout(Duration::from_secs(120), run).await;
        heartbeat.abort();
        result
    });
    if fifo.exists() {
        // The consumer finished without opening the FIFO: let the watchdog go.
        let taken = fifo.with_extension("taken");
        std::fs::rename(&fifo, &taken).unwrap();
        drop(std::fs::OpenOptions::new().write(true).open(&taken));
    }
    let watched = watchdog.join().unwrap();
    let summaries = result.expect("consume timed out").expect("consume");
    assert_eq!(
        watched,
        Some(true),
        "None: the bad record was never written through the FIFO; Some(false): the runtime \
         stalled while a file write of the batch was blocked"
    );
    assert_eq!((summaries[0].rows, summaries[0].bad_records), (1, 1));
    let bad = std::fs::read_to_string(bad_dir.join("batch-00000000.jsonl")).unwrap();
    let entry: Value = serde_json::from_str(bad.trim_end()).unwrap();
    assert_eq!(entry["payload"], big.as_str());
}

/// The newest commit in a topic's checkpoint (`_checkpoint/all`): its batch number and next
/// offsets, or `None` before the first.
fn newest_commit(topic_dir: &Path) -> Option<(u64, HashMap<String, i64>)> {
    let checkpoint = topic_dir.join("_checkpoint/all");
    let newest = std::fs::read_dir(checkpoint)
        .ok()?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".commit.json"))
        .max()?;
    let commit: Value = serde_json::from_slice(
        &std::fs::read(topic_dir.join("_checkpoint/all").join(&newest)).ok()?,
    )
    .ok()?;
    Some((
        commit["batch"].as_u64().unwrap(),
        serde_json::from_value(commit["next_offsets"].clone()).unwrap(),
    ))
}

/// The checkpoint's plan and commit files, by name.
fn checkpoint_files(topic_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(topic_dir.join("_checkpoint/all"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// Metrics records `from..to` as payloads: `id` is the record's number, unique in the topic.
fn numbered_metrics(from: i64, to: i64) -> Vec<String> {
    (from..to)
        .map(|n| format!(r#"{{"id":{n},"val":{}.5,"time":{}}}"#, n, 1_767_225_600 + n))
        .collect()
}

/// Waits (at most 60 s) until `child`'s newest commit reaches `next` offsets, per partition.
async fn wait_for_commit(child: &mut Spawned, topic_dir: &Path, next: &[(&str, i64)]) -> u64 {
    let want: HashMap<String, i64> = next.iter().map(|(p, o)| (p.to_string(), *o)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((batch, offsets)) = newest_commit(topic_dir)
            && offsets == want
        {
            return batch;
        }
        assert!(child.is_running(), "consume ended: {}", child.log("err"));
        assert!(
            Instant::now() < deadline,
            "no commit reached {want:?}: newest {:?}",
            newest_commit(topic_dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `--trigger 0s` (continuous): a running consumer takes records produced after it started,
/// wave after wave, each once (pyarrow and DuckDB count them); while nothing arrives it plans
/// and commits no batch, so an idle consumer does not busy the disk with empty batches.
#[tokio::test(flavor = "multi_thread")]
async fn a_continuous_trigger_takes_new_records_once_and_commits_nothing_while_idle() {
    let topic = unique_topic("c-continuous");
    common::create_topic(&topic, 2);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &topic, "unused-workorder", "");
    let topic_dir = dir.path().join("out").join(&topic);
    let mut child = Spawned::start(&mut consume_cmd(
        dir.path(),
        &["--topics", &topic, "--trigger", "0s"],
    ));
    let produce = |from: i64, to: i64, partition: i32| {
        let payloads = numbered_metrics(from, to);
        let bytes: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        kcat_produce(&topic, partition, &bytes);
    };

    // The first wave arrives after the consumer started on the empty topic.
    produce(0, 200, 0);
    produce(200, 400, 1);
    let batch = wait_for_commit(&mut child, &topic_dir, &[("0", 200), ("1", 200)]).await;

    // Idle: the consumer keeps looking (every 20 ms), but plans and commits nothing.
    let files = checkpoint_files(&topic_dir);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(child.is_running(), "consume ended: {}", child.log("err"));
    assert_eq!(
        newest_commit(&topic_dir).unwrap().0,
        batch,
        "a batch committed while idle"
    );
    assert_eq!(
        checkpoint_files(&topic_dir),
        files,
        "the checkpoint changed while idle"
    );

    // A second wave after the pause is taken too.
    produce(400, 700, 0);
    produce(700, 750, 1);
    let last = wait_for_commit(&mut child, &topic_dir, &[("0", 500), ("1", 250)]).await;
    assert!(last > batch);
    send_signal(child.child.id(), "TERM");
    let (status, _, err) =
        tokio::task::spawn_blocking(move || child.finish(Duration::from_secs(20)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");

    let view = read_parquet(&topic_dir);
    let mut ids: Vec<i64> = view
        .rows
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..750).collect::<Vec<i64>>(),
        "every record exactly once"
    );
}

/// `run --trigger 0s`: the whole pipeline with continuous consumers writes every record once.
#[test]
fn run_with_a_continuous_trigger_writes_every_sample_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("r0-metrics");
    let workorder = unique_topic("r0-workorder");
    write_run_config(
        dir.path(),
        &repo().join("data_source"),
        &metrics,
        &workorder,
        "max_offsets_per_trigger = 0",
    );
    let out = run_with_timeout(
        &mut configured(
            dir.path(),
            "run",
            &["--until-drained", "--delay", "0.0001", "--trigger", "0s"],
        ),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let view = read_parquet(&dir.path().join("out").join(&metrics));
    assert_metrics_once(
        &view,
        &source_records(&repo().join("data_source/metrics.json")),
    );
    assert_eq!(
        read_parquet(&dir.path().join("out").join(&workorder))
            .rows
            .len(),
        576
    );
}
