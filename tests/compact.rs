//! `factorypal compact` on real Delta tables: one the real consumer wrote in many small commits
//! (records produced with kcat) and one the Python `deltalake` package wrote; compaction under a
//! running consumer; vacuum's retention and its 1-hour floor for untracked files; two compacts
//! racing. Every table is read back by the Python `deltalake` reader and by DuckDB
//! (`tests/delta_compact.py`), never by our own code.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{
    Spawned, bootstrap, factorypal, kcat_produce, python, run_with_timeout, send_signal, stderr,
    stdout, unique_topic,
};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(180);

/// Runs `tests/delta_compact.py COMMAND ARGS...` and parses its JSON (or returns its text).
fn py(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_compact.py");
    let out = run_with_timeout(
        std::process::Command::new(python()).arg(script).args(args),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "delta_compact.py {args:?}: {}",
        stderr(&out)
    );
    stdout(&out)
}

fn read(table: &Path) -> Value {
    serde_json::from_str(&py(&["read", table.to_str().unwrap()])).unwrap()
}

/// [`read`] of a table that a running compaction vacuums with a retention of 0 s: a reader
/// can pick a version whose files are deleted before it opens them (what a retention exists
/// to prevent), so a read that fails that way is `None`, to be tried again. delta-rs says
/// "not found"; DuckDB, reading the same version's files a moment later, "No files found".
fn read_while_vacuumed(table: &Path) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_compact.py");
    let out = run_with_timeout(
        std::process::Command::new(python())
            .arg(script)
            .args(["read", table.to_str().unwrap()]),
        LIMIT,
    );
    if !out.status.success() {
        let err = stderr(&out);
        assert!(
            err.contains("not found") || err.contains("No files found that match"),
            "delta_compact.py read: {err}"
        );
        return None;
    }
    Some(serde_json::from_str(&stdout(&out)).unwrap())
}

fn log(table: &Path) -> Vec<Value> {
    serde_json::from_str(&py(&["log", table.to_str().unwrap()])).unwrap()
}

/// `dir/c.toml`: the Delta sink into `dir/out`, `topic` with the metrics schema, partitioned by
/// the day of `time`.
fn write_config(dir: &Path, topic: &str) {
    std::fs::write(
        dir.join("c.toml"),
        format!(
            "[consumer]\noutput = \"out\"\nsink = \"delta\"\n\
             [consumer.topics.{topic}]\npartition_by_day = \"time\"\n\
             [consumer.topics.{topic}.schema]\nid = \"int32\"\nval = \"float64\"\ntime = \"timestamp\"\n"
        ),
    )
    .unwrap();
}

fn compact(dir: &Path, args: &[&str]) -> Output {
    run_with_timeout(
        factorypal(dir)
            .args(["--config", "c.toml", "compact"])
            .args(args),
        LIMIT,
    )
}

