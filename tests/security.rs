//! TLS and SASL against the real three-broker cluster `scripts/test.sh` starts
//! (`scripts/kafka-local.sh start --brokers 3 --security sasl_ssl`): every subcommand over
//! each protocol and mechanism, with the settings from a file, the environment or flags;
//! records exchanged with independent clients (kcat for PLAIN, Python's confluent_kafka with a
//! current librdkafka for SCRAM, pyarrow for the Parquet); bad settings refused before any
//! network call (exit 2); connect-time failures named in words within `kafka.timeout` (exit
//! 1); and the password never in any output. No test here stops a broker.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{
    Cluster, Spawned, factorypal, free_port, python, run_with_timeout, sample_data, start_api,
    stderr, stdout, unique_topic,
};
use serde_json::Value;
use serde_json::value::RawValue;

/// Records per produced topic: enough for several per partition, few enough to stay quick.
const METRICS: u64 = 240;

/// A command that must fail at once gets this long (its `kafka.timeout` is 60 s, so an answer
/// within this bound was not a timeout).
const FAIL_FAST: Duration = Duration::from_secs(30);

/// A command that works gets this long.
const WORKS: Duration = Duration::from_secs(120);

const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// What every test shares: the cluster, sample data and the real API serving it in-process
/// (on a runtime of its own that lives as long as the test binary).
struct Shared {
    cluster: Cluster,
    data: tempfile::TempDir,
    /// The API streaming `data` as fast as it is read.
    api: SocketAddr,
    /// The same API with 10 ms between records, for a produce that runs a while.
    slow_api: SocketAddr,
    /// The records of `data/metrics.json` as JSON text, in file order.
    metrics: Vec<String>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    SHARED.get_or_init(|| {
        let cluster = Cluster::get();
        let data = sample_data(METRICS, 10);
        let runtime = RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap());
        let (api, _, _) = runtime.block_on(start_api(data.path(), Duration::ZERO));
        let (slow_api, _, _) = runtime.block_on(start_api(data.path(), Duration::from_millis(10)));
        let file = std::fs::read(data.path().join("metrics.json")).unwrap();
        let records: Vec<Box<RawValue>> = serde_json::from_slice(&file).unwrap();
        let metrics = records.iter().map(|r| r.get().to_string()).collect();
        Shared {
            cluster,
            data,
            api,
            slow_api,
            metrics,
        }
    })
}

/// How a command reaches the cluster: a `[kafka]` section in its config file, environment
/// variables, flags, or a mix.
#[derive(Default, Clone)]
struct Access {
    /// The `[kafka]` section of the config file (none: no Kafka settings in any file).
    kafka_toml: Option<String>,
    env: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Access {
    /// The cluster's ready-made config for `protocol` (`sasl_ssl`, `ssl`, `sasl_plaintext`).
    fn file(protocol: &str) -> Self {
        Self {
            kafka_toml: Some(shared().cluster.kafka_section(protocol)),
            ..Self::default()
        }
    }

    /// The SASL_SSL config with `mechanism`.
    fn sasl_ssl(mechanism: &str) -> Self {
        Self {
            kafka_toml: Some(with_mechanism(
                &shared().cluster.kafka_section("sasl_ssl"),
                mechanism,
            )),
            ..Self::default()
        }
    }

    fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env
            .push((format!("FACTORYPAL__KAFKA__{key}"), value.into()));
        self
    }

    fn flag(mut self, flag: &str, value: impl Into<String>) -> Self {
        self.flags.push(flag.into());
        self.flags.push(value.into());
        self
    }

    /// `factorypal ARGS` in `dir` with this access; `config` (a file in `dir`) also holds
    /// `[kafka]` if the access has one.
    fn command(&self, dir: &Path, config: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = factorypal(dir);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        match config {
            Some(name) => {
                let rest = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
                let file = format!("{name}.with-kafka.toml");
                let text = self.kafka_toml.clone().unwrap_or_default() + "\n" + &rest;
                std::fs::write(dir.join(&file), text).unwrap();
                cmd.args(["--config", &file]);
            }
            None if self.kafka_toml.is_some() => {
                std::fs::write(dir.join("kafka.toml"), self.kafka_toml.as_ref().unwrap()).unwrap();
                cmd.args(["--config", "kafka.toml"]);
            }
            None => {}
        }
        cmd.args(&self.flags).args(args);
        cmd
    }

    /// Runs `args` and expects success; returns stdout.
    fn ok(&self, dir: &Path, config: Option<&str>, args: &[&str]) -> String {
        let out = run_with_timeout(&mut self.command(dir, config, args), WORKS);
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }
}

