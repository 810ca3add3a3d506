//! `factorypal run`, the whole pipeline in one process, against the real broker: where its
//! producers look for its API, and what a failure does to the rest of the run.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    bootstrap, configured, kcat_read, parquet_rows, run_with_timeout, sample_data, stderr, stdout,
    unique_topic, write_run_config,
};

/// Rewrites `dir/c.toml` with `from` replaced by `to`.
fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("c.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// The producers read the built-in API where it is bound, not at 127.0.0.1 whatever the bind:
/// an API on another loopback address, or on IPv6, is reached all the same.
#[test]
fn run_reaches_its_api_where_it_is_bound() {
    for bind in ["127.0.0.2:0", "[::1]:0"] {
        let data = sample_data(200, 20);
        let dir = tempfile::tempdir().unwrap();
        let metrics = unique_topic("rb-metrics");
        let workorder = unique_topic("rb-workorder");
        write_run_config(
            dir.path(),
            data.path(),
            &metrics,
            &workorder,
            "trigger = \"200ms\"",
        );
        edit_config(
            dir.path(),
            "bind = \"127.0.0.1:0\"",
            &format!("bind = \"{bind}\""),
        );
        let out = run_with_timeout(
            configured(dir.path(), "run", &["--until-drained", "--delay", "0"])
                // An API it cannot reach fails the run in seconds, not after two minutes.
                .env("FACTORYPAL__PRODUCER__RETRY_DEADLINE", "5"),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{bind}: {}", stderr(&out));
        // Read back by an independent client (kcat) and independent Parquet readers.
        assert_eq!(kcat_read(&bootstrap(), &metrics).len(), 200, "{bind}");
        assert_eq!(kcat_read(&bootstrap(), &workorder).len(), 20, "{bind}");
        let rows = parquet_rows(&dir.path().join("out").join(&metrics));
        assert_eq!(rows.len(), 200, "{bind}");
    }
}

/// Metrics in time order, `id` cycling through 0..20, with the record at `missing_id` lacking
/// its key field: a bad record for the producer.
fn metrics_with_a_bad_record(count: u64, missing_id: u64) -> String {
    let records: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            let time = 1_700_000_000 + i;
            if i == missing_id {
                serde_json::json!({"val": 1.5, "time": time})
            } else {
                serde_json::json!({"id": i % 20, "val": i as f64 / 4.0, "time": time})
            }
        })
        .collect();
    serde_json::to_string(&records).unwrap()
}

/// A source that fails stops the whole run at once: the other source stops long before its
/// stream ends, the consumers commit what they hold, the run exits 1 with the source's error,
/// and a later consume neither loses nor repeats a record.
#[test]
fn run_stops_when_a_source_fails_and_keeps_what_it_consumed() {
    // workorder streams for minutes (3000 records, 0.05 s apart); metrics fails at its 200th
    // record, about 10 s in, after the consumers have committed batches (every 300 ms).
    let data = sample_data(10, 3000);
    std::fs::write(
        data.path().join("metrics.json"),
        metrics_with_a_bad_record(300, 199),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("rs-metrics");
    let workorder = unique_topic("rs-workorder");
    write_run_config(
        dir.path(),
        data.path(),
        &metrics,
        &workorder,
        "trigger = \"300ms\"",
    );
    let out = run_with_timeout(
        configured(dir.path(), "run", &["--delay", "0.05"])
            .env("FACTORYPAL__PRODUCER__ON_BAD_RECORD", "fail"),
        Duration::from_secs(120),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let reported = err
        .lines()
        .rfind(|l| l.starts_with("error: "))
        .unwrap_or("");
    assert!(
        reported.contains("source metrics: bad record at source-offset 199"),
        "the source's failure is the one reported: {err}"
    );
    let produced: u64 = stdout(&out)
        .lines()
        .find_map(|l| {
            l.strip_prefix("workorder: ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no workorder summary in {}", stdout(&out)));
    assert!(
        produced < 3000,
        "the other source went on: {}",
        stdout(&out)
    );

    // What the consumers held when the run stopped is committed; the rest follows once.
    let topic_dir = dir.path().join("out").join(&metrics);
    let committed = parquet_rows(&topic_dir).len();
    assert!(committed > 0, "nothing was committed before the stop");
    let out = run_with_timeout(
        &mut configured(dir.path(), "consume", &["--trigger", "available-now"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let in_topic = kcat_read(&bootstrap(), &metrics);
    assert!(
        !in_topic.is_empty() && in_topic.len() <= 199,
        "records before the bad one: {}",
        in_topic.len()
    );
    let rows = parquet_rows(&topic_dir);
    assert_eq!(rows.len(), in_topic.len(), "each record once");
    let mut times: Vec<i64> = rows.iter().map(|r| r["time"].as_i64().unwrap()).collect();
    times.sort_unstable();
    times.dedup();
    assert_eq!(times.len(), in_topic.len(), "no record twice");
}