fn compact_ok(dir: &Path, args: &[&str]) -> String {
    let out = compact(dir, args);
    assert!(out.status.success(), "compact {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Records `first..first+count` of the metrics schema, spread over three UTC days.
fn records(first: u64, count: u64) -> Vec<String> {
    (first..first + count)
        .map(|i| {
            let day = 1_624_320_000 + (i % 3) * 86_400; // 2021-06-22 and the two days after
            format!(
                "{{\"id\": {i}, \"val\": {}, \"time\": {}.{:06}}}",
                i as f64 * 0.37 + 0.001,
                day + i,
                i % 1_000_000
            )
        })
        .collect()
}

fn produce(topic: &str, partition: i32, lines: &[String]) {
    let payloads: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    kcat_produce(topic, partition, &payloads);
}

fn create_topic(topic: &str, partitions: u32) {
    let out = run_with_timeout(
        factorypal(Path::new("."))
            .args(["--bootstrap", &bootstrap(), "admin", "create-topic"])
            .args([topic, "--partitions", &partitions.to_string()]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Bytes of the active files per `date` partition, from the files on disk.
fn bytes_per_date(table: &Path, report: &Value) -> BTreeMap<String, u64> {
    let mut bytes = BTreeMap::new();
    for path in report["file_paths"].as_array().unwrap() {
        let path = path.as_str().unwrap();
        let date = path
            .split('/')
            .next()
            .unwrap()
            .trim_start_matches("date=")
            .to_string();
        *bytes.entry(date).or_default() += std::fs::metadata(table.join(path)).unwrap().len();
    }
    bytes
}

/// Every file under the table except the log and the bad records, relative to it.
fn files_on_disk(table: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            if relative.starts_with("_delta_log") || relative.starts_with("_bad_records") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                found.insert(relative);
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(table, table, &mut found);
    found
}

fn active(report: &Value) -> BTreeSet<String> {
    report["file_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// Compacts `table` (of `topic` under `dir`) to `target` bytes and checks what both readers
/// see: the same rows and values, fewer files (about what the target size implies per
/// partition), and an OPTIMIZE commit with `dataChange = false` as the last write.
fn compact_and_check(dir: &Path, topic: &str, table: &Path, target: u64) {
    let before = read(table);
    assert_eq!(
        before["digest"], before["duckdb_digest"],
        "readers agree before"
    );
    let bytes = bytes_per_date(table, &before);

    let line = compact_ok(
        dir,
        &[
            "--topics",
            topic,
            "--target-file-size",
            &target.to_string(),
            "--vacuum-retention",
            "0s",
        ],
    );
    assert!(line.starts_with(&format!("{topic}: ")), "{line}");

    let after = read(table);
    for key in ["rows", "distinct_ids", "digest", "per_date"] {
        assert_eq!(after[key], before[key], "{key} changed by compact: {line}");
    }
    assert_eq!(
        after["duckdb_digest"], before["digest"],
        "DuckDB reads the same rows"
    );
    assert_eq!(after["duckdb_rows"], before["rows"]);
    for (date, bytes) in &bytes {
        let files_before = before["files_per_date"][date].as_u64().unwrap();
        let files_after = after["files_per_date"][date].as_u64().unwrap();
        let implied = bytes.div_ceil(target);
        assert!(
            files_after < files_before && files_after <= implied + 1,
            "{date}: {files_before} files ({bytes} bytes) became {files_after}, target {target} implies {implied}: {line}"
        );
    }
    let commits = log(table);
    let last_write = commits
        .iter()
        .rev()
        .find(|c| !c["operation"].as_str().unwrap().starts_with("VACUUM"))
        .unwrap();
    assert_eq!(last_write["operation"], "OPTIMIZE", "{commits:?}");
    assert_eq!(last_write["data_change"], serde_json::json!([false]));
    assert!(
        last_write["adds"].as_u64().unwrap() > 0 && last_write["removes"].as_u64().unwrap() > 0
    );
    // Vacuum at 0s: what remains on disk is exactly the active files.
    assert_eq!(files_on_disk(table), active(&after), "{line}");
}

#[test]
fn compacts_a_table_the_consumer_wrote_in_many_small_commits() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("compact-consumer");
    create_topic(&topic, 1);
    write_config(dir.path(), &topic);
    produce(&topic, 0, &records(0, 600));
    let out = run_with_timeout(
        factorypal(dir.path())
            .args(["--config", "c.toml", "--bootstrap", &bootstrap(), "consume"])
            .args(["--topics", &topic, "--trigger", "available-now"])
            .args(["--max-offsets-per-trigger", "10"]),
        LIMIT,
    );
    assert!(out.status.success(), "consume: {}", stderr(&out));
    let table = dir.path().join("out").join(&topic);
    let before = read(&table);
    assert_eq!(before["rows"], 600);
    assert!(before["files"].as_u64().unwrap() >= 150, "{before}");
    compact_and_check(dir.path(), &topic, &table, 16 * 1024);
}

#[test]
fn compacts_a_table_the_python_deltalake_package_wrote() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "pymetrics");
    let table = dir.path().join("out/pymetrics");
    py(&["make", table.to_str().unwrap(), "90", "20"]);
    compact_and_check(dir.path(), "pymetrics", &table, 12 * 1024);
    // Compacting again finds little or nothing more to do, and changes no row.
    let before = read(&table);
    compact_ok(
        dir.path(),
        &["--target-file-size", "12KiB", "--vacuum-retention", "0s"],
    );
    assert_eq!(read(&table)["digest"], before["digest"]);
}

#[test]
fn compact_while_the_consumer_appends_keeps_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("compact-live");
    create_topic(&topic, 2);
    write_config(dir.path(), &topic);
    let mut consumer = Spawned::start(
        factorypal(dir.path())
            .args(["--config", "c.toml", "--bootstrap", &bootstrap(), "consume"])
            .args(["--topics", &topic, "--trigger", "100ms"])
            .args(["--max-offsets-per-trigger", "20"]),
    );
    let table = dir.path().join("out").join(&topic);
    let (rounds, per_round) = (8u64, 150u64);
    let mut rewritten = 0;
    for round in 0..rounds {
        let lines = records(round * per_round, per_round);
        produce(&topic, (round % 2) as i32, &lines);
        std::thread::sleep(Duration::from_millis(300));
        if !table.join("_delta_log").exists() {
            continue;
        }
        // Small target and no retention: rewrites and vacuums while batches commit.
        let line = compact_ok(
            dir.path(),
            &[
                "--topics",
                &topic,
                "--target-file-size",
                "8KiB",
                "--vacuum-retention",
                "0s",
            ],
        );
        let count: usize = line
            .split("; ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no rewritten count in {line}"));
        rewritten += count;
        assert!(
            consumer.is_running(),
            "the consumer stopped: {}",
            consumer.log("err")
        );
    }
    let total = rounds * per_round;
    let deadline = Instant::now() + LIMIT;
    loop {
        let report = read(&table);
        if report["rows"].as_u64().unwrap() >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer did not catch up: {report}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let line = compact_ok(
        dir.path(),
        &["--topics", &topic, "--target-file-size", "8KiB"],
    );
    send_signal(consumer.child.id(), "TERM");
    let (status, _, err) = consumer.finish(LIMIT);
    assert!(status.success(), "the consumer failed: {err}");
    let report = read(&table);
    assert_eq!(report["rows"], total, "{report}");
    assert_eq!(
        report["distinct_ids"], total,
        "every record exactly once: {report}"
    );
    assert_eq!(report["duckdb_rows"], total);
    assert_eq!(report["duckdb_digest"], report["digest"]);
    assert!(
        rewritten > 0,
        "no compaction rewrote anything; last: {line}"
    );
}

#[test]
fn vacuum_deletes_removed_files_and_old_orphans_but_not_a_write_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "vacuumed");
    let table = dir.path().join("out/vacuumed");
    py(&["make", table.to_str().unwrap(), "30", "10"]);
    let all_before = files_on_disk(&table);

    // A long retention keeps the rewritten files on disk.
    let line = compact_ok(
        dir.path(),
        &["--target-file-size", "1MB", "--vacuum-retention", "1d"],
    );
    assert!(line.contains("0 files vacuumed"), "{line}");
    assert!(files_on_disk(&table).is_superset(&all_before));

    // 0s: the removed files go; nothing but the active files is left.
    let line = compact_ok(dir.path(), &["--vacuum-retention", "0s"]);
    let report = read(&table);
    assert_eq!(files_on_disk(&table), active(&report), "{line}");
    assert_eq!(report["rows"], 300);

    // An untracked file just written (a consumer's batch before its commit) survives even a
    // 0s retention; one two hours old (a crashed attempt's) is deleted.
    let in_flight = py(&["orphan", table.to_str().unwrap(), "0"])
        .trim()
        .to_string();
    let crashed = py(&["orphan", table.to_str().unwrap(), "7200"])
        .trim()
        .to_string();
    let line = compact_ok(dir.path(), &["--vacuum-retention", "0s"]);
    assert!(
        table.join(&in_flight).exists(),
        "the in-flight file was deleted: {line}"
    );
    assert!(
        !table.join(&crashed).exists(),
        "the old orphan was kept: {line}"
    );
    let after = read(&table);
    assert_eq!(after["digest"], report["digest"]);
    let mut expected = active(&after);
    expected.insert(in_flight);
    assert_eq!(files_on_disk(&table), expected);
}

#[test]
fn two_compacts_racing_never_duplicate_a_row() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "raced");
    let table = dir.path().join("out/raced");
    py(&["make", table.to_str().unwrap(), "240", "20"]);
    let before = read(&table);
    let start = |_| {
        Spawned::start(
            factorypal(dir.path())
                .args([
                    "--config",
                    "c.toml",
                    "compact",
                    "--target-file-size",
                    "16KiB",
                ])
                .args(["--vacuum-retention", "0s"]),
        )
    };
    let racers: Vec<Spawned> = (0..2).map(start).collect();
    let mut succeeded = 0;
    for racer in racers {
        let (status, out, err) = racer.finish(LIMIT);
        if status.success() {
            succeeded += 1;
        } else {
            assert_eq!(status.code(), Some(1), "{err}");
            assert!(
                err.contains("another compaction changed the files"),
                "{err}"
            );
            assert!(err.contains("run compact again"), "{err}");
        }
        eprintln!("racer: {status} {out} {err}");
    }
    assert!(succeeded >= 1);
    let after = read(&table);
    for key in ["rows", "distinct_ids", "digest"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(after["duckdb_digest"], before["digest"]);
}