/// A `[kafka]` section with its `sasl_mechanism` line replaced.
fn with_mechanism(section: &str, mechanism: &str) -> String {
    section
        .lines()
        .map(|l| {
            if l.starts_with("sasl_mechanism") {
                format!("sasl_mechanism = \"{mechanism}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `dir/c.toml`: a producer of the shared API's metrics into `topic` (keyed by `id`) and a
/// consumer of `topics` with the metrics schema, writing to `dir/out`.
fn write_pipeline_config(dir: &Path, api: SocketAddr, topic: &str, consumed: &[&str]) {
    let mut text = format!(
        "[producer]\napi_url = \"http://{api}\"\n\
         [[producer.sources]]\nname = \"metrics\"\npath = \"/stream_data_metrics\"\ntopic = \"{topic}\"\nkey = \"id\"\n\
         [consumer]\noutput = \"out\"\n"
    );
    for topic in consumed {
        text += &format!(
            "[consumer.topics.{topic}.schema]\nid = \"int32\"\nval = \"float64\"\ntime = \"timestamp\"\n"
        );
    }
    std::fs::write(dir.join("c.toml"), text).unwrap();
}

/// Creates `topic` (3 partitions, replication factor 3, `min.insync.replicas=2`) and checks
/// that list-topics and describe-topic see it fully replicated.
fn admin_round(access: &Access, dir: &Path, topic: &str) {
    let created = access.ok(
        dir,
        None,
        &[
            "admin",
            "create-topic",
            topic,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
            "--topic-config",
            "min.insync.replicas=2",
        ],
    );
    assert!(created.contains("min.insync.replicas=2"), "{created}");
    let listed = access.ok(dir, None, &["admin", "list-topics"]);
    assert!(listed.lines().any(|l| l == topic), "{topic} in {listed}");
    let described: Value =
        serde_json::from_str(&access.ok(dir, None, &["admin", "describe-topic", topic, "--json"]))
            .unwrap();
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "{described}");
    for p in partitions {
        assert_eq!(p["replicas"].as_array().unwrap().len(), 3, "{p}");
        assert_eq!(p["isr"].as_array().unwrap().len(), 3, "{p}");
    }
}

/// One metrics record as its JSON text says: `val` is the float64 its spelling denotes,
/// correctly rounded (Rust's `str::parse`; serde_json's own float parsing, without its
/// `float_roundtrip` feature, can land one ulp off, e.g. for -2.5e-308).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Metric {
    id: i64,
    val_bits: u64,
    time: i64,
}

impl Metric {
    fn parse(text: &str) -> Self {
        #[derive(serde::Deserialize)]
        struct Raw<'a> {
            id: i64,
            #[serde(borrow)]
            val: &'a RawValue,
            time: i64,
        }
        let raw: Raw<'_> =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not a metric: {text}: {e}"));
        let val: f64 = raw.val.get().parse().unwrap();
        Self {
            id: raw.id,
            val_bits: val.to_bits(),
            time: raw.time,
        }
    }
}

/// `got` holds exactly the records `expected` does, each once (order aside).
fn assert_same_records(mut got: Vec<Metric>, expected: &[String], what: &str) {
    let mut expected: Vec<Metric> = expected.iter().map(|t| Metric::parse(t)).collect();
    assert_eq!(got.len(), expected.len(), "{what}: record count");
    got.sort_by_key(|m| m.time);
    expected.sort_by_key(|m| m.time);
    for (got, expected) in got.iter().zip(&expected) {
        assert_eq!(got, expected, "{what}");
    }
}

/// Kafka payloads (JSON text) are exactly the `expected` records, each once.
fn assert_payloads(payloads: &[String], expected: &[String], what: &str) {
    let got = payloads.iter().map(|p| Metric::parse(p)).collect();
    assert_same_records(got, expected, what);
}

/// Every row of `dir/out/TOPIC` as pyarrow reads it: [time in µs, id, the bits of val].
const READ_ROWS: &str = "
import json, struct, sys
import pyarrow.compute as pc, pyarrow.dataset as ds, pyarrow as pa
t = ds.dataset(sys.argv[1], format='parquet').to_table()
times = pc.cast(t.column('time'), pa.int64()).to_pylist()
bits = [struct.unpack('<Q', struct.pack('<d', v))[0] for v in t.column('val').to_pylist()]
print(json.dumps(list(zip(times, t.column('id').to_pylist(), bits))))
";

/// The Parquet rows of `dir/out/topic`, read by pyarrow, are exactly the `expected` metrics
/// records, each once, float64 to the last bit.
fn assert_parquet(dir: &Path, topic: &str, expected: &[String]) {
    let out = run_with_timeout(
        Command::new(python())
            .args(["-c", READ_ROWS])
            .arg(dir.join("out").join(topic)),
        WORKS,
    );
    assert!(out.status.success(), "pyarrow {topic}: {}", stderr(&out));
    let rows: Vec<(i64, i64, u64)> = serde_json::from_str(&stdout(&out)).unwrap();
    let got = rows
        .into_iter()
        .map(|(time_us, id, val_bits)| {
            assert_eq!(time_us % 1_000_000, 0, "{topic}: whole seconds");
            Metric {
                id,
                val_bits,
                time: time_us / 1_000_000,
            }
        })
        .collect();
    assert_same_records(got, expected, topic);
}

/// Payloads of `topic` as kcat (PLAIN over SASL_SSL) reads them.
fn kcat_payloads(topic: &str) -> Vec<String> {
    shared()
        .cluster
        .kcat_read(topic)
        .into_iter()
        .map(|r| r.payload)
        .collect()
}

/// admin (create, list, describe), produce, kcat reads it, consume to Parquet, pyarrow reads
/// it: the whole path over one way of connecting.
fn pipeline(name: &str, access: &Access) {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let topic = unique_topic(&format!("sec-{name}"));
    admin_round(access, dir, &topic);
    write_pipeline_config(dir, s.api, &topic, &[&topic]);
    let produced = access.ok(dir, Some("c.toml"), &["produce", "metrics"]);
    assert!(
        produced.contains(&format!("{METRICS} records")),
        "{produced}"
    );
    assert_payloads(&kcat_payloads(&topic), &s.metrics, name);
    let consumed = access.ok(
        dir,
        Some("c.toml"),
        &["consume", "--topics", &topic, "--trigger", "available-now"],
    );
    assert!(consumed.contains(&format!("{METRICS} rows")), "{consumed}");
    assert_parquet(dir, &topic, &s.metrics);
}

/// `run --until-drained`: the built-in API, topics created with replication factor 3, the
/// producer and the consumer in one process, over `access`.
fn run_pipeline(name: &str, access: &Access) {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let metrics = unique_topic(&format!("sec-run-{name}"));
    let workorder = unique_topic(&format!("sec-run-wo-{name}"));
    common::write_run_config(
        dir,
        s.data.path(),
        &metrics,
        &workorder,
        "trigger = \"200ms\"",
    );
    let config = std::fs::read_to_string(dir.join("c.toml")).unwrap();
    std::fs::write(
        dir.join("c.toml"),
        format!("[admin]\nreplication_factor = 3\npartitions = 3\n{config}"),
    )
    .unwrap();
    let out = access.ok(
        dir,
        Some("c.toml"),
        &["run", "--until-drained", "--delay", "0"],
    );
    assert!(out.contains(&format!("{METRICS} records")), "{out}");
    assert_parquet(dir, &metrics, &s.metrics);
}

#[test]
fn every_subcommand_works_over_sasl_ssl_with_each_mechanism() {
    std::thread::scope(|scope| {
        for mechanism in MECHANISMS {
            scope.spawn(move || {
                let access = Access::sasl_ssl(mechanism);
                pipeline(mechanism, &access);
                run_pipeline(mechanism, &access);
            });
        }
    });
}

#[test]
fn mutual_tls_and_sasl_plaintext_work() {
    std::thread::scope(|scope| {
        scope.spawn(|| pipeline("ssl", &Access::file("ssl")));
        scope.spawn(|| pipeline("sasl-plaintext", &Access::file("sasl_plaintext")));
    });
}

/// The same settings with no `[kafka]` in any file: once all from `FACTORYPAL__KAFKA__*`
/// (protocol in capitals: it is case-insensitive; the password itself), once from flags.
#[test]
fn settings_from_the_environment_or_flags_alone_work() {
    let s = shared();
    let c = &s.cluster;
    let ca = c.ca().display().to_string();
    let from_env = Access::default()
        .env("BOOTSTRAP", c.bootstrap("SASL_SSL"))
        .env("SECURITY_PROTOCOL", "SASL_SSL")
        .env("SSL_CA_LOCATION", &ca)
        .env("SASL_MECHANISM", "SCRAM-SHA-256")
        .env("SASL_USERNAME", "factorypal")
        .env("SASL_PASSWORD", c.password());
    let from_flags = Access::default()
        .flag("--bootstrap", c.bootstrap("SASL_SSL"))
        .flag("--security-protocol", "sasl_ssl")
        .flag("--ssl-ca-location", &ca)
        .flag("--sasl-mechanism", "SCRAM-SHA-512")
        .flag("--sasl-username", "factorypal")
        .flag(
            "--sasl-password-file",
            c.dir.join("sasl-password").display().to_string(),
        );
    std::thread::scope(|scope| {
        scope.spawn(|| pipeline("env", &from_env));
        scope.spawn(|| pipeline("flags", &from_flags));
    });
}

/// Runs `cmd` with `input` on its stdin.
fn run_with_input(cmd: &mut Command, input: &str) -> Output {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), input).unwrap();
    cmd.stdin(std::fs::File::open(file.path()).unwrap());
    run_with_timeout(cmd, WORKS)
}

