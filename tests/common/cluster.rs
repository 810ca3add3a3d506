//! The three-broker SASL_SSL cluster `scripts/test.sh` starts (`scripts/kafka-local.sh start
//! --brokers 3 --security sasl_ssl`), shared by the tests in `tests/cluster.rs`: its
//! listeners, its ready-made config files, kcat over each protocol and mechanism, and losing
//! a broker on purpose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{KcatRecord, run_with_timeout, stderr};

/// The cluster of this test run. No silent skip: without one the test fails saying how.
pub struct Cluster {
    pub dir: PathBuf,
    /// Bootstrap list per listener name (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`).
    pub listeners: BTreeMap<String, String>,
}

impl Cluster {
    pub fn get() -> Self {
        let dir = std::env::var("FACTORYPAL_TEST_CLUSTER_DIR").unwrap_or_else(|_| {
            panic!(
                "FACTORYPAL_TEST_CLUSTER_DIR is not set: run the tests with scripts/test.sh (it \
                 starts a three-broker SASL_SSL cluster), or start one with `KAFKA_DIR=DIR \
                 scripts/kafka-local.sh start --brokers 3 --security sasl_ssl` and set \
                 FACTORYPAL_TEST_CLUSTER_DIR=DIR"
            )
        });
        let dir = PathBuf::from(dir);
        let text = std::fs::read_to_string(dir.join("listeners.env"))
            .unwrap_or_else(|e| panic!("{}/listeners.env: {e}", dir.display()));
        let listeners = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Self { dir, listeners }
    }

    pub fn bootstrap(&self, listener: &str) -> &str {
        self.listeners
            .get(listener)
            .unwrap_or_else(|| panic!("no {listener} listener in {}", self.dir.display()))
    }

    /// The ready-made factorypal config file for `protocol` (`sasl_ssl`, `ssl`, ...).
    pub fn config(&self, protocol: &str) -> PathBuf {
        self.dir.join(format!("factorypal-{protocol}.toml"))
    }

    /// The `[kafka]` section of [`Cluster::config`], to put in front of a test's own config.
    pub fn kafka_section(&self, protocol: &str) -> String {
        std::fs::read_to_string(self.config(protocol)).unwrap()
    }

    pub fn password(&self) -> String {
        std::fs::read_to_string(self.dir.join("sasl-password")).unwrap()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// kcat (librdkafka) over SASL_SSL with `mechanism`, from the script's client file. Debian's
    /// kcat has librdkafka 2.0.2, whose SCRAM Kafka 4 refuses (fixed in librdkafka 2.6.1):
    /// use `PLAIN` with it, and `confluent_kafka` (a current librdkafka) for SCRAM.
    pub fn kcat(&self, mechanism: &str) -> Command {
        let mut cmd = Command::new("kcat");
        cmd.arg("-F")
            .arg(self.dir.join("client-sasl_ssl.properties"))
            .args(["-X", &format!("sasl.mechanism={mechanism}")]);
        cmd
    }

    /// `kcat -J` lines of every record of `topic`, read with kcat over SASL_SSL (PLAIN).
    pub fn kcat_consume(&self, topic: &str) -> Vec<u8> {
        let mut cmd = self.kcat("PLAIN");
        cmd.args(["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J"]);
        let out = run_with_timeout(&mut cmd, Duration::from_secs(180));
        assert!(out.status.success(), "kcat -C {topic}: {}", stderr(&out));
        out.stdout
    }

    /// Every record of `topic` read with kcat over SASL_SSL, in partition and offset order.
    pub fn kcat_read(&self, topic: &str) -> Vec<KcatRecord> {
        let mut records: Vec<KcatRecord> = String::from_utf8_lossy(&self.kcat_consume(topic))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(super::kafka::parse_kcat_line)
            .collect();
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    /// `scripts/kafka-local.sh ARGS` on this cluster, not yet run.
    fn script_command(&self, args: &[&str]) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-local.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script).args(args).env("KAFKA_DIR", &self.dir);
        cmd
    }