#[test]
fn usage_errors_exit_2_and_a_topic_without_a_table_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "known");
    let out = compact(dir.path(), &["--topics", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"nope\" has no schema"),
        "{}",
        stderr(&out)
    );
    for (flag, value) in [("--target-file-size", "12XB"), ("--vacuum-retention", "7w")] {
        let out = compact(dir.path(), &[flag, value]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(value), "{}", stderr(&out));
    }
    let line = compact_ok(dir.path(), &[]);
    assert!(line.contains("known: no Delta table at"), "{line}");
}

#[test]
fn run_compacts_on_its_interval_while_the_pipeline_runs() {
    let data = common::sample_data(3000, 200);
    let dir = tempfile::tempdir().unwrap();
    let (metrics, workorder) = (unique_topic("compact-run-m"), unique_topic("compact-run-w"));
    common::write_run_config(
        dir.path(),
        data.path(),
        &metrics,
        &workorder,
        "sink = \"delta\"\ntrigger = \"200ms\"\nmax_offsets_per_trigger = 50\n\
         compact_interval = \"1s\"\ncompact_target_file_size = \"1MB\"\nvacuum_retention = \"0s\"",
    );
    let mut run = Spawned::start(factorypal(dir.path()).args([
        "--config",
        "c.toml",
        "--bootstrap",
        &bootstrap(),
        "run",
        "--delay",
        "0",
    ]));
    let table = dir.path().join("out").join(&metrics);
    let deadline = Instant::now() + LIMIT;
    loop {
        let optimized = table.join("_delta_log").exists()
            && log(&table).iter().any(|c| c["operation"] == "OPTIMIZE");
        if optimized && read_while_vacuumed(&table).is_some_and(|r| r["rows"] == 3000) {
            break;
        }
        assert!(run.is_running(), "run ended: {}", run.log("err"));
        assert!(
            Instant::now() < deadline,
            "no compaction seen: {}",
            run.log("err")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    send_signal(run.child.id(), "TERM");
    let (status, _, err) = run.finish(LIMIT);
    assert!(status.success(), "run failed: {err}");
    let report = read(&table);
    assert_eq!(report["rows"], 3000, "every record once: {report}");
    assert_eq!(report["duckdb_digest"], report["digest"]);
}
