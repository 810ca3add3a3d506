//! `partition_by_day` with the Parquet sink, end to end: payloads written to the real broker by
//! kcat, consumed by the real binary into `date=YYYY-MM-DD/` directories, read back by pyarrow
//! and DuckDB with Hive partitioning, and each row's day checked against the UTC date Python
//! computes from the payload's own time text (`tests/day_partitions.py`).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{
    configured, factorypal, kcat_produce, python, run_with_timeout, send_signal, stderr, stdout,
    unique_topic,
};
use serde_json::Value;

fn oracle(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/day_partitions.py");
    run_with_timeout(
        std::process::Command::new(python()).arg(script).args(args),
        Duration::from_secs(300),
    )
}

/// `COUNT` payloads from the oracle's generator, written to `dir/payloads.jsonl`.
fn payloads(dir: &Path, seed: u64, count: u64) -> Vec<String> {
    let path = dir.join("payloads.jsonl");
    let out = oracle(&[
        "gen",
        path.to_str().unwrap(),
        &seed.to_string(),
        &count.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// A new topic of `partitions` partitions holding `lines`, dealt round-robin by kcat.
fn topic_of(lines: &[String], partitions: i32) -> String {
    let topic = unique_topic("day");
    common::create_topic(&topic, partitions);
    for p in 0..partitions {
        let share: Vec<&[u8]> = lines
            .iter()
            .skip(p as usize)
            .step_by(partitions as usize)
            .map(|l| l.as_bytes())
            .collect();
        kcat_produce(&topic, p, &share);
    }
    topic
}

/// `dir/c.toml`: `topic` as `id`, `val`, `time`, partitioned by the day of `time`.
fn write_config(dir: &Path, topic: &str) {
    let text = format!(
        "[consumer]\noutput = \"out\"\n\
         [consumer.topics.{topic}]\npartition_by_day = \"time\"\n\
         [consumer.topics.{topic}.schema]\nid = \"int64\"\nval = \"float64\"\ntime = \"timestamp\"\n"
    );
    std::fs::write(dir.join("c.toml"), text).unwrap();
}

/// Runs the oracle's check on the topic's output and returns its summary.
fn check(dir: &Path, topic: &str) -> Value {
    let out = oracle(&[
        "check",
        dir.join("payloads.jsonl").to_str().unwrap(),
        dir.join("out").join(topic).to_str().unwrap(),
    ]);
    let summary: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|_| panic!("oracle: {} {}", stdout(&out), stderr(&out)));
    assert!(out.status.success(), "{summary}\n{}", stderr(&out));
    summary
}

#[test]
fn days_are_utc_dates_that_pyarrow_and_duckdb_read_as_hive_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let lines = payloads(dir.path(), 20261124, 3000);
    let topic = topic_of(&lines, 1);
    write_config(dir.path(), &topic);
    let out = run_with_timeout(
        &mut configured(
            dir.path(),
            "consume",
            &[
                "--topics",
                &topic,
                "--trigger",
                "available-now",
                "--max-offsets-per-trigger",
                "700",
                "--max-records-per-file",
                "150",
            ],
        ),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 bad records"), "{}", stdout(&out));

    let summary = check(dir.path(), &topic);
    eprintln!("{summary}");
    assert_eq!(summary["pyarrow"], 3000, "{summary}");
    let days: Vec<Option<&str>> = summary["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::as_str)
        .collect();
    for day in [
        Some("1969-12-31"),
        Some("2021-06-22"),
        Some("2021-06-23"),
        Some("2022-01-01"),
        Some("2024-03-01"),
        None,
    ] {
        assert!(days.contains(&day), "no rows on {day:?}: {summary}");
    }
    // Each chunk of at most 150 rows spans several days: a file per chunk per day, so more
    // files than chunks.
    assert!(summary["files"].as_u64().unwrap() > 3000 / 150, "{summary}");
    // The rows without a time are where Hive readers look for null partitions.
    let null_dir = dir
        .path()
        .join("out")
        .join(&topic)
        .join("date=__HIVE_DEFAULT_PARTITION__");
    assert!(null_dir.is_dir());
    // The checkpoint records where each file went, relative to the topic directory.
    let commit = std::fs::read_dir(dir.path().join("out").join(&topic).join("_checkpoint"))
        .unwrap()
        .flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("commit"))
        .expect("a commit file");
    let text = std::fs::read_to_string(&commit).unwrap();
    assert!(text.contains("date=2021-06-2"), "{text}");
}

/// Enough kills to land in every phase of a batch many times; bounded so a slow machine still
/// gets to the last run.
const MAX_KILLS: u32 = 20;

#[test]
fn sigkills_and_a_rerun_leave_every_record_once_in_its_day() {
    let dir = tempfile::tempdir().unwrap();
    let count = 60_000;
    let lines = payloads(dir.path(), 99, count);
    let topic = topic_of(&lines, 3);
    write_config(dir.path(), &topic);
    let args = [
        "--topics",
        topic.as_str(),
        "--trigger",
        "available-now",
        // Small batches, so that a run outlives several kills: since issue 14 the consumer
        // reads this topic in well under a second.
        "--max-offsets-per-trigger",
        "500",
        "--max-records-per-file",
        "300",
    ];
    // Kill at pseudo-random moments (fixed seed: a failure can be replayed).
    let mut seed: u64 = 0xda7e;
    let mut kills = 0;
    let started = Instant::now();
    loop {
        let mut child = configured(dir.path(), "consume", &args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 600));
        // Finished before this kill, or killed enough: the last run completes it.
        if child.try_wait().unwrap().is_some() || kills == MAX_KILLS {
            let _ = child.kill();
            child.wait().unwrap();
            break;
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
        kills >= 3,
        "only {kills} kills landed; the run is too fast for this test"
    );
    let out = run_with_timeout(
        &mut configured(dir.path(), "consume", &args),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = check(dir.path(), &topic);
    assert_eq!(summary["duckdb"], count, "{summary}");
    eprintln!("{kills} SIGKILLs; every record once, each on its day: {summary}");
}

#[test]
fn files_in_day_directories_count_for_the_start_up_check_and_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let lines = payloads(dir.path(), 5, 2000);
    let topic = topic_of(&lines, 1);
    write_config(dir.path(), &topic);
    let run = |per_trigger: &str, extra: &[&str]| {
        let mut args = vec![
            "--topics",
            &topic,
            "--trigger",
            "available-now",
            "--max-offsets-per-trigger",
            per_trigger,
        ];
        args.extend(extra);
        run_with_timeout(
            &mut configured(dir.path(), "consume", &args),
            Duration::from_secs(180),
        )
    };
    let out = run("500", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    check(dir.path(), &topic);

    // The checkpoint moved away: the files in the day directories are unaccounted for.
    let topic_dir = dir.path().join("out").join(&topic);
    std::fs::rename(topic_dir.join("_checkpoint"), dir.path().join("moved")).unwrap();
    let out = run("700", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // The message names the topic directory (as given: relative), not one day's.
    let holds = format!("out/{topic} holds");
    for part in [
        holds.as_str(),
        "does not account for",
        "/date=",
        "--overwrite",
    ] {
        assert!(err.contains(part), "{part:?} missing: {err}");
    }
    // --overwrite deletes them from every day directory and starts over: each record once.
    let out = run("700", &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = check(dir.path(), &topic);
    assert_eq!(summary["pyarrow"], 2000, "{summary}");
}

/// A config whose one topic has `schema` and `partition_by_day = "{column}"`.
fn bad_config(dir: &Path, schema: &str, column: &str) {
    let text = format!(
        "[consumer]\noutput = \"out\"\n\
         [consumer.topics.plant]\npartition_by_day = \"{column}\"\n\
         [consumer.topics.plant.schema]\n{schema}\n"
    );
    std::fs::write(dir.join("c.toml"), text).unwrap();
}

#[test]
fn a_bad_partition_by_day_is_a_usage_error_before_any_network_call() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: a network call would fail otherwise, and later.
    let consume = |dir: &Path| {
        run_with_timeout(
            factorypal(dir).args([
                "--config",
                "c.toml",
                "--bootstrap",
                "127.0.0.1:1",
                "consume",
                "--trigger",
                "available-now",
            ]),
            Duration::from_secs(30),
        )
    };
    let cases = [
        (
            "id = \"int64\"\ntime = \"timestamp\"",
            "when",
            &["has no column \"when\"", "time (timestamp)"][..],
        ),
        (
            "id = \"int64\"\ntime = \"timestamp\"",
            "id",
            &["column \"id\"", "is int64, not a timestamp"][..],
        ),
        (
            "time = \"timestamp\"\ndate = \"string\"",
            "time",
            &["a column named `date`", "rename that column"][..],
        ),
    ];
    for (schema, column, wanted) in cases {
        bad_config(dir.path(), schema, column);
        let out = consume(dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{schema} / {column}: {err}");
        assert!(
            err.contains("consumer.topics.plant.partition_by_day")
                && err.contains("config file c.toml"),
            "{err}"
        );
        for w in wanted {
            assert!(err.contains(w), "{w:?} not in {err}");
        }
        assert!(!dir.path().join("out").exists(), "nothing written");
    }
    // The environment sets it like any other key, and a bad value names the variable.
    bad_config(dir.path(), "id = \"int64\"\ntime = \"timestamp\"", "time");
    let out = run_with_timeout(
        factorypal(dir.path())
            .env(
                "FACTORYPAL__CONSUMER__TOPICS__plant__PARTITION_BY_DAY",
                "id",
            )
            .args(["--config", "c.toml", "config", "show"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("environment variable FACTORYPAL__CONSUMER__TOPICS__PLANT__PARTITION_BY_DAY"),
        "{}",
        stderr(&out)
    );
    let out = run_with_timeout(
        factorypal(dir.path()).args(["--config", "c.toml", "config", "show"]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("partition_by_day = \"time\""),
        "{}",
        stdout(&out)
    );
}
