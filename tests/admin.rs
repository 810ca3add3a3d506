//! `admin` through the real binary against the real broker at FACTORYPAL_TEST_BOOTSTRAP.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{bootstrap, factorypal, run_with_timeout, stderr, stdout, unique_topic};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::Value;

fn admin(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    run_with_timeout(
        factorypal(dir.path())
            .args(["--bootstrap", &bootstrap(), "admin"])
            .args(args),
        Duration::from_secs(60),
    )
}

fn admin_ok(args: &[&str]) -> String {
    let out = admin(args);
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

fn describe(topic: &str) -> Value {
    serde_json::from_str(&admin_ok(&["describe-topic", topic, "--json"])).unwrap()
}

/// The topic's settings that differ from the broker's defaults, as Apache Kafka's own
/// `kafka-configs` tool (an independent client) reads them: `KEY=VALUE` per line.
fn dynamic_topic_configs(topic: &str) -> Vec<String> {
    let out = common::kafka_tool(
        "kafka.admin.ConfigCommand",
        &[
            "--describe",
            "--entity-type",
            "topics",
            "--entity-name",
            topic,
        ],
    );
    // "  retention.ms=12345 sensitive=false synonyms={...}"
    stdout(&out)
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Partition → (leader, replicas, isr) as kcat (librdkafka, an independent client) sees them.
/// Partitions as kcat sees them: `create-topic` waits for leaders in its own metadata view, so
/// kcat's view is asked a few times in case it lags.
fn kcat_partitions(topic: &str) -> Vec<(i64, i64, Vec<i64>, Vec<i64>)> {
    let mut partitions = kcat_partitions_once(topic);
    for _ in 0..50 {
        if !partitions.is_empty() && partitions.iter().all(|p| p.1 >= 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        partitions = kcat_partitions_once(topic);
    }
    partitions
}

fn kcat_partitions_once(topic: &str) -> Vec<(i64, i64, Vec<i64>, Vec<i64>)> {
    let out = run_with_timeout(
        Command::new("kcat").args(["-b", &bootstrap(), "-L", "-J", "-t", topic]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "kcat -L: {}", stderr(&out));
    let meta: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ids = |list: &Value| -> Vec<i64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_i64().unwrap())
            .collect()
    };
    let Some(listed) = meta["topics"][0]["partitions"].as_array() else {
        return Vec::new(); // the topic is not (yet) in this broker's metadata
    };
    let mut partitions: Vec<_> = listed
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["leader"].as_i64().unwrap(),
                ids(&p["replicas"]),
                ids(&p["isrs"]),
            )
        })
        .collect();
    partitions.sort();
    partitions
}

fn is_listed(topic: &str) -> bool {
    admin_ok(&["list-topics"]).lines().any(|l| l == topic)
}