/// `tests/librdkafka_client.py COMMAND` (confluent_kafka) over SASL_SSL with `mechanism`.
fn librdkafka(command: &str, mechanism: &str, topic: &str) -> Command {
    let c = &shared().cluster;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/librdkafka_client.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .arg(command)
        .arg(c.bootstrap("SASL_SSL"))
        .arg(mechanism)
        .arg("factorypal")
        .arg(c.dir.join("sasl-password"))
        .arg(c.ca())
        .arg(topic);
    cmd
}

/// Payloads of `topic` as confluent_kafka reads them with `mechanism`.
fn librdkafka_payloads(mechanism: &str, topic: &str) -> Vec<String> {
    let out = run_with_timeout(&mut librdkafka("consume", mechanism, topic), WORKS);
    assert!(out.status.success(), "{mechanism}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["value"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Metrics records (JSON text) whose float64 values need every bit kept.
fn exacting_records(salt: i64) -> Vec<String> {
    let vals = [
        0.1,
        -2.5e-308,
        5e-324,
        1.797_693_134_862_315_7e308,
        123_456.789_012_345_68,
        -0.0,
        1.0 / 3.0,
    ];
    vals.iter()
        .enumerate()
        .map(|(i, v)| {
            let n = salt * 100 + i as i64;
            let time = 1_767_225_600 + n;
            serde_json::json!({"id": n, "val": v, "time": time}).to_string()
        })
        .collect()
}

/// Independent clients write, factorypal consumes (values exact in Parquet); factorypal
/// writes, independent clients read: kcat with PLAIN, confluent_kafka with SCRAM-SHA-256 and
/// SCRAM-SHA-512.
#[test]
fn kcat_and_librdkafka_exchange_records_with_factorypal() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let access = Access::file("sasl_ssl");
    let writers = [
        "kcat-PLAIN",
        "librdkafka-SCRAM-SHA-256",
        "librdkafka-SCRAM-SHA-512",
    ];
    let topics: Vec<String> = writers
        .iter()
        .map(|w| unique_topic(&format!("sec-from-{w}")))
        .collect();
    let produced = unique_topic("sec-to-clients");
    let mut all: Vec<&str> = topics.iter().map(String::as_str).collect();
    all.push(&produced);
    for topic in &all {
        admin_round(&access, dir, topic);
    }
    let mut expected = Vec::new();
    for (i, (writer, topic)) in writers.iter().zip(&topics).enumerate() {
        let records = exacting_records(i as i64);
        let input: String = records.iter().map(|r| format!("{r}\n")).collect();
        let out = match *writer {
            "kcat-PLAIN" => {
                let mut kcat = s.cluster.kcat("PLAIN");
                kcat.args(["-P", "-t", topic]);
                run_with_input(&mut kcat, &input)
            }
            _ => run_with_input(
                &mut librdkafka("produce", writer.trim_start_matches("librdkafka-"), topic),
                &input,
            ),
        };
        assert!(out.status.success(), "{writer}: {}", stderr(&out));
        expected.push(records);
    }
    write_pipeline_config(dir, s.api, &produced, &all[..3]);
    access.ok(
        dir,
        Some("c.toml"),
        &["consume", "--trigger", "available-now"],
    );
    for (topic, records) in topics.iter().zip(&expected) {
        assert_parquet(dir, topic, records);
    }
    access.ok(dir, Some("c.toml"), &["produce", "metrics"]);
    assert_payloads(&kcat_payloads(&produced), &s.metrics, "kcat PLAIN");
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let payloads = librdkafka_payloads(mechanism, &produced);
        assert_payloads(&payloads, &s.metrics, mechanism);
    }
}

