//! The real broker: its address, unique topic names, reading and writing records with kcat
//! (an independent client, librdkafka), brokers of a test's own that can crash, and Apache
//! Kafka's own command-line tools.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Spawned, factorypal, free_port, run_with_timeout, send_signal, stderr, stdout};

/// The broker `scripts/test.sh` started. No silent skip: without one the test fails saying how.
pub fn bootstrap() -> String {
    std::env::var("FACTORYPAL_TEST_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "FACTORYPAL_TEST_BOOTSTRAP is not set: run the tests with scripts/test.sh (it starts a \
             local Apache Kafka), or start one with scripts/kafka-local.sh start and set \
             FACTORYPAL_TEST_BOOTSTRAP=127.0.0.1:9092"
        )
    })
}

/// A topic name no other test (or earlier run against the same broker) uses.
pub fn unique_topic(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One record as `kcat -J` (an independent client, librdkafka) reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct KcatRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: String,
}

impl KcatRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn source_offset(&self) -> u64 {
        self.header("source-offset")
            .expect("source-offset header")
            .parse()
            .unwrap()
    }
}

/// Every record of `topic`, read with kcat from the beginning to the end of each partition.
pub fn kcat_read(bootstrap: &str, topic: &str) -> Vec<KcatRecord> {
    let out = run_with_timeout(
        Command::new("kcat").args([
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-J",
            "-q",
        ]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "kcat failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_kcat_line)
        .collect()
}

/// One line of `kcat -J` output.
pub fn parse_kcat_line(line: &str) -> KcatRecord {
    let v: serde_json::Value = serde_json::from_str(line).expect("kcat -J line");
    let headers = v["headers"]
        .as_array()
        .map(|h| {
            h.chunks(2)
                .map(|kv| {
                    (
                        kv[0].as_str().unwrap().to_string(),
                        kv[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    KcatRecord {
        partition: v["partition"].as_i64().unwrap() as i32,
        offset: v["offset"].as_i64().unwrap(),
        key: v["key"].as_str().map(String::from),
        headers,
        payload: v["payload"].as_str().expect("payload").to_string(),
    }
}

/// A broker of this test's own (the shared one must not go down under other tests), stopped
/// and cleaned up on drop.
pub struct SpareBroker {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SpareBroker {
    pub fn start() -> Self {
        let broker = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        broker.script(&["start"]);
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn script(&self, args: &[&str]) {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-local.sh");
        let out = run_with_timeout(
            Command::new(script)
                .args(args)
                .env("KAFKA_PORT", self.port.to_string())
                .env("KAFKA_DIR", self.dir.path()),
            Duration::from_secs(180),
        );
        assert!(
            out.status.success(),
            "kafka-local.sh {args:?}: {}",
            stderr(&out)
        );
    }

    /// SIGKILL: no clean shutdown, requests in flight get no answer.
    pub fn crash(&self) {
        let pid = std::fs::read_to_string(self.dir.path().join("kafka.pid")).unwrap();
        send_signal(pid.trim().parse().unwrap(), "KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{}", pid.trim())).exists() {
            assert!(Instant::now() < deadline, "broker survived SIGKILL");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl SpareBroker {
    /// SIGKILL, a second down, then back on the same port with the same data.
    pub fn crash_and_restart(self) -> Self {
        self.crash();
        std::thread::sleep(Duration::from_secs(1));
        self.script(&["start"]);
        self
    }
}

impl Drop for SpareBroker {
    fn drop(&mut self) {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-local.sh");
        let _ = Command::new(script)
            .args(["stop", "--clean"])
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_DIR", self.dir.path())
            .output();
    }
}

/// Writes raw payloads to partition 0 of a new 1-partition topic with kcat.
pub fn raw_topic(payloads: &[&str]) -> String {
    let bytes: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
    raw_topic_bytes(&bytes)
}

/// [`raw_topic`] for payloads that need not be text (none may hold a newline).
pub fn raw_topic_bytes(payloads: &[&[u8]]) -> String {
    let topic = unique_topic("raw");
    create_topic(&topic, 1);
    kcat_produce(&topic, 0, payloads);
    topic
}

/// Creates `topic` with `partitions` partitions on the test broker (`admin create-topic`).
pub fn create_topic(topic: &str, partitions: i32) {
    let out = run_with_timeout(
        factorypal(Path::new(".")).args([
            "--bootstrap",
            &bootstrap(),
            "admin",
            "create-topic",
            topic,
            "--partitions",
            &partitions.to_string(),
        ]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Appends payloads (none holding a newline) to one partition of `topic` with kcat.
pub fn kcat_produce(topic: &str, partition: i32, payloads: &[&[u8]]) {
    let mut kcat = std::process::Command::new("kcat")
        .args(["-b", &bootstrap(), "-P", "-t", topic])
        .args(["-p", &partition.to_string()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    kcat.stdin
        .take()
        .unwrap()
        .write_all(&payloads.join(&b"\n"[..]))
        .unwrap();
    assert!(kcat.wait().unwrap().success());
}

/// Kills `broker` (SIGKILL) and restarts it under a running `process`, then waits for the
/// process to exit 0 having logged that it retried. Returns the restarted broker.
pub async fn survive_broker_restart(
    broker: SpareBroker,
    process: Spawned,
    limit: Duration,
) -> SpareBroker {
    let broker = tokio::task::spawn_blocking(move || broker.crash_and_restart())
        .await
        .unwrap();
    let (status, _, err) = tokio::task::spawn_blocking(move || process.finish(limit))
        .await
        .unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("retrying"),
        "the outage was never noticed: {err}"
    );
    broker
}

/// Runs one of Apache Kafka's own command-line tools (a class of the broker's jars, which
/// `scripts/kafka-local.sh` downloaded) against the test broker, e.g. `kafka.admin.ConfigCommand`.
pub fn kafka_tool(class: &str, args: &[&str]) -> Output {
    let jars = std::env::var("KAFKA_JARS_DIR").unwrap_or_else(|_| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kafka-jars");
        let version = std::fs::read_dir(&root)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (start a broker with scripts/kafka-local.sh)",
                    root.display()
                )
            })
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .max()
            .expect("a Kafka version under target/kafka-jars");
        version.display().to_string()
    });
    let out = run_with_timeout(
        Command::new("java")
            .arg("-cp")
            .arg(format!("{jars}/*"))
            .arg(class)
            .args(["--bootstrap-server", &bootstrap()])
            .args(args),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{class} {args:?}: {}", stderr(&out));
    out
}
