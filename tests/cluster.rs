//! factorypal against a real replicated, secured cluster: the three-broker SASL_SSL cluster
//! `scripts/test.sh` starts (`scripts/kafka-local.sh start --brokers 3 --security sasl_ssl`,
//! replication factor 3, `min.insync.replicas=2`), shared by every test here. kcat
//! (librdkafka) is the independent client; `tests/exactly_once.py` (Python's `json`, pyarrow)
//! the independent judge of what landed.
//!
//! Tests that kill brokers hold [`CLUSTER`] exclusively; the others share it, so no test sees
//! a broker go down that it did not kill.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::{
    Cluster, Spawned, factorypal, free_port, python, run_with_timeout, sample_data, stderr, stdout,
    unique_topic, write_run_config,
};

static CLUSTER: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    CLUSTER.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    CLUSTER.write().unwrap_or_else(|e| e.into_inner())
}

/// `factorypal --config FILE ARGS` in `dir`, bounded.
fn with_config(dir: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    run_with_timeout(
        factorypal(dir).arg("--config").arg(config).args(args),
        Duration::from_secs(120),
    )
}

/// A topic of `partitions` partitions, replication factor 3 and `min.insync.replicas=2`,
/// created by factorypal over SASL_SSL.
fn create_topic(cluster: &Cluster, dir: &Path, topic: &str, partitions: u32) {
    let out = with_config(
        dir,
        &cluster.config("sasl_ssl"),
        &[
            "admin",
            "create-topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "3",
            "--topic-config",
            "min.insync.replicas=2",
        ],
    );
    assert!(out.status.success(), "create {topic}: {}", stderr(&out));
}

/// `/status` of a running process, or `None` while it does not answer.
fn status(addr: SocketAddr) -> Option<serde_json::Value> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /status HTTP/1.0\r\nHost: test\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// Records produced so far by every source of the process whose status is at `addr`.
fn produced(addr: SocketAddr) -> u64 {
    status(addr)
        .and_then(|s| {
            s["sources"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["records"].as_u64()).sum())
        })
        .unwrap_or(0)
}

/// Waits until the process has produced `target` records; fails if it ends first.
fn wait_for_produced(process: &mut Spawned, addr: SocketAddr, target: u64) {
    let start = Instant::now();
    loop {
        if produced(addr) >= target {
            return;
        }
        assert!(
            process.is_running(),
            "ended before producing {target} records: {}",
            process.log("stderr")
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{target} records not produced in 5 minutes: {}",
            process.log("stderr")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads `topic` back with kcat over SASL_SSL into `dir/NAME.jsonl` and has
/// `tests/exactly_once.py` compare it and the Parquet output with the source file.
fn assert_exactly_once(cluster: &Cluster, dir: &Path, topic: &str, source: &Path) {
    let mut kcat = cluster.kcat("PLAIN");
    kcat.args(["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J"]);
    let out = run_with_timeout(&mut kcat, Duration::from_secs(180));
    assert!(out.status.success(), "kcat {topic}: {}", stderr(&out));
    let read = dir.join(format!("{topic}.jsonl"));
    std::fs::write(&read, &out.stdout).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exactly_once.py");
    let out = run_with_timeout(
        Command::new(python())
            .arg(script)
            .arg(source)
            .arg(&read)
            .arg(dir.join("out").join(topic)),
        Duration::from_secs(300),
    );
    assert!(
        out.status.success(),
        "{topic}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// A run config (API, producer, consumer) whose `[kafka]` section is the cluster's SASL_SSL one.
fn cluster_run_config(cluster: &Cluster, dir: &Path, data: &Path, metrics: &str, workorder: &str) {
    write_run_config(
        dir,
        data,
        metrics,
        workorder,
        "trigger = \"500ms\"\nmax_offsets_per_trigger = 20000",
    );
    let config = dir.join("c.toml");
    let rest = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, cluster.kafka_section("sasl_ssl") + "\n" + &rest).unwrap();
}

/// The test that matters: `run --until-drained` over SASL_SSL moves 200,000 records into two
/// six-partition topics with replication factor 3 while the broker leading the most partitions
/// is SIGKILLed, later restarted, and then a different leader is killed. Every record must be
/// in Kafka once (kcat) and in Parquet once (pyarrow), values exact.
#[test]
fn run_loses_nothing_and_duplicates_nothing_while_leaders_die() {
    let _cluster_lock = exclusive();
    let cluster = Cluster::get();
    const METRICS: u64 = 160_000;
    const WORKORDERS: u64 = 40_000;
    let data = sample_data(METRICS, WORKORDERS);
    let dir = tempfile::tempdir().unwrap();
    let metrics = unique_topic("fo-metrics");
    let workorder = unique_topic("fo-workorder");
    create_topic(&cluster, dir.path(), &metrics, 6);
    create_topic(&cluster, dir.path(), &workorder, 6);
    cluster_run_config(&cluster, dir.path(), data.path(), &metrics, &workorder);

    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut run = Spawned::start(factorypal(dir.path()).args([
        "--config",
        "c.toml",
        "run",
        "--until-drained",
        "--delay",
        "0",
        "--status-bind",
        &addr.to_string(),
    ]));
    let total = METRICS + WORKORDERS;
    wait_for_produced(&mut run, addr, total / 10);
    let first = cluster.busiest_leader(&metrics, None);
    let downed = cluster.kill(first);
    // Keep going with one broker down: two replicas are still in sync.
    wait_for_produced(&mut run, addr, total * 3 / 10);
    downed.restart();
    wait_for_produced(&mut run, addr, total * 4 / 10);
    let second = cluster.busiest_leader(&metrics, Some(first));
    let downed = cluster.kill(second);
    wait_for_produced(&mut run, addr, total * 6 / 10);
    downed.restart();

    let (exit, out, err) = run.finish(Duration::from_secs(600));
    eprintln!("killed nodes {first} and {second}; run's stderr:\n{err}");
    assert!(exit.success(), "run failed: {err}");
    assert!(
        out.contains(&format!("metrics: {METRICS} records")),
        "{out}"
    );
    assert_exactly_once(
        &cluster,
        dir.path(),
        &metrics,
        &data.path().join("metrics.json"),
    );
    assert_exactly_once(
        &cluster,
        dir.path(),
        &workorder,
        &data.path().join("workorder.json"),
    );
}
