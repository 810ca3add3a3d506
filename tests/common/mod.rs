//! Helpers shared by the integration tests: the real broker's address, unique topic names, the
//! real binary, and a small real HTTP client.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub mod raw_http;

/// Every await on the network in a test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The Python with pyarrow, duckdb and prometheus_client that scripts/test.sh installs.
pub fn python() -> String {
    std::env::var("FACTORYPAL_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "FACTORYPAL_TEST_PYTHON is not set: run the tests with scripts/test.sh (it installs \
             pyarrow, duckdb and prometheus_client into target/pyenv), or set it to a python \
             with them"
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

/// The real `factorypal` binary, run in `dir` with no `FACTORYPAL__*` variables inherited.
pub fn factorypal(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_factorypal"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("FACTORYPAL__") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The binary run in `dir` with `dir/c.toml` as its config and the test broker, for
/// `subcommand args...`.
pub fn configured(dir: &Path, subcommand: &str, args: &[&str]) -> Command {
    let mut cmd = factorypal(dir);
    cmd.args([
        "--config",
        "c.toml",
        "--bootstrap",
        &bootstrap(),
        subcommand,
    ])
    .args(args);
    cmd
}

/// Runs `cmd`, killing it if it takes longer than `limit`. Output is drained while it runs, so
/// a chatty command cannot block on a full pipe.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("wait for command"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let out = rx.recv().expect("killed command reaps").expect("output");
            panic!(
                "command did not finish within {limit:?}; stderr: {}",
                stderr(&out)
            );
        }
    }
}

/// Sends `signal` (`TERM`, `KILL`, ...) to process `pid`, as an operator's `kill` would.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A real HTTP/1.1 GET; returns the response with its body still streaming.
pub async fn http_get(addr: SocketAddr, path_and_query: &str) -> hyper::Response<Incoming> {
    let fut = async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = hyper::Request::get(path_and_query)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(req).await.expect("request")
    };
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("GET timed out")
}

/// A GET whose whole body is read: (status, content type, body).
pub async fn http_get_body(addr: SocketAddr, path_and_query: &str) -> (u16, String, Bytes) {
    let response = http_get(addr, path_and_query).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = tokio::time::timeout(TEST_TIMEOUT, response.into_body().collect())
        .await
        .expect("body timed out")
        .expect("body")
        .to_bytes();
    (status, content_type, body)
}

/// The NDJSON lines of a body, each parsed.
pub fn ndjson(body: &[u8]) -> Vec<serde_json::Value> {
    assert!(
        body.is_empty() || body.ends_with(b"\n"),
        "NDJSON must end in a newline"
    );
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("each line is JSON"))
        .collect()
}

/// Starts the real `serve-api` server in-process on 127.0.0.1:0 over `dir`.
pub async fn start_api(
    dir: &Path,
    delay: Duration,
) -> (
    SocketAddr,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    use factorypal::api::{Catalog, load_dir, serve};
    let catalog = Catalog::new(load_dir(dir).unwrap(), delay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(serve(listener, catalog, shutdown.clone()));
    (addr, shutdown, task)
}

/// A port that was free a moment ago (for servers that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        .map(|line| {
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
        })
        .collect()
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

/// A background process whose stdout and stderr go to files: a pipe nobody reads would fill
/// up and stall it.
pub struct Spawned {
    pub child: std::process::Child,
    logs: tempfile::TempDir,
}

impl Spawned {
    pub fn start(cmd: &mut Command) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let file = |name: &str| std::fs::File::create(logs.path().join(name)).unwrap();
        let child = cmd.stdout(file("out")).stderr(file("err")).spawn().unwrap();
        Self { child, logs }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(name)).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the exit (killing it after `limit`): status, stdout, stderr.
    pub fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, String, String) {
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "process did not finish within {limit:?}: {}",
                    self.log("err")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().unwrap();
        (status, self.log("out"), self.log("err"))
    }
}

/// A fresh data dir with `metrics` and `workorders` generated records.
pub fn sample_data(metrics: u64, workorders: u64) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let out = factorypal(data.path())
        .args(["gen-data", "--out", ".", "--metrics", &metrics.to_string()])
        .args(["--workorders", &workorders.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    data
}

/// `dir/c.toml`: a consumer writing to `dir/out` with the sample schemas for `metrics` and
/// `workorder` (topic names), plus `consumer_extra` lines in `[consumer]`.
pub fn write_config(dir: &Path, metrics: &str, workorder: &str, consumer_extra: &str) {
    let text = format!(
        "[consumer]\noutput = \"out\"\n{consumer_extra}\n\
         [consumer.topics.{metrics}.schema]\nid = \"int32\"\nval = \"float64\"\ntime = \"timestamp\"\n\
         [consumer.topics.{workorder}.schema]\ntime = \"timestamp\"\nproduct = \"int32\"\nproduction = \"float64\"\n"
    );
    std::fs::write(dir.join("c.toml"), text).unwrap();
}

/// [`write_config`] plus the API on `data` and a source per topic, for `run`.
pub fn write_run_config(
    dir: &Path,
    data: &Path,
    metrics: &str,
    workorder: &str,
    consumer_extra: &str,
) {
    write_config(dir, metrics, workorder, consumer_extra);
    let mut config = std::fs::read_to_string(dir.join("c.toml")).unwrap();
    config += &format!(
        "[api]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
         [[producer.sources]]\nname = \"metrics\"\npath = \"/stream_data_metrics\"\ntopic = \"{metrics}\"\nkey = \"id\"\n\
         [[producer.sources]]\nname = \"workorder\"\npath = \"/stream_data_workorder\"\ntopic = \"{workorder}\"\nkey = \"product\"\n",
        data.display()
    );
    std::fs::write(dir.join("c.toml"), config).unwrap();
}

/// Writes raw payloads to partition 0 of a new 1-partition topic with kcat.
pub fn raw_topic(payloads: &[&str]) -> String {
    let bytes: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
    raw_topic_bytes(&bytes)
}

/// [`raw_topic`] for payloads that need not be text (none may hold a newline).
pub fn raw_topic_bytes(payloads: &[&[u8]]) -> String {
    let topic = unique_topic("raw");
    let out = run_with_timeout(
        factorypal(Path::new(".")).args([
            "--bootstrap",
            &bootstrap(),
            "admin",
            "create-topic",
            &topic,
            "--partitions",
            "1",
        ]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    kcat_produce(&topic, 0, payloads);
    topic
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
