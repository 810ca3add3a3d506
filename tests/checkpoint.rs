//! The consumer's checkpoint against hostile-but-plausible operations: two consumers on one
//! output, a checkpoint moved away, a checkpoint that cannot be written for a while, a topic
//! deleted and re-created under it. Rows are read back by pyarrow; records written by kcat.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{
    Spawned, bootstrap, configured, factorypal, kcat_produce, python, raw_topic, run_with_timeout,
    stderr, stdout, unique_topic, write_config,
};

/// Metrics payloads with ids `from..to` (the id is also the time, so rows are tellable apart).
fn payloads(from: u64, to: u64) -> Vec<String> {
    (from..to)
        .map(|i| format!(r#"{{"id": {i}, "val": 0.5, "time": {i}}}"#))
        .collect()
}

fn topic_of(from: u64, to: u64) -> String {
    let lines = payloads(from, to);
    raw_topic(&lines.iter().map(String::as_str).collect::<Vec<_>>())
}

fn consume(dir: &Path, args: &[&str]) -> Output {
    run_with_timeout(
        &mut configured(dir, "consume", args),
        Duration::from_secs(180),
    )
}

/// Every `id` pyarrow reads in a topic's output, sorted.
fn ids(topic_dir: &Path) -> Vec<i64> {
    let script = "import sys, json, pyarrow.dataset as ds\n\
                  t = ds.dataset(sys.argv[1], format='parquet').to_table()\n\
                  print(json.dumps(sorted(t.column('id').to_pylist())))";
    let out = run_with_timeout(
        std::process::Command::new(python())
            .args(["-c", script])
            .arg(topic_dir),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn range(from: i64, to: i64) -> Vec<i64> {
    (from..to).collect()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_consumer_of_a_checkpoint_exits_at_once_naming_the_first() {
    let topic = topic_of(0, 3000);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &topic, "unused-workorder", "");
    let mut first = Spawned::start(&mut configured(
        dir.path(),
        "consume",
        &[
            "--topics",
            &topic,
            "--trigger",
            "1s",
            "--max-offsets-per-trigger",
            "100",
        ],
    ));
    let pid = first.child.id();
    let lock = dir
        .path()
        .join("out")
        .join(&topic)
        .join("_checkpoint/all/lock");
    wait_for("the first consumer's lock", Duration::from_secs(30), || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t == pid.to_string())
    });

    // Another batch size, as in the reproduced corruption; then an overlapping partition
    // selection with its own checkpoint.
    // Another checkpoint for the same output is caught by the output's partition lock.
    for args in [
        &["--max-offsets-per-trigger", "70"][..],
        &["--partitions", "0"][..],
        &["--checkpoint", "elsewhere"][..],
    ] {
        let mut all = vec!["--topics", topic.as_str(), "--trigger", "available-now"];
        all.extend(args);
        let out = consume(dir.path(), &all);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("PID {pid}")), "{args:?}: {err}");
        assert!(err.contains("in use by another consumer"), "{err}");
        assert!(first.is_running(), "the first consumer keeps going");
    }
    let err = stderr(&consume(
        dir.path(),
        &["--topics", &topic, "--trigger", "available-now"],
    ));
    let lock_name = format!("out/{topic}/_checkpoint/all/lock");
    assert!(err.contains(&lock_name), "{err}");
    assert_eq!(
        err.matches("in use by another consumer").count(),
        1,
        "said once: {err}"
    );

    common::send_signal(pid, "TERM");
    let (status, _, err) = first.finish(Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let out = consume(
        dir.path(),
        &["--topics", &topic, "--trigger", "available-now"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&dir.path().join("out").join(&topic)), range(0, 3000));
}

#[test]
fn a_repeated_topic_and_reordered_partitions_are_one_consumer() {
    let topic = unique_topic("c-identity");
    common::create_topic(&topic, 2);
    for (partition, (from, to)) in [(0, (0, 500)), (1, (500, 1000))] {
        let lines = payloads(from, to);
        let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        kcat_produce(&topic, partition, &bytes);
    }
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &topic, "unused-workorder", "");
    let twice = format!("{topic},{topic}");
    let out = consume(
        dir.path(),
        &[
            "--topics",
            &twice,
            "--partitions",
            "1,0",
            "--trigger",
            "available-now",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = consume(
        dir.path(),
        &[
            "--topics",
            &topic,
            "--partitions",
            "0,1",
            "--trigger",
            "available-now",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(": 0 rows"), "{}", stdout(&out));
    let topic_dir = dir.path().join("out").join(&topic);
    assert_eq!(ids(&topic_dir), range(0, 1000));
    let checkpoints: Vec<String> = std::fs::read_dir(topic_dir.join("_checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(checkpoints, ["p0-1"]);
}

#[test]
fn output_its_checkpoint_does_not_account_for_is_refused_until_overwritten() {
    let topic = topic_of(0, 3000);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &topic, "unused-workorder", "");
    let batches = |n: &'static str| {
        [
            "--topics",
            &topic,
            "--trigger",
            "available-now",
            "--max-offsets-per-trigger",
            n,
        ]
        .map(String::from)
    };
    let run = |args: &[String]| {
        consume(
            dir.path(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let out = run(&batches("500"));
    assert!(out.status.success(), "{}", stderr(&out));
    let topic_dir = dir.path().join("out").join(&topic);
    let files = |dir: &Path| -> Vec<PathBuf> {
        let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        f.sort();
        f
    };
    let before = files(&topic_dir);
    assert_eq!(before.len(), 6);

    // The checkpoint moved away (as a damaged-checkpoint message once advised), and
    // another batch size: before, this deleted committed files and duplicated others.
    std::fs::rename(topic_dir.join("_checkpoint"), dir.path().join("moved")).unwrap();
    let out = run(&batches("700"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for part in [
        "does not account for",
        "no checkpoint",
        "--overwrite",
        "--output",
        "6 data file",
    ] {
        assert!(err.contains(part), "{part:?} missing: {err}");
    }
    // Pointed elsewhere: the same.
    let mut elsewhere = batches("700").to_vec();
    elsewhere.extend(["--checkpoint".to_string(), "elsewhere".to_string()]);
    assert_eq!(run(&elsewhere).status.code(), Some(1));
    assert_eq!(files(&topic_dir), before, "nothing was deleted or added");
    assert_eq!(ids(&topic_dir), range(0, 3000));

    // An older checkpoint restored: batches past its end are not its own to replay.
    let restored = topic_dir.join("_checkpoint/all");
    std::fs::create_dir_all(&restored).unwrap();
    for kind in ["plan", "commit"] {
        let name = format!("000000000000.{kind}.json");
        std::fs::copy(
            dir.path().join("moved/all").join(&name),
            restored.join(&name),
        )
        .unwrap();
    }
    let out = run(&batches("700"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ends at batch 0, the output holds batch 5"),
        "{}",
        stderr(&out)
    );

    let mut overwrite = batches("700").to_vec();
    overwrite.push("--overwrite".into());
    let out = run(&overwrite);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files(&topic_dir).len(), 5, "3000 records in batches of 700");
    assert_eq!(ids(&topic_dir), range(0, 3000));

    // Another consumer's files (here: of all partitions) are not this one's to delete, not
    // even with --overwrite: their checkpoint still counts them.
    let mut other = batches("700").to_vec();
    other.extend(["--partitions", "0", "--overwrite"].map(String::from));
    let out = run(&other);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another consumer"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(&topic_dir).len(), 5);
    assert_eq!(ids(&topic_dir), range(0, 3000));
}

/// Puts a directory where a checkpoint file's temporary goes, so writing it fails (as on a
/// full or read-only disk) until the test removes it.
fn block_checkpoint_write(kind: &str) {
    let topic = topic_of(0, 500);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &topic, "unused-workorder", "");
    let checkpoint = dir.path().join("out").join(&topic).join("_checkpoint/all");
    let blocker = checkpoint.join(format!(".000000000000.{kind}.json.tmp"));
    std::fs::create_dir_all(&blocker).unwrap();
    let consumer = Spawned::start(&mut configured(
        dir.path(),
        "consume",
        &["--topics", &topic, "--trigger", "available-now"],
    ));
    wait_for(
        "the failed write to be retried",
        Duration::from_secs(60),
        || {
            consumer
                .log("err")
                .contains("(not committed) failed; retrying")
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut consumer = consumer;
    assert!(
        consumer.is_running(),
        "{kind}: exited instead of retrying: {}",
        consumer.log("err")
    );
    std::fs::remove_dir(&blocker).unwrap();
    let (status, _, err) = consumer.finish(Duration::from_secs(120));
    assert!(status.success(), "{kind}: {err}");
    let file = format!("_checkpoint/all/000000000000.{kind}.json");
    assert!(err.contains(&file), "{kind}: the log names the file: {err}");
    assert_eq!(
        ids(&dir.path().join("out").join(&topic)),
        range(0, 500),
        "{kind}"
    );
}

/// A shutdown while a batch waits to be retried (here: its plan cannot be written) ends the
/// wait: the consumer exits at once, the batch uncommitted, instead of retrying until
/// `consumer.retry_deadline` (set to ten minutes here). A rerun then commits it.
#[test]
fn a_shutdown_ends_the_wait_between_retries() {
    let topic = topic_of(0, 500);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &topic,
        "unused-workorder",
        "retry_deadline = 600.0",
    );
    let checkpoint = dir.path().join("out").join(&topic).join("_checkpoint/all");
    let blocker = checkpoint.join(".000000000000.plan.json.tmp");
    std::fs::create_dir_all(&blocker).unwrap();
    let args = ["--topics", &topic, "--trigger", "available-now"];
    let consumer = Spawned::start(&mut configured(dir.path(), "consume", &args));
    wait_for(
        "the failed plan to be retried",
        Duration::from_secs(60),
        || {
            consumer
                .log("err")
                .contains("(not committed) failed; retrying")
        },
    );
    common::send_signal(consumer.child.id(), "TERM");
    // Far below the ten-minute deadline it would otherwise wait out.
    let (status, _, err) = consumer.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("stopped while batch 0 waited"), "{err}");

    std::fs::remove_dir(&blocker).unwrap();
    let out = configured(dir.path(), "consume", &args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&dir.path().join("out").join(&topic)), range(0, 500));
}

#[test]
fn a_plan_that_cannot_be_written_is_retried_until_it_can() {
    block_checkpoint_write("plan");
}

#[test]
fn a_commit_that_cannot_be_written_is_retried_until_it_can() {
    block_checkpoint_write("commit");
}

#[test]
fn a_recreated_topic_fails_or_skips_never_silently() {
    let topic = topic_of(0, 50);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &topic, "unused-workorder", "");
    let drain = || {
        consume(
            dir.path(),
            &["--topics", &topic, "--trigger", "available-now"],
        )
    };
    let out = drain();
    assert!(out.status.success(), "{}", stderr(&out));

    let admin = |args: &[&str]| {
        run_with_timeout(
            factorypal(Path::new("."))
                .args(["--bootstrap", &bootstrap(), "admin"])
                .args(args),
            Duration::from_secs(60),
        )
    };
    assert!(admin(&["delete-topic", &topic]).status.success());
    wait_for(
        "the topic to be re-created",
        Duration::from_secs(60),
        || {
            admin(&["create-topic", &topic, "--partitions", "1"])
                .status
                .success()
        },
    );
    let lines = payloads(1000, 1020);
    let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    kcat_produce(&topic, 0, &bytes);

    let out = drain();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for part in [
        topic.as_str(),
        "partition 0",
        "next offset 50",
        "offsets 0..20",
        "on_data_loss",
    ] {
        assert!(err.contains(part), "{part:?} missing: {err}");
    }

    write_config(
        dir.path(),
        &topic,
        "unused-workorder",
        "on_data_loss = \"skip\"",
    );
    let out = drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("past the partition's end"),
        "{}",
        stderr(&out)
    );
    let mut want = range(0, 50);
    want.extend(range(1000, 1020));
    assert_eq!(ids(&dir.path().join("out").join(&topic)), want);
}

/// The `*.<kind>.json` entries of a checkpoint directory, parsed, by batch.
fn checkpoint_entries(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(&format!(".{kind}.json")))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

/// The policy for a topic that fails among several: the process stops with exit 1, but only
/// after the others committed the batch they held. The healthy topic's output is then exactly
/// what its checkpoint says (every file listed by a commit, every committed record once, no
/// plan left unfinished), and a rerun goes on from there without writing anything twice.
#[test]
fn a_failing_topic_stops_the_others_after_they_commit_what_they_hold() {
    let healthy = topic_of(0, 3000);
    // Good records first (the workorder schema reads their `time`); the bad one comes later.
    let failing = topic_of(100_000, 100_010);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &healthy, &failing, "on_bad_record = \"fail\"");
    let consumer = Spawned::start(&mut configured(
        dir.path(),
        "consume",
        &["--trigger", "200ms", "--max-offsets-per-trigger", "100"],
    ));
    let healthy_dir = dir.path().join("out").join(&healthy);
    let checkpoint = healthy_dir.join("_checkpoint/all");
    wait_for(
        "the healthy topic's third commit",
        Duration::from_secs(60),
        || checkpoint.is_dir() && checkpoint_entries(&checkpoint, "commit").len() >= 3,
    );
    kcat_produce(&failing, 0, &[br#"{"time": "not a time"}"#]);
    let (status, _, err) = consumer.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{err}");
    for part in [
        failing.as_str(),
        "partition 0, offset 10",
        "bad record",
        "stopping the other topics",
    ] {
        assert!(err.contains(part), "{part:?} missing: {err}");
    }

    let commits = checkpoint_entries(&checkpoint, "commit");
    let plans = checkpoint_entries(&checkpoint, "plan");
    let last = commits.last().unwrap();
    assert_eq!(
        plans.last().unwrap()["batch"],
        last["batch"],
        "the healthy topic left a batch unfinished"
    );
    let mut listed: Vec<String> = commits
        .iter()
        .flat_map(|c| c["files"].as_array().unwrap().clone())
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut on_disk: Vec<String> = std::fs::read_dir(&healthy_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, listed, "data files the checkpoint does not list");
    let next = last["next_offsets"]["0"].as_i64().unwrap();
    let rows: u64 = commits.iter().map(|c| c["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows, next as u64);
    assert_eq!(ids(&healthy_dir), range(0, next), "read by pyarrow");

    let out = consume(
        dir.path(),
        &["--topics", &healthy, "--trigger", "available-now"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&healthy_dir), range(0, 3000));
}