/// A CA (and its key) the cluster's certificates do not chain to, made with openssl.
fn other_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("other-ca.pem"), dir.join("other-ca.key"));
    let out = run_with_timeout(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=not the cluster's CA", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "openssl: {}", stderr(&out));
    (cert, key)
}

/// Runs `factorypal` with `access` and `args` and expects it to fail with `code` within
/// [`FAIL_FAST`], stderr holding every one of `words`; returns stderr.
fn expect_failure(access: &Access, args: &[&str], code: i32, words: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline_config(dir.path(), shared().api, "sec-unused", &["sec-unused"]);
    let config = dir.path().join("c.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let data = shared().data.path().display().to_string();
    std::fs::write(&config, format!("{text}[api]\ndata_dir = \"{data}\"\n")).unwrap();
    let out = run_with_timeout(
        &mut access.command(dir.path(), Some("c.toml"), args),
        FAIL_FAST,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    for word in words {
        assert!(err.contains(word), "{args:?}: {word:?} not in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The files the bad-settings cases name, in a directory of their own.
struct BadFiles {
    _dir: tempfile::TempDir,
    missing: String,
    garbage: String,
    broken: String,
    empty: String,
    no_key: String,
    wrong_key: String,
    ca: String,
    client_pem: String,
    client_key: String,
    password_file: String,
}

impl BadFiles {
    fn new() -> Self {
        let c = &shared().cluster;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |name: &str, text: &str| {
            let path = d.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let shown = |path: PathBuf| path.display().to_string();
        Self {
            missing: shown(d.join("missing.pem")),
            garbage: write("garbage.pem", "this is not a certificate\n"),
            broken: write(
                "broken.pem",
                "-----BEGIN CERTIFICATE-----\nMIIB@@@ not base64 !!!\n-----END CERTIFICATE-----\n",
            ),
            empty: write("empty-password", ""),
            no_key: write("no-key.pem", "not a key\n"),
            wrong_key: shown(other_ca(d).1),
            ca: shown(c.ca()),
            client_pem: shown(c.dir.join("tls/client.pem")),
            client_key: shown(c.dir.join("tls/client.key")),
            password_file: shown(c.dir.join("sasl-password")),
            _dir: dir,
        }
    }
}

/// One bad setting: how it is given, and the words its error must hold (`|`-separated).
struct Case {
    what: &'static str,
    access: Access,
    words: String,
}

fn case(what: &'static str, access: Access, words: impl Into<String>) -> Case {
    Case {
        what,
        access,
        words: words.into(),
    }
}

/// Settings nothing can connect with whatever the files hold, and a bootstrap at a closed
/// port (reaching for it would be exit 1, not 2).
fn closed() -> Access {
    Access::default().env("BOOTSTRAP", "127.0.0.1:1")
}

fn tls() -> Access {
    closed().env("SECURITY_PROTOCOL", "ssl")
}

/// Files that are missing, not PEM, or do not belong together.
fn file_cases(f: &BadFiles) -> Vec<Case> {
    let (cert, key) = ("SSL_CERTIFICATE_LOCATION", "SSL_KEY_LOCATION");
    vec![
        case(
            "missing CA file",
            tls().env("SSL_CA_LOCATION", &f.missing),
            format!(
                "cannot read CA file|{}|kafka.ssl_ca_location|check the path",
                f.missing
            ),
        ),
        case(
            "CA file of garbage text",
            tls().env("SSL_CA_LOCATION", &f.garbage),
            format!(
                "{}|kafka.ssl_ca_location|holds no certificate|BEGIN CERTIFICATE",
                f.garbage
            ),
        ),
        case(
            "PEM with broken base64",
            tls().env("SSL_CA_LOCATION", &f.broken),
            format!(
                "{}|kafka.ssl_ca_location|not valid PEM|copy it again|DER",
                f.broken
            ),
        ),
        case(
            "certificate without key",
            tls().env(cert, &f.client_pem),
            "kafka.ssl_certificate_location|kafka.ssl_key_location|set both",
        ),
        case(
            "key without certificate",
            tls().env(key, &f.client_key),
            "kafka.ssl_certificate_location|kafka.ssl_key_location|set both",
        ),
        case(
            "a key file without a key",
            tls().env(cert, &f.client_pem).env(key, &f.no_key),
            format!("{}|kafka.ssl_key_location|no private key", f.no_key),
        ),
        case(
            "a key of another certificate",
            tls().env(cert, &f.client_pem).env(key, &f.wrong_key),
            format!(
                "{}|{}|key belongs to the certificate",
                f.client_pem, f.wrong_key
            ),
        ),
        case(
            "TLS files with protocol sasl_plaintext",
            closed()
                .env("SECURITY_PROTOCOL", "sasl_plaintext")
                .env("SASL_USERNAME", "u")
                .env("SASL_PASSWORD", "p")
                .env("SSL_CA_LOCATION", &f.ca),
            "kafka.ssl_ca_location|ssl or sasl_ssl",
        ),
    ]
}

/// Protocols, mechanisms and logins that do not fit together.
fn login_cases(f: &BadFiles) -> Vec<Case> {
    let sasl = || {
        closed()
            .env("SECURITY_PROTOCOL", "sasl_ssl")
            .env("SSL_CA_LOCATION", &f.ca)
            .env("SASL_USERNAME", "factorypal")
    };
    let plaintext_needs = "sasl_ssl or sasl_plaintext";
    vec![
        case(
            "unsupported mechanism",
            sasl()
                .env("SASL_MECHANISM", "GSSAPI")
                .env("SASL_PASSWORD", "p"),
            "kafka.sasl_mechanism|GSSAPI|PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        ),
        case(
            "unknown protocol",
            closed().flag("--security-protocol", "tls"),
            "kafka.security_protocol|--security-protocol|sasl_ssl",
        ),
        case(
            "a user name with protocol plaintext",
            closed().env("SASL_USERNAME", "factorypal"),
            format!("kafka.sasl_username|plaintext|{plaintext_needs}"),
        ),
        case(
            "a password with protocol plaintext",
            closed().env("SASL_PASSWORD", "x"),
            format!("kafka.sasl_password|plaintext|{plaintext_needs}"),
        ),
        case(
            "sasl without a user name",
            closed()
                .env("SECURITY_PROTOCOL", "sasl_ssl")
                .env("SASL_PASSWORD", "p"),
            "kafka.sasl_username|set the user name",
        ),
        case(
            "sasl without a password",
            sasl(),
            "kafka.sasl_password|kafka.sasl_password_file|neither is set",
        ),
        case(
            "both password and file",
            sasl()
                .env("SASL_PASSWORD", "p")
                .env("SASL_PASSWORD_FILE", &f.password_file),
            "kafka.sasl_password|both are set: keep one",
        ),
        case(
            "empty password file",
            sasl().flag("--sasl-password-file", &f.empty),
            format!("{}|kafka.sasl_password_file|is empty", f.empty),
        ),
        case(
            "missing password file",
            sasl().flag("--sasl-password-file", &f.missing),
            format!(
                "{}|kafka.sasl_password_file|cannot read password file",
                f.missing
            ),
        ),
    ]
}

/// Settings that cannot work are refused before any network call, with exit 2 and a
/// message naming the key or file and what to do.
#[test]
fn bad_security_settings_are_usage_errors_naming_the_key() {
    let files = BadFiles::new();
    let list = ["admin", "list-topics"];
    for Case {
        what,
        access,
        words,
    } in file_cases(&files).into_iter().chain(login_cases(&files))
    {
        eprintln!("case: {what}");
        let words: Vec<&str> = words.split('|').collect();
        expect_failure(&access, &list, 2, &words);
    }
    // Every command that connects reads the files first.
    let bad_ca = tls().env("SSL_CA_LOCATION", &files.missing);
    for args in [
        &["produce", "metrics"][..],
        &["consume", "--trigger", "available-now"],
        &["run", "--until-drained"],
        &["admin", "create-topic", "t"],
        &["admin", "describe-topic", "t"],
    ] {
        expect_failure(&bad_ca, args, 2, &[&files.missing, "kafka.ssl_ca_location"]);
    }
}

/// A TCP forwarder on 127.0.0.2 (a name the brokers' certificates do not list) to `to`, for
/// as long as the test binary runs.
fn forwarder(to: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let to = to.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(&to) else {
                continue;
            };
            pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
            pipe(upstream, client);
        }
    });
    addr
}

/// Copies `from` to `to` on a thread of its own until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// The first broker of `listener`.
fn node1(listener: &str) -> String {
    let list = shared().cluster.bootstrap(listener);
    list.split(',').next().unwrap().to_string()
}

/// Failures only the brokers can reveal: exit 1, the broker and the cause named, at once
/// (well within `kafka.timeout` = 60 s) where retrying cannot help.
#[test]
fn connect_failures_name_the_broker_and_the_cause_at_once() {
    let c = &shared().cluster;
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let patient = |access: Access| access.env("TIMEOUT", "60");
    let sasl_ssl = node1("SASL_SSL");
    let list = ["admin", "list-topics"];
    for mechanism in MECHANISMS {
        let access = patient(Access::sasl_ssl(mechanism))
            .flag("--sasl-password-file", wrong.display().to_string());
        expect_failure(
            &access,
            &list,
            1,
            &[
                "authentication failed",
                &sasl_ssl,
                mechanism,
                "\"factorypal\"",
            ],
        );
    }
    // Every command that connects fails the same way.
    let wrong_login = patient(Access::sasl_ssl("SCRAM-SHA-512"))
        .flag("--sasl-password-file", wrong.display().to_string());
    for args in [
        &["produce", "metrics"][..],
        &["consume", "--trigger", "available-now"],
        &["run", "--until-drained"],
    ] {
        expect_failure(&wrong_login, args, 1, &["authentication failed", &sasl_ssl]);
    }

    let (other, _) = other_ca(dir.path());
    let other = other.display().to_string();
    let untrusted = patient(Access::file("sasl_ssl")).flag("--ssl-ca-location", &other);
    let words = ["not trusted by the CA file", other.as_str(), &sasl_ssl];
    expect_failure(&untrusted, &list, 1, &words);

    let system_roots = patient(Access::file("sasl_ssl")).env("SSL_CA_LOCATION", "");
    let words = ["not trusted by the system's root certificates", &sasl_ssl];
    expect_failure(&system_roots, &list, 1, &words);

    let plaintext_on_tls = patient(Access::default()).flag("--bootstrap", &sasl_ssl);
    expect_failure(
        &plaintext_on_tls,
        &list,
        1,
        &["answered with TLS", &sasl_ssl],
    );
    let ssl = node1("SSL");
    let login_on_tls = patient(Access::file("sasl_plaintext")).flag("--bootstrap", &ssl);
    expect_failure(&login_on_tls, &list, 1, &["answered with TLS", &ssl]);

    let no_client_certificate = patient(Access::default())
        .flag("--bootstrap", &ssl)
        .flag("--security-protocol", "ssl")
        .flag("--ssl-ca-location", c.ca().display().to_string());
    let words = ["client certificate", "kafka.ssl_certificate_location", &ssl];
    expect_failure(&no_client_certificate, &list, 1, &words);

    let plaintext = node1("PLAINTEXT");
    let login_on_plaintext =
        patient(Access::file("sasl_plaintext")).flag("--bootstrap", &plaintext);
    let words = ["does not take a SASL login", &plaintext];
    expect_failure(&login_on_plaintext, &list, 1, &words);
}

/// A TLS client on a plaintext port: the broker closes the connection without a word, which
/// a restarting broker does too, so it is retried, but only until `kafka.timeout`.
#[test]
fn a_tls_client_on_a_plaintext_port_is_told_so_within_the_timeout() {
    let plaintext = node1("PLAINTEXT");
    let access = Access::file("ssl")
        .flag("--bootstrap", &plaintext)
        .env("TIMEOUT", "5");
    expect_failure(
        &access,
        &["admin", "list-topics"],
        1,
        &["does not speak TLS", &plaintext, "kafka.security_protocol"],
    );
}

/// Through a forwarder on 127.0.0.2, a name the brokers' certificates do not list: refused as
/// a host name mismatch; with `ssl_endpoint_identification = none` it works, with a warning.
#[test]
fn a_host_name_mismatch_is_refused_unless_identification_is_off() {
    let forwarded = forwarder(&node1("SASL_SSL")).to_string();
    let access = Access::file("sasl_ssl")
        .flag("--bootstrap", &forwarded)
        .env("TIMEOUT", "60");
    let list = ["admin", "list-topics"];
    expect_failure(
        &access,
        &list,
        1,
        &["host name mismatch", "127.0.0.2", &forwarded],
    );

    let unchecked = access.env("SSL_ENDPOINT_IDENTIFICATION", "none");
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(&mut unchecked.command(dir.path(), None, &list), FAIL_FAST);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kafka.ssl_endpoint_identification = none"),
        "warning: {}",
        stderr(&out)
    );
}

/// A password file every user may read (a container's secret mount is) is used, with a
/// warning that names it and says what to do.
#[test]
fn a_world_readable_password_file_is_used_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let c = &shared().cluster;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, c.password() + "\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = file.display().to_string();
    let access = Access::file("sasl_ssl").flag("--sasl-password-file", &file);
    let out = run_with_timeout(
        &mut access.command(dir.path(), None, &["admin", "list-topics"]),
        WORKS,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for word in [
        file.as_str(),
        "kafka.sasl_password_file",
        "644",
        "chmod 600",
    ] {
        assert!(err.contains(word), "{word:?} not in: {err}");
    }
}

/// The whole response to `GET path` over a raw socket.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.").then_some(text)
}

/// A produce with `--status-bind` from the slow API; its `/status`, `/metrics` and `/` while
/// it runs, then its output.
fn produce_with_status(access: &Access, topic: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline_config(dir.path(), shared().slow_api, topic, &[topic]);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = access.command(
        dir.path(),
        Some("c.toml"),
        &[
            "-vv",
            "produce",
            "metrics",
            "--status-bind",
            &addr.to_string(),
        ],
    );
    cmd.env_remove("RUST_LOG");
    let mut produce = Spawned::start(&mut cmd);
    let start = Instant::now();
    let mut seen = Vec::new();
    while seen.is_empty() {
        assert!(
            produce.is_running(),
            "produce ended early: {}",
            produce.log("err")
        );
        assert!(
            start.elapsed() < FAIL_FAST,
            "no status server: {}",
            produce.log("err")
        );
        if let Some(status) = get(addr, "/status") {
            seen.push(("/status".to_string(), status));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for path in ["/metrics", "/"] {
        seen.push((path.to_string(), get(addr, path).expect(path)));
    }
    assert!(produce.is_running(), "the status was read while it ran");
    let (status, out, err) = produce.finish(WORKS);
    assert!(status.success(), "{err}");
    seen.push(("produce stdout".into(), out));
    seen.push(("produce stderr".into(), err));
    seen
}

/// The password in every form a log line might hold it: as text, and as the bytes of a
/// PLAIN login a debug log of a buffer would show.
fn leaks(text: &str, password: &str) -> bool {
    let bytes = format!("{:?}", password.as_bytes());
    text.contains(password) || text.contains(bytes.trim_start_matches('[').trim_end_matches(']'))
}

/// Everything some commands printed, by label.
struct Outputs {
    dir: PathBuf,
    texts: Vec<(String, String)>,
}

impl Outputs {
    /// Runs `args` in `dir` with `access`; `-vv` (trace) logs unless `rust_log` says
    /// otherwise. Keeps stdout and stderr.
    fn run(
        &mut self,
        label: &str,
        access: &Access,
        config: Option<&str>,
        args: &[&str],
        rust_log: Option<&str>,
    ) -> Output {
        let mut cmd = access.command(&self.dir, config, args);
        match rust_log {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        let out = run_with_timeout(&mut cmd, WORKS);
        self.texts.push((format!("{label}: stdout"), stdout(&out)));
        self.texts.push((format!("{label}: stderr"), stderr(&out)));
        out
    }
}

/// The password, given through the environment (and once through a file), shows up in no
/// output: `-vv` and `RUST_LOG=trace` logs, `config show`, the status server's pages while a
/// produce runs, a failing command. PLAIN, the mechanism that sends the password itself.
#[test]
fn the_password_never_shows() {
    let c = &shared().cluster;
    let password = c.password();
    let section: String = with_mechanism(&c.kafka_section("sasl_ssl"), "PLAIN")
        .lines()
        .filter(|l| !l.starts_with("sasl_password_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let access = Access {
        kafka_toml: Some(section),
        ..Access::default()
    }
    .env("SASL_PASSWORD", &password);
    let topic = unique_topic("sec-secret");
    let dir = tempfile::tempdir().unwrap();
    write_pipeline_config(dir.path(), shared().api, &topic, &[&topic]);
    let mut o = Outputs {
        dir: dir.path().to_path_buf(),
        texts: Vec::new(),
    };
    let create = ["-vv", "admin", "create-topic", &topic, "--partitions", "2"];
    assert!(
        o.run("create", &access, None, &create, None)
            .status
            .success()
    );
    let describe = ["admin", "describe-topic", &topic];
    let traced = o.run("describe", &access, None, &describe, Some("trace"));
    assert!(traced.status.success());
    assert!(stderr(&traced).contains("TRACE"), "trace logs were on");
    let shown = o.run(
        "config show",
        &access,
        Some("c.toml"),
        &["-vv", "config", "show"],
        None,
    );
    let shown = stdout(&shown);
    assert!(shown.contains("sasl_password = \"***\""), "{shown}");

    let (other, _) = other_ca(dir.path());
    let wrong_ca = access
        .clone()
        .flag("--ssl-ca-location", other.display().to_string());
    let list = ["-vv", "admin", "list-topics"];
    let failed = o.run("wrong CA", &wrong_ca, None, &list, None);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let from_file = with_mechanism(&c.kafka_section("sasl_ssl"), "PLAIN");
    let from_file = Access {
        kafka_toml: Some(from_file),
        ..Access::default()
    };
    let listed = o.run("password file", &from_file, None, &list, None);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let consume = ["-vv", "consume", "--trigger", "available-now"];
    let status_pages = produce_with_status(&access, &topic);
    let consumed = o.run("consume", &access, Some("c.toml"), &consume, None);
    assert!(consumed.status.success(), "{}", stderr(&consumed));
    assert!(stderr(&consumed).contains("DEBUG"), "-vv logs were on");
    o.texts.extend(status_pages);
    for (label, text) in &o.texts {
        assert!(
            !leaks(text, &password),
            "the password shows in {label}:\n{text}"
        );
    }
}

/// The loaded settings and the security built from them print no password in `{:?}`.
#[test]
fn debug_formatting_of_loaded_settings_hides_the_password() {
    use factorypal::kafka::Security;
    use factorypal::settings::{Settings, SettingsSources};
    let c = &shared().cluster;
    let password = c.password();
    let env = |protocol: &str| {
        vec![
            (
                "FACTORYPAL__KAFKA__SECURITY_PROTOCOL".to_string(),
                protocol.to_string(),
            ),
            (
                "FACTORYPAL__KAFKA__SASL_USERNAME".into(),
                "factorypal".into(),
            ),
            (
                "FACTORYPAL__KAFKA__SSL_CA_LOCATION".into(),
                c.ca().display().to_string(),
            ),
        ]
    };
    let mut with_password = env("sasl_ssl");
    with_password.push(("FACTORYPAL__KAFKA__SASL_PASSWORD".into(), password.clone()));
    let mut with_file = env("sasl_plaintext");
    with_file.retain(|(k, _)| !k.ends_with("SSL_CA_LOCATION"));
    with_file.push((
        "FACTORYPAL__KAFKA__SASL_PASSWORD_FILE".into(),
        c.dir.join("sasl-password").display().to_string(),
    ));
    // An empty config file: not the repository's config/default.toml.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let sources = SettingsSources {
        config_file: Some(empty.path().to_path_buf()),
        overrides: Vec::new(),
    };
    for env in [with_password, with_file] {
        let settings = Settings::load_with_env(&sources, env).unwrap();
        let security = Security::load(&settings.kafka).unwrap();
        for shown in [format!("{settings:?}"), format!("{security:?}")] {
            assert!(!shown.contains(&password), "{shown}");
            assert!(shown.contains("factorypal"), "{shown}");
        }
        assert_eq!(
            security.login().unwrap().password.expose(),
            password,
            "the password itself still reaches the login"
        );
    }
}
