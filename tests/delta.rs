//! `consume --sink delta` and `run` with Delta Lake tables, on local disk and on S3 (the
//! s3proxy `scripts/test.sh` starts). The judges are independent: the Python `deltalake`
//! package and DuckDB's delta extension read the tables (`tests/delta_read.py`, which checks
//! they agree), and `tests/delta_oracle.py` compares the rows with the payloads written to
//! Kafka by kcat, parsed by Python's `json`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Spawned, bootstrap, delta_poller, factorypal, kcat_produce, python, read_delta,
    read_delta_text, run_with_timeout, s3_env, s3_test_url, send_signal, stderr, stdout,
    unique_topic,
};

/// `metrics` payloads with ids `from..to`: floats with 17 significant digits and exponents
/// from -20 to 19 (hard to round), times as fractional unix seconds or RFC 3339 text with a
/// non-UTC offset, spread over several UTC days and crossing midnight in both forms.
fn payloads(from: u64, to: u64) -> Vec<String> {
    (from..to)
        .map(|i| {
            let val = format!(
                "{}.{:017}e{}",
                i % 997,
                (i * 7_919_000_003) % 100_000_000_000_000_000,
                (i % 40) as i64 - 20
            );
            // 2021-06-21T22:00:00Z plus 37 s per record: midnight comes after ~195 ids.
            let seconds = 1_624_312_800 + i * 37;
            let time = if i % 3 == 0 {
                let local = chrono_like_rfc3339(seconds as i64 - 2 * 3600);
                format!("\"{local}-02:00\"")
            } else {
                format!("{seconds}.25")
            };
            format!(r#"{{"id": {i}, "val": {val}, "time": {time}}}"#)
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS` of unix seconds, by civil-from-days arithmetic (the test's own, so
/// it shares nothing with the consumer's parser; Python's `datetime` judges the result).
fn chrono_like_rfc3339(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Bad payloads mixed into a topic: none of them may reach the table.
const BAD: [&str; 3] = [
    "not json",
    r#"{"id": "seven", "val": 1, "time": 0}"#,
    r#"{"id": 1e400, "val": 1, "time": 0}"#,
];

/// A topic with `partitions` partitions holding `records` good payloads (spread over the
/// partitions) and [`BAD`]; the payloads are also written to `dir/payloads.jsonl` for the
/// oracle.
fn metrics_topic(dir: &Path, partitions: i32, records: u64) -> String {
    let topic = unique_topic("delta");
    common::create_topic(&topic, partitions);
    let mut all: Vec<String> = payloads(0, records);
    all.extend(BAD.iter().map(|b| b.to_string()));
    let per = all.len().div_ceil(partitions as usize);
    for (p, chunk) in all.chunks(per).enumerate() {
        let bytes: Vec<&[u8]> = chunk.iter().map(|s| s.as_bytes()).collect();
        kcat_produce(&topic, p as i32, &bytes);
    }
    std::fs::write(dir.join("payloads.jsonl"), all.join("\n")).unwrap();
    topic
}

/// Where the tables go: a directory, or a fresh prefix in the s3proxy bucket.
#[derive(Clone)]
struct Lake {
    output: String,
    /// The environment for S3 (endpoint, credentials), empty for local disk.
    env: Vec<(String, String)>,
}

impl Lake {
    fn local(dir: &Path) -> Self {
        Self {
            output: dir.join("lake").display().to_string(),
            env: Vec::new(),
        }
    }

    /// `None` when the suite runs without s3proxy (then the S3 tests say so and pass).
    fn s3(name: &str) -> Option<Self> {
        Some(Self {
            output: s3_test_url(name)?,
            env: s3_env()?,
        })
    }

    fn table(&self, topic: &str) -> String {
        format!("{}/{topic}", self.output)
    }

    fn command(&self, dir: &Path, subcommand: &str, args: &[&str]) -> Command {
        let mut cmd = factorypal(dir);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .args([
                "--config",
                "c.toml",
                "--bootstrap",
                &bootstrap(),
                subcommand,
            ])
            .args(args);
        cmd
    }

    fn consume(&self, dir: &Path, topic: &str, args: &[&str]) -> std::process::Output {
        run_with_timeout(
            self.command(dir, "consume", &["--sink", "delta", "--topics", topic])
                .args(["--output", &self.output])
                .args(args),
            Duration::from_secs(300),
        )
    }
}

/// `dir/c.toml` for a `metrics`-shaped topic, partitioned by day or not.
fn write_config(dir: &Path, topic: &str, by_day: bool, consumer_extra: &str) {
    let day = if by_day {
        "partition_by_day = \"time\"\n"
    } else {
        ""
    };
    let text = format!(
        "[consumer]\ntrigger = \"available-now\"\n{consumer_extra}\n\
         [consumer.topics.{topic}]\n{day}\
         [consumer.topics.{topic}.schema]\nid = \"int32\"\nval = \"float64\"\ntime = \"timestamp\"\n"
    );
    std::fs::write(dir.join("c.toml"), text).unwrap();
}

/// Has `tests/delta_oracle.py` judge the table against `dir/payloads.jsonl`; returns its
/// summary.
fn assert_exactly_once(dir: &Path, lake: &Lake, topic: &str, by_day: bool) -> serde_json::Value {
    let text = read_delta_text(&lake.table(topic));
    let read: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = dir.join("rows.json");
    std::fs::write(&rows, text).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_oracle.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(dir.join("payloads.jsonl")).arg(&rows);
    if by_day {
        cmd.arg("--day-partitioned");
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{topic}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut report = read;
    report["oracle"] = summary;
    report
}

/// The table as the independent readers see it (`read_delta` brings the s3proxy's settings
/// itself).
fn read_delta_in(_lake: &Lake, table: &str) -> serde_json::Value {
    read_delta(table)
}

fn exactly_once_with_bad_records_kept(lake: Lake) {
    let dir = tempfile::tempdir().unwrap();
    let topic = metrics_topic(dir.path(), 3, 2_000);
    write_config(dir.path(), &topic, true, "max_offsets_per_trigger = 300");
    let out = lake.consume(dir.path(), &topic, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = assert_exactly_once(dir.path(), &lake, &topic, true);
    assert_eq!(report["partition_columns"], serde_json::json!(["date"]));
    let version = report["version"].clone();

    // Bad records are kept beside the table, each once, payload exact.
    let kept = bad_records(&lake, &topic);
    let mut payloads: Vec<&str> = kept
        .iter()
        .map(|b| b["payload"].as_str().unwrap())
        .collect();
    payloads.sort_unstable();
    let mut want = BAD.to_vec();
    want.sort_unstable();
    assert_eq!(payloads, want, "{kept:?}");

    // A rerun finds nothing new: no commit, the same rows.
    let out = lake.consume(dir.path(), &topic, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = read_delta_in(&lake, &lake.table(&topic));
    assert_eq!(again["version"], version);
}

/// The `_bad_records/*.jsonl` entries beside a table (read with Python for S3).
fn bad_records(lake: &Lake, topic: &str) -> Vec<serde_json::Value> {
    let script = "import sys, json, os\n\
                  from pyarrow import fs\n\
                  uri = sys.argv[1]\n\
                  if uri.startswith('s3://'):\n\
                  \x20   f = fs.S3FileSystem(endpoint_override=os.environ['FACTORYPAL__STORAGE__ENDPOINT'], scheme='http', region='us-east-1')\n\
                  \x20   path = uri[5:]\n\
                  else:\n\
                  \x20   f, path = fs.LocalFileSystem(), uri\n\
                  out = []\n\
                  for info in f.get_file_info(fs.FileSelector(path + '/_bad_records', allow_not_found=True)):\n\
                  \x20   with f.open_input_stream(info.path) as s:\n\
                  \x20       out += [json.loads(l) for l in s.read().decode().splitlines() if l]\n\
                  print(json.dumps(out))";
    let out = run_with_timeout(
        Command::new(python())
            .envs(lake.env.iter().map(|(k, v)| (k, v)))
            .args(["-c", script, &lake.table(topic)]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn every_record_lands_once_with_exact_values_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    exactly_once_with_bad_records_kept(Lake::local(dir.path()));
}

#[test]
fn every_record_lands_once_with_exact_values_on_s3() {
    let Some(lake) = Lake::s3("exact") else {
        eprintln!("no s3proxy (FACTORYPAL_TEST_S3_ENV unset): skipped");
        return;
    };
    exactly_once_with_bad_records_kept(lake);
}

/// A consumer SIGKILLed `kills` times at random moments over a 200,000-record topic while a
/// reader polls the table: the reader never sees a duplicate or a row taken back, and after
/// a last run every record is there once.
fn survives_sigkills(lake: Lake, kills: usize) {
    let dir = tempfile::tempdir().unwrap();
    let topic = metrics_topic(dir.path(), 3, 200_000);
    write_config(dir.path(), &topic, true, "max_offsets_per_trigger = 4000");
    // The poller waits for the table the first consumer creates.
    let summary = dir.path().join("poll.json");
    let poller = delta_poller(&lake.table(&topic), 900, &summary, &["id"]);
    let mut killed = 0;
    let started = Instant::now();
    while killed < kills && started.elapsed() < Duration::from_secs(600) {
        let mut consumer = Spawned::start(
            lake.command(
                dir.path(),
                "consume",
                &["--sink", "delta", "--topics", &topic],
            )
            .args(["--output", &lake.output, "--trigger", "100ms"]),
        );
        std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..1500)));
        if !consumer.is_running() {
            let (status, _, err) = consumer.finish(Duration::from_secs(5));
            panic!("consumer ended on its own ({status}): {err}");
        }
        consumer.kill();
        killed += 1;
    }
    assert!(killed >= kills, "only {killed} kills in time");
    let out = lake.consume(dir.path(), &topic, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, err) = stop_poller(poller);
    let polled: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    if let Some(status) = status {
        assert!(
            status.success(),
            "the poller saw a violation: {err} {polled}"
        );
    }
    assert_eq!(polled["violations"], serde_json::json!([]), "{polled}");
    let versions = polled["versions"].as_array().map_or(0, Vec::len);
    assert!(
        versions >= 10 && polled["max_rows"].as_u64().unwrap() > 0,
        "the poller saw too little to mean anything: {polled}"
    );
    eprintln!(
        "{killed} kills; the poller checked {versions} versions, up to {} rows",
        polled["max_rows"]
    );
    assert_exactly_once(dir.path(), &lake, &topic, true);
}

/// Asks the poller to stop (SIGTERM) and waits a minute: its exit status, or `None` when it
/// had to be killed. A poller inside a long read of the `deltalake` package only sees the
/// signal when the read returns; its summary file (rewritten after every version it checked)
/// holds what it found either way.
fn stop_poller(mut poller: Spawned) -> (Option<std::process::ExitStatus>, String) {
    send_signal(poller.child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    while poller.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if poller.is_running() {
        eprintln!("the poller did not stop within 60 s of SIGTERM; killed, its summary stands");
        poller.kill();
        return (None, poller.log("err"));
    }
    let status = poller.child.wait().unwrap();
    (Some(status), poller.log("err"))
}

#[test]
fn sigkills_at_random_moments_lose_and_repeat_nothing_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    survives_sigkills(Lake::local(dir.path()), 10);
}

#[test]
fn sigkills_at_random_moments_lose_and_repeat_nothing_on_s3() {
    let Some(lake) = Lake::s3("kills") else {
        eprintln!("no s3proxy (FACTORYPAL_TEST_S3_ENV unset): skipped");
        return;
    };
    survives_sigkills(lake, 10);
}

#[test]
fn two_instances_append_to_one_table_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path());
    let topic = metrics_topic(dir.path(), 4, 20_000);
    write_config(dir.path(), &topic, false, "max_offsets_per_trigger = 500");
    let start = |instance: &str| {
        Spawned::start(
            lake.command(
                dir.path(),
                "consume",
                &["--sink", "delta", "--topics", &topic],
            )
            .args(["--output", &lake.output, "--instance", instance]),
        )
    };
    let (first, second) = (start("0/2"), start("1/2"));
    for consumer in [first, second] {
        let (status, _, err) = consumer.finish(Duration::from_secs(300));
        assert!(status.success(), "{err}");
    }
    let report = assert_exactly_once(dir.path(), &lake, &topic, false);
    assert!(
        report["version"].as_u64().unwrap() > 20,
        "{}",
        report["version"]
    );
}

#[test]
fn a_second_writer_of_the_same_partitions_fails_without_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path());
    let topic = metrics_topic(dir.path(), 1, 20_000);
    write_config(dir.path(), &topic, false, "max_offsets_per_trigger = 200");
    let start = || {
        Spawned::start(
            lake.command(
                dir.path(),
                "consume",
                &["--sink", "delta", "--topics", &topic],
            )
            .args(["--output", &lake.output]),
        )
    };
    // Both start from an empty table; at most one can commit each batch.
    let (first, second) = (start(), start());
    let results: Vec<_> = [first, second]
        .into_iter()
        .map(|c| c.finish(Duration::from_secs(300)))
        .collect();
    for (status, _, err) in &results {
        if !status.success() {
            assert!(
                err.contains("another consumer") || err.contains("concurrent"),
                "a failure that does not say why: {err}"
            );
        }
    }
    // Whatever either committed, a last run completes the table with nothing twice.
    let out = lake.consume(dir.path(), &topic, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_exactly_once(dir.path(), &lake, &topic, false);
}

#[test]
fn overwrite_starts_the_table_over() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path());
    let topic = metrics_topic(dir.path(), 2, 1_000);
    write_config(dir.path(), &topic, false, "max_offsets_per_trigger = 0");
    let out = lake.consume(dir.path(), &topic, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lake.consume(dir.path(), &topic, &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = assert_exactly_once(dir.path(), &lake, &topic, false);
    assert_eq!(
        report["version"],
        serde_json::json!(1),
        "one create, one batch"
    );

    // One instance may not delete the table the others share.
    let out = lake.consume(dir.path(), &topic, &["--overwrite", "--instance", "0/2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("other instances share"),
        "{}",
        stderr(&out)
    );
    assert_exactly_once(dir.path(), &lake, &topic, false);
}

#[test]
fn object_storage_output_needs_the_delta_sink() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "metrics", false, "");
    let out = run_with_timeout(
        factorypal(dir.path())
            .args([
                "--config",
                "c.toml",
                "--bootstrap",
                "127.0.0.1:1",
                "consume",
            ])
            .args(["--sink", "parquet", "--output", "s3://bucket/prefix"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("consumer.sink = \"delta\""),
        "{}",
        stderr(&out)
    );
}

/// `run --sink delta` writes both sample streams as Delta tables on S3, every record once
/// (as the two readers count them), the metrics table partitioned by day.
#[test]
fn run_writes_delta_tables_on_s3() {
    let Some(lake) = Lake::s3("run") else {
        eprintln!("no s3proxy (FACTORYPAL_TEST_S3_ENV unset): skipped");
        return;
    };
    let data = common::sample_data(500, 50);
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("dr-metrics");
    let workorder = unique_topic("dr-workorder");
    common::write_run_config(
        dir.path(),
        data.path(),
        &metrics,
        &workorder,
        "trigger = \"300ms\"",
    );
    let config = dir.path().join("c.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("[consumer.topics.{metrics}.schema]"),
        &format!("[consumer.topics.{metrics}]\npartition_by_day = \"time\"\n[consumer.topics.{metrics}.schema]"),
    );
    std::fs::write(&config, text).unwrap();
    let out = run_with_timeout(
        lake.command(dir.path(), "run", &["--until-drained", "--delay", "0"])
            .args(["--sink", "delta", "--output", &lake.output]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |topic: &str| read_delta_in(&lake, &lake.table(topic));
    let (m, w) = (read(&metrics), read(&workorder));
    assert_eq!(m["rows"].as_array().unwrap().len(), 500);
    assert_eq!(w["rows"].as_array().unwrap().len(), 50);
    assert_eq!(m["partition_columns"], serde_json::json!(["date"]));

    // compact works on S3 too (with the default sink setting: it only needs the output),
    // leaving every row as it was.
    let out = run_with_timeout(
        lake.command(dir.path(), "compact", &["--output", &lake.output])
            .args(["--vacuum-retention", "0s"]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sorted = |v: &serde_json::Value| {
        let mut rows: Vec<String> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        rows.sort();
        rows
    };
    let compacted = read(&metrics);
    assert_eq!(sorted(&compacted), sorted(&m));
    assert!(
        compacted["files"].as_u64() <= m["files"].as_u64(),
        "{} -> {}",
        m["files"],
        compacted["files"]
    );
}
