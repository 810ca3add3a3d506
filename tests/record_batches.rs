//! factorypal reads Kafka's record batches itself (`src/kafka/records.rs`), so it must read
//! what other clients write: every codec as librdkafka (confluent_kafka) writes it, snappy in
//! the Java client's framing, and transactions, committed and aborted. Each topic is consumed
//! to Parquet by the real binary and checked by `tests/foreign_batches.py`, which compares the
//! rows pyarrow reads with the payloads as Python's `json` reads them.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    bootstrap, configured, create_topic, python, run_with_timeout, stderr, stdout, unique_topic,
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/foreign_batches.py");

/// `n` metrics payloads whose values take every digit a float64 has (the kind a parser gets
/// wrong), one per line.
fn payloads(n: u32) -> String {
    (0..n)
        .map(|i| {
            let val = f64::from(i) * 1.000_000_1 + 0.1;
            format!(
                "{{\"id\":{i},\"val\":{val:.17},\"time\":{}}}\n",
                1_700_000_000 + i
            )
        })
        .collect()
}

/// Runs `command` with `input` on its stdin; returns its stdout after checking it succeeded.
fn run_with_input(command: &mut Command, input: &str) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(input.as_bytes()).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    stdout(&out)
}

/// Consumes `topic` to Parquet under `dir/out` and has Python check it against `payloads`
/// (only the ids in `ids`, if given).
fn consume_and_check(dir: &Path, topic: &str, payloads: &str, ids: Option<&str>) {
    std::fs::write(
        dir.join("c.toml"),
        format!(
            "[consumer]\noutput = \"out\"\n[consumer.topics.{topic}.schema]\n\
             id = \"int32\"\nval = \"float64\"\ntime = \"timestamp\"\n"
        ),
    )
    .unwrap();
    let args = ["--topics", topic, "--trigger", "available-now"];
    let out = run_with_timeout(
        &mut configured(dir, "consume", &args),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{topic}: {}", stderr(&out));
    let payloads_file = dir.join(format!("{topic}.ndjson"));
    std::fs::write(&payloads_file, payloads).unwrap();
    let mut check = Command::new(python());
    check
        .arg(SCRIPT)
        .arg("check")
        .arg(&payloads_file)
        .arg(dir.join("out").join(topic));
    if let Some(ids) = ids {
        let ids_file = dir.join(format!("{topic}.ids"));
        std::fs::write(&ids_file, ids).unwrap();
        check.arg(ids_file);
    }
    let out = run_with_timeout(&mut check, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{topic}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn every_codec_librdkafka_writes_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = payloads(20_000);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_topic(&format!("codec-{codec}"));
        create_topic(&topic, 1);
        let sent = run_with_input(
            Command::new(python())
                .arg(SCRIPT)
                .args(["produce", &bootstrap(), &topic, codec]),
            &payloads,
        );
        assert_eq!(sent.trim(), "20000", "{codec}");
        consume_and_check(dir.path(), &topic, &payloads, None);
    }
}

#[test]
fn snappy_in_the_java_clients_framing_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = payloads(5_000);
    let topic = unique_topic("codec-java-snappy");
    create_topic(&topic, 1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let classpath = run_with_timeout(
        Command::new("bash")
            .arg(root.join("scripts/kafka-local.sh"))
            .arg("tools-classpath"),
        Duration::from_secs(300),
    );
    assert!(classpath.status.success(), "{}", stderr(&classpath));
    run_with_input(
        Command::new("java")
            .arg("-cp")
            .arg(stdout(&classpath).trim())
            .arg("org.apache.kafka.tools.ConsoleProducer")
            .args(["--bootstrap-server", &bootstrap(), "--topic", &topic])
            .args(["--compression-codec", "snappy"])
            .args(["--producer-property", "linger.ms=50"])
            .args(["--producer-property", "batch.size=1000000"]),
        &payloads,
    );
    consume_and_check(dir.path(), &topic, &payloads, None);
}

#[test]
fn aborted_transactions_are_left_out_and_committed_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("transactions");
    create_topic(&topic, 1);
    let ids = run_with_input(
        Command::new(python())
            .arg(SCRIPT)
            .args(["transactions", &bootstrap(), &topic, "300"]),
        "",
    );
    assert_eq!(ids.lines().count(), 1200, "2 × (300 committed + 300 plain)");
    // Every record the script sent (aborted ones too), as the consumer must not write them all.
    let all: String = (0..1800)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"val\":{},\"time\":{}}}\n",
                f64::from(i) / 8.0,
                1_700_000_000 + i
            )
        })
        .collect();
    consume_and_check(dir.path(), &topic, &all, Some(&ids));
}