    /// Runs `scripts/kafka-local.sh ARGS` on this cluster.
    pub fn script(&self, args: &[&str]) -> Output {
        let out = run_with_timeout(&mut self.script_command(args), Duration::from_secs(180));
        assert!(
            out.status.success(),
            "kafka-local.sh {args:?}: {}",
            stderr(&out)
        );
        out
    }

    /// Each partition of `topic` with its leader and in-sync replicas, from kcat's metadata
    /// over the plaintext listener.
    pub fn partitions(&self, topic: &str) -> Vec<PartitionState> {
        let out = run_with_timeout(
            Command::new("kcat").args(["-b", self.bootstrap("PLAINTEXT"), "-L", "-J", "-t", topic]),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "kcat -L: {}", stderr(&out));
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids = |v: &serde_json::Value| -> Vec<i32> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["id"].as_i64())
                        .map(|i| i as i32)
                        .collect()
                })
                .unwrap_or_default()
        };
        meta["topics"][0]["partitions"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| PartitionState {
                        partition: p["partition"].as_i64().unwrap() as i32,
                        leader: p["leader"].as_i64().unwrap_or(-1) as i32,
                        isr: ids(&p["isrs"]),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Partition → leader node id of `topic` (`-1`: no leader right now).
    pub fn leaders(&self, topic: &str) -> BTreeMap<i32, i32> {
        self.partitions(topic)
            .into_iter()
            .map(|p| (p.partition, p.leader))
            .collect()
    }

    /// Waits until every partition of `topic` has exactly `size` replicas in sync.
    pub fn wait_for_isr(&self, topic: &str, size: usize) {
        let start = Instant::now();
        loop {
            let partitions = self.partitions(topic);
            if !partitions.is_empty() && partitions.iter().all(|p| p.isr.len() == size) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{topic}: in-sync replicas did not become {size}: {partitions:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The node leading the most partitions of `topic`, other than `except`.
    pub fn busiest_leader(&self, topic: &str, except: Option<i32>) -> i32 {
        let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
        for leader in self.leaders(topic).into_values() {
            if leader >= 0 && Some(leader) != except {
                *counts.entry(leader).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|&(node, n)| (n, -node))
            .map(|(node, _)| node)
            .expect("some partition has a leader")
    }

    /// SIGKILLs node `node`; the returned guard starts it again when dropped, so a failing
    /// test does not leave the shared cluster short of a broker.
    pub fn kill(&self, node: i32) -> Downed<'_> {
        self.script(&["kill", &node.to_string()]);
        Downed {
            cluster: self,
            node,
            restarted: false,
        }
    }

    /// Waits until every partition of `topic` has a leader among the live nodes again.
    pub fn wait_for_leaders(&self, topic: &str, dead: &[i32]) {
        let start = Instant::now();
        loop {
            let leaders = self.leaders(topic);
            if !leaders.is_empty() && leaders.values().all(|l| *l >= 0 && !dead.contains(l)) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{topic}: leaders did not move off {dead:?}: {leaders:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// One partition as the cluster's metadata shows it.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub partition: i32,
    pub leader: i32,
    pub isr: Vec<i32>,
}

/// A node killed by [`Cluster::kill`], started again by [`Downed::restart`] or on drop.
pub struct Downed<'a> {
    cluster: &'a Cluster,
    pub node: i32,
    restarted: bool,
}

impl Downed<'_> {
    pub fn restart(mut self) {
        self.restarted = true;
        self.cluster.script(&["restart", &self.node.to_string()]);
    }
}

impl Drop for Downed<'_> {
    fn drop(&mut self) {
        if !self.restarted {
            self.restarted = true;
            // No assertion here: a panic while unwinding from another would abort.
            let node = self.node.to_string();
            let _ = self.cluster.script_command(&["restart", &node]).output();
        }
    }
}