#[test]
fn create_describe_list_delete() {
    let topic = unique_topic("admin-lifecycle");
    admin_ok(&["create-topic", &topic]);

    let described = describe(&topic);
    assert_eq!(described["name"], topic.as_str());
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "default partition count: {described}");
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!(p["partition"], i);
        assert!(p["leader"].as_i64().unwrap() >= 0, "{p}");
        assert_eq!(p["earliest"], 0);
        assert_eq!(p["latest"], 0);
    }

    let listed = admin_ok(&["list-topics"]);
    let names: Vec<&str> = listed.lines().collect();
    assert!(names.contains(&topic.as_str()), "{listed}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "list-topics is sorted");

    let table = admin_ok(&["describe-topic", &topic]);
    assert!(
        table.contains("PARTITION") && table.contains("LEADER"),
        "{table}"
    );

    admin_ok(&["delete-topic", &topic]);
    // Deletion is asynchronous in the broker; it leaves the listing within seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin_ok(&["list-topics"]).lines().any(|l| l == topic) {
        assert!(Instant::now() < deadline, "deleted topic still listed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = admin(&["describe-topic", &topic]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn partitions_and_replication_come_from_flags_then_config() {
    let topic = unique_topic("admin-flags");
    admin_ok(&[
        "create-topic",
        &topic,
        "--partitions",
        "5",
        "--replication-factor",
        "1",
    ]);
    assert_eq!(describe(&topic)["partitions"].as_array().unwrap().len(), 5);

    let topic = unique_topic("admin-env");
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        factorypal(dir.path())
            .env("FACTORYPAL__ADMIN__PARTITIONS", "2")
            .args(["--bootstrap", &bootstrap(), "admin", "create-topic", &topic]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(describe(&topic)["partitions"].as_array().unwrap().len(), 2);

    // A replication factor the single broker cannot satisfy is the broker's error, exit 1.
    let topic = unique_topic("admin-rf");
    let out = admin(&["create-topic", &topic, "--replication-factor", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&topic) && err.contains("--replication-factor"),
        "{err}"
    );
}

#[test]
fn duplicate_create_fails_unless_if_not_exists() {
    let topic = unique_topic("admin-dup");
    admin_ok(&["create-topic", &topic]);
    let out = admin(&["create-topic", &topic]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("already exists") && err.contains("--if-not-exists"),
        "{err}"
    );
    admin_ok(&["create-topic", &topic, "--if-not-exists"]);
}

#[test]
fn delete_missing_fails_unless_if_exists() {
    let topic = unique_topic("admin-missing");
    let out = admin(&["delete-topic", &topic]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    admin_ok(&["delete-topic", &topic, "--if-exists"]);
}

#[tokio::test]
async fn describe_shows_earliest_and_latest_offsets() {
    let topic = unique_topic("admin-offsets");
    admin_ok(&["create-topic", &topic, "--partitions", "2"]);

    // Produce with rskafka directly: 7 records to partition 1.
    let client = ClientBuilder::new(vec![bootstrap()]).build().await.unwrap();
    let partition = client
        .partition_client(topic.clone(), 1, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let records = (0..7)
        .map(|i| Record {
            key: None,
            value: Some(format!("{{\"n\":{i}}}").into_bytes()),
            headers: Default::default(),
            timestamp: rskafka::chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
        })
        .collect();
    tokio::time::timeout(
        common::TEST_TIMEOUT,
        partition.produce(records, Compression::NoCompression),
    )
    .await
    .unwrap()
    .unwrap();

    let topic2 = topic.clone();
    let described = tokio::task::spawn_blocking(move || describe(&topic2))
        .await
        .unwrap();
    let p = &described["partitions"];
    assert_eq!(
        (p[0]["earliest"].as_i64(), p[0]["latest"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        (p[1]["earliest"].as_i64(), p[1]["latest"].as_i64()),
        (Some(0), Some(7))
    );
}

#[test]
fn topic_configs_go_with_the_create_request() {
    let topic = unique_topic("admin-configs");
    let out = admin_ok(&[
        "create-topic",
        &topic,
        "--topic-config",
        "retention.ms=12345",
        "--topic-config",
        "cleanup.policy=compact",
    ]);
    assert!(out.contains("retention.ms=12345"), "{out}");
    let mut configs = dynamic_topic_configs(&topic);
    configs.sort();
    assert_eq!(configs, ["cleanup.policy=compact", "retention.ms=12345"]);

    // An existing topic is accepted with --if-not-exists, and its settings stay as they were.
    let out = admin_ok(&[
        "create-topic",
        &topic,
        "--if-not-exists",
        "--topic-config",
        "retention.ms=999",
    ]);
    assert!(out.contains("already exists"), "{out}");
    let mut configs = dynamic_topic_configs(&topic);
    configs.sort();
    assert_eq!(configs, ["cleanup.policy=compact", "retention.ms=12345"]);
}

#[test]
fn a_setting_the_broker_refuses_is_named_and_nothing_is_created() {
    for (setting, named) in [
        ("retention.ms=soon", "retention.ms"),
        ("no.such.setting=1", "no.such.setting"),
        ("cleanup.policy=sometimes", "cleanup.policy"),
    ] {
        let topic = unique_topic("admin-badconfig");
        let out = admin(&["create-topic", &topic, "--topic-config", setting]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{setting}: {err}");
        assert!(
            err.contains(&topic) && err.contains(named) && err.contains("--topic-config"),
            "{setting}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !is_listed(&topic),
            "{setting}: the topic was created anyway"
        );
    }
}

#[test]
fn malformed_topic_configs_are_refused_before_any_network_call() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--topic-config", "retention.ms"], "no `=`"),
        (&["--topic-config", "=5"], "key before `=` is empty"),
        (&["--topic-config", "a=1", "--topic-config", "a=2"], "twice"),
        (
            &["--topic-config", "min.insync.replicas=2"],
            "replication factor 1",
        ),
    ];
    for (args, why) in cases {
        // An unreachable broker: a refusal that fast cannot have touched the network.
        let started = Instant::now();
        let out = run_with_timeout(
            factorypal(dir.path())
                .args(["--bootstrap", "127.0.0.1:1", "admin", "create-topic", "t"])
                .args(*args),
            Duration::from_secs(20),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--topic-config") && err.contains(why),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("could not reach"),
            "{args:?} went to the network: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refusal waited for the network"
        );
    }
}

#[test]
fn describe_shows_replicas_and_in_sync_replicas() {
    let topic = unique_topic("admin-replicas");
    admin_ok(&["create-topic", &topic, "--partitions", "2"]);
    let expected = kcat_partitions(&topic);
    assert_eq!(expected.len(), 2, "{expected:?}");

    let described = describe(&topic);
    let from_json: Vec<_> = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ids = |v: &Value| -> Vec<i64> {
                v.as_array()
                    .unwrap_or_else(|| panic!("no list in {p}"))
                    .iter()
                    .map(|id| id.as_i64().unwrap())
                    .collect()
            };
            (
                p["partition"].as_i64().unwrap(),
                p["leader"].as_i64().unwrap(),
                ids(&p["replicas"]),
                ids(&p["isr"]),
            )
        })
        .collect();
    assert_eq!(from_json, expected);

    let table = admin_ok(&["describe-topic", &topic]);
    let mut rows = table.lines().skip(1).map(|l| l.split_whitespace());
    let header: Vec<&str> = rows.next().unwrap().collect();
    assert_eq!(
        header,
        [
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "ISR",
            "EARLIEST",
            "LATEST"
        ],
        "{table}"
    );
    let joined = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let from_table: Vec<Vec<String>> = rows
        .map(|r| r.take(4).map(str::to_string).collect())
        .collect();
    let from_kcat: Vec<Vec<String>> = expected
        .iter()
        .map(|(p, leader, replicas, isr)| {
            vec![
                p.to_string(),
                leader.to_string(),
                joined(replicas),
                joined(isr),
            ]
        })
        .collect();
    assert_eq!(from_table, from_kcat, "{table}");
}

#[test]
fn invalid_names_are_refused_before_any_network_call() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(250);
    for name in ["bad name", "..", ".", "slash/topic", long.as_str()] {
        for command in ["create-topic", "delete-topic", "describe-topic"] {
            // An unreachable broker: a refusal that fast cannot have touched the network.
            let started = Instant::now();
            let out = run_with_timeout(
                factorypal(dir.path()).args(["--bootstrap", "127.0.0.1:1", "admin", command, name]),
                Duration::from_secs(20),
            );
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} {name}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("invalid topic name"),
                "{}",
                stderr(&out)
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "refusal waited for the network"
            );
        }
    }
}

#[test]
fn unreachable_broker_fails_within_the_timeout_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback refuses; 10.255.255.1 would drop, but tests stay on loopback.
    let started = Instant::now();
    let out = run_with_timeout(
        factorypal(dir.path())
            .env("FACTORYPAL__KAFKA__TIMEOUT", "2")
            .args(["--bootstrap", "127.0.0.1:1", "admin", "list-topics"]),
        Duration::from_secs(20),
    );
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("127.0.0.1:1") && err.contains("could not reach Kafka"),
        "{err}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?} with a 2 s timeout"
    );
}

#[test]
fn unanswering_broker_fails_within_the_timeout() {
    // A listener that accepts and never answers: the request itself must time out.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _accepting = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        factorypal(dir.path())
            .env("FACTORYPAL__KAFKA__TIMEOUT", "2")
            .args(["--bootstrap", &addr, "admin", "describe-topic", "metrics"]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&addr), "{}", stderr(&out));
}
