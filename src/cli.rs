//! Command-line definitions (clap). Parsing only: no I/O happens here.
//!
//! A flag that sets a setting has the setting's dotted key as its clap id
//! (`#[arg(long = "bind", id = "api.bind")]`), and [`CommandLine::parse`] turns every such
//! flag given into an override of that key: the one place flags meet settings. The flags go in
//! as the top layer of the settings, so `config show` shows what wins and a bad value is
//! refused like any other, naming the flag.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::settings::SettingsSources;

/// factorypal: the plant's data pipeline in one binary (machine API → Kafka → Parquet).
#[derive(Debug, Parser)]
#[command(name = "factorypal", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (TOML). Default: config/default.toml if it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap brokers, overriding `kafka.bootstrap`.
    #[arg(
        long = "bootstrap",
        id = "kafka.bootstrap",
        global = true,
        value_name = "HOST:PORT[,HOST:PORT]"
    )]
    pub bootstrap: Option<String>,
    /// How connections to Kafka are secured, overriding `kafka.security_protocol`.
    #[arg(
        long = "security-protocol",
        id = "kafka.security_protocol",
        global = true,
        value_name = "plaintext|ssl|sasl_plaintext|sasl_ssl"
    )]
    pub security_protocol: Option<String>,
    /// PEM file of the CA certificates that sign the brokers', overriding
    /// `kafka.ssl_ca_location`.
    #[arg(
        long = "ssl-ca-location",
        id = "kafka.ssl_ca_location",
        global = true,
        value_name = "FILE"
    )]
    pub ssl_ca_location: Option<PathBuf>,
    /// SASL mechanism, overriding `kafka.sasl_mechanism`.
    #[arg(
        long = "sasl-mechanism",
        id = "kafka.sasl_mechanism",
        global = true,
        value_name = "PLAIN|SCRAM-SHA-256|SCRAM-SHA-512"
    )]
    pub sasl_mechanism: Option<String>,
    /// SASL user name, overriding `kafka.sasl_username`.
    #[arg(
        long = "sasl-username",
        id = "kafka.sasl_username",
        global = true,
        value_name = "NAME"
    )]
    pub sasl_username: Option<String>,
    /// File holding the SASL password, overriding `kafka.sasl_password_file`. (No flag takes
    /// the password itself: other users can read a command line.)
    #[arg(
        long = "sasl-password-file",
        id = "kafka.sasl_password_file",
        global = true,
        value_name = "FILE"
    )]
    pub sasl_password_file: Option<PathBuf>,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides both.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output: errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log lines as text for people or JSON for log collectors.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream every JSON file of the data dir as NDJSON at GET /stream_data_{file stem}.
    #[command(after_help = "Example:\n  factorypal serve-api --bind 127.0.0.1:5000 --delay 0")]
    ServeApi(ServeApiArgs),
    /// Create, delete, list and describe Kafka topics.
    #[command(
        subcommand,
        after_help = "Examples:\n  factorypal admin create-topic metrics --partitions 3 --if-not-exists\n  factorypal admin describe-topic metrics"
    )]
    Admin(AdminCommand),
    /// Read API streams and write every record to its Kafka topic.
    #[command(
        after_help = "Examples:\n  factorypal produce metrics workorder\n  factorypal produce --all --api-url http://127.0.0.1:5000 --create-topics\n  factorypal produce metrics --resume   # after a crash: no gaps, no duplicates\n  factorypal produce --all --status-bind 127.0.0.1:8081   # live status at http://127.0.0.1:8081/"
    )]
    Produce(ProduceArgs),
    /// Kafka → Parquet (or console) in micro-batches, exactly once across crashes.
    #[command(
        after_help = "Examples:\n  factorypal consume --sink parquet --trigger available-now\n  factorypal consume --sink console --topics metrics --starting-offsets latest\n  factorypal consume --instance 0/2 --output /data/plant   # one of two processes\n  factorypal consume --status-bind 0.0.0.0:8080   # live status at http://HOST:8080/"
    )]
    Consume(ConsumeArgs),
    /// The whole pipeline in one process: API, topics, producers, consumers into Parquet.
    #[command(
        after_help = "Examples:\n  factorypal run --until-drained --delay 0      # everything in data_source/ to Parquet, then exit\n  factorypal run --status-bind 127.0.0.1:8080   # as a daemon, until Ctrl-C; watch http://127.0.0.1:8080/"
    )]
    Run(RunArgs),
    /// Rewrite each Delta table's small files into files near the target size (one Delta
    /// commit, safe while `consume` appends), then vacuum files removed long enough ago.
    #[command(
        after_help = "Examples:\n  factorypal compact                                   # every topic in [consumer.topics]\n  factorypal compact --topics metrics --target-file-size 64MB --vacuum-retention 1d\n  factorypal compact --output s3://plant/lake"
    )]
    Compact(CompactArgs),
    /// Which machine parameters go with each product's output: report.md, report.html and
    /// correlations.csv from the consumer's output (Parquet or Delta). Needs no Kafka.
    #[command(
        after_help = "Examples:\n  factorypal report --input database --out report\n  factorypal report --from 2026-01-01T00:00:00Z --to 2026-01-08T00:00:00Z --format md,csv\n  factorypal report --input s3://plant-lake/tables --max-lag 0"
    )]
    Report(ReportArgs),
    /// Write deterministic sample data (metrics.json, workorder.json) in the plant's format.
    #[command(after_help = "Example:\n  factorypal gen-data --out data_source --seed 42")]
    GenData(GenDataArgs),
    /// Inspect the effective settings.
    #[command(
        subcommand,
        after_help = "Example:\n  factorypal --config plant.toml config show"
    )]
    Config(ConfigCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  factorypal completions bash > /etc/bash_completion.d/factorypal"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ServeApiArgs {
    /// Address to listen on (`api.bind`).
    #[arg(long = "bind", id = "api.bind", value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Directory of JSON files to serve (`api.data_dir`).
    #[arg(long = "data-dir", id = "api.data_dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seconds between records (`api.delay`); 0 streams as fast as the client reads.
    #[arg(long = "delay", id = "api.delay", value_name = "SECS")]
    pub delay: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Sources to produce, by name (the `[[producer.sources]]` tables of the config).
    #[arg(
        required_unless_present = "all",
        conflicts_with = "all",
        value_name = "SOURCE"
    )]
    pub sources: Vec<String>,
    /// Produce every configured source.
    #[arg(long)]
    pub all: bool,
    /// Base URL for sources given as a path (`producer.api_url`).
    #[arg(long = "api-url", id = "producer.api_url", value_name = "URL")]
    pub api_url: Option<String>,
    /// Create missing topics with the [admin] defaults instead of failing.
    #[arg(long)]
    pub create_topics: bool,
    /// Continue after the records of each source already in its topic (no gaps, no
    /// duplicates after a crash) instead of starting the stream from its beginning.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub status: StatusArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Exit 0 once every source stream has ended and every record is committed to the sink.
    #[arg(long)]
    pub until_drained: bool,
    /// Seconds between records of the built-in API (`api.delay`).
    #[arg(long = "delay", id = "api.delay", value_name = "SECS")]
    pub delay: Option<f64>,
    /// Where batches go: parquet or delta (`consumer.sink`, default parquet).
    #[arg(long = "sink", id = "consumer.sink", value_name = "SINK")]
    pub sink: Option<String>,
    /// Output root, a directory or `s3://BUCKET/PREFIX` for delta (`consumer.output`).
    #[arg(long = "output", id = "consumer.output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// How often the consumers start a batch: `10s`, `500ms`, `1m`, or `0s` (continuous: the
    /// next batch as soon as the last committed) (`consumer.trigger`).
    #[arg(long = "trigger", id = "consumer.trigger", value_name = "TRIGGER")]
    pub trigger: Option<String>,
    #[command(flatten)]
    pub status: StatusArgs,
}

/// The live status server, for the commands that run for a while.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Serve a live status page (/, /status, /metrics) on this address (`status.bind`).
    #[arg(long = "status-bind", id = "status.bind", value_name = "ADDR")]
    pub status_bind: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Where batches go: parquet, console or delta (`consumer.sink`, default parquet).
    #[arg(long = "sink", id = "consumer.sink", value_name = "SINK")]
    pub sink: Option<String>,
    /// Topics to consume (default: every topic with a schema in [consumer.topics]).
    #[arg(long, value_delimiter = ',', value_name = "TOPIC,...")]
    pub topics: Option<Vec<String>>,
    /// Output root (`consumer.output`).
    #[arg(long = "output", id = "consumer.output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Checkpoint root (`consumer.checkpoint`; default OUTPUT/TOPIC/_checkpoint).
    #[arg(long = "checkpoint", id = "consumer.checkpoint", value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// `10s`, `500ms`, `1m`, `0s` (continuous: the next batch as soon as the last committed),
    /// or `available-now` (`consumer.trigger`).
    #[arg(long = "trigger", id = "consumer.trigger", value_name = "TRIGGER")]
    pub trigger: Option<String>,
    /// New records per topic per batch, 0 = unlimited (`consumer.max_offsets_per_trigger`).
    #[arg(
        long = "max-offsets-per-trigger",
        id = "consumer.max_offsets_per_trigger",
        value_name = "N"
    )]
    pub max_offsets_per_trigger: Option<u64>,
    /// Rows per Parquet file (`consumer.max_records_per_file`).
    #[arg(
        long = "max-records-per-file",
        id = "consumer.max_records_per_file",
        value_name = "N"
    )]
    pub max_records_per_file: Option<u64>,
    /// Where to start without a checkpoint: earliest or latest (`consumer.starting_offsets`).
    #[arg(
        long = "starting-offsets",
        id = "consumer.starting_offsets",
        value_name = "earliest|latest"
    )]
    pub starting_offsets: Option<String>,
    /// Consume only these partitions of each topic.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "P,...",
        conflicts_with = "instance"
    )]
    pub partitions: Option<Vec<i32>>,
    /// Be instance I of N: partitions p with p % N == I.
    #[arg(long, value_name = "I/N")]
    pub instance: Option<String>,
    /// Delete this consumer's earlier output, bad records and checkpoint of each topic first
    /// (delta: the whole table, so only without --instance/--partitions), and start over from
    /// consumer.starting_offsets.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub status: StatusArgs,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Topics whose tables to compact (default: every topic in [consumer.topics]).
    #[arg(long, value_delimiter = ',', value_name = "TOPIC,...")]
    pub topics: Option<Vec<String>>,
    /// Output root holding the tables, a directory or `s3://BUCKET/PREFIX` (`consumer.output`).
    #[arg(long = "output", id = "consumer.output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Size to rewrite small files into: `128MB`, `64MiB`, `1GB`, or bytes
    /// (`consumer.compact_target_file_size`).
    #[arg(
        long = "target-file-size",
        id = "consumer.compact_target_file_size",
        value_name = "SIZE"
    )]
    pub target_file_size: Option<String>,
    /// Delete files removed from the table longer ago than this: `7d`, `12h`, `0s`
    /// (`consumer.vacuum_retention`). Untracked files need at least an hour.
    #[arg(
        long = "vacuum-retention",
        id = "consumer.vacuum_retention",
        value_name = "SPAN"
    )]
    pub vacuum_retention: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The consumer's output: a directory or `s3://BUCKET/PREFIX` (`consumer.output`).
    #[arg(long = "input", id = "consumer.output", value_name = "DIR")]
    pub input: Option<PathBuf>,
    /// Where report.md, report.html and correlations.csv go (`report.out`).
    #[arg(long = "out", id = "report.out", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only records at or after this time: unix seconds or RFC 3339
    /// (`2026-01-01T00:00:00Z`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<i64>,
    /// Only records before this time: unix seconds or RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<i64>,
    /// Which files to write (`report.formats`).
    #[arg(long = "format", id = "report.formats", value_name = "md,html,csv")]
    pub format: Option<String>,
    /// Also test metrics 1..=K intervals before the output (`report.max_lag`; 0: off).
    #[arg(long = "max-lag", id = "report.max_lag", value_name = "K")]
    pub max_lag: Option<usize>,
}

/// A `--from`/`--to` time as unix microseconds.
fn parse_time(text: &str) -> Result<i64, String> {
    crate::consume::timestamp_micros(text)
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a topic.
    #[command(
        after_help = "Examples:\n  factorypal admin create-topic metrics --partitions 3\n  factorypal admin create-topic metrics --replication-factor 3 --topic-config min.insync.replicas=2"
    )]
    CreateTopic {
        name: String,
        /// Partition count (`admin.partitions`).
        #[arg(long = "partitions", id = "admin.partitions", value_name = "N")]
        partitions: Option<i32>,
        /// Replication factor (`admin.replication_factor`).
        #[arg(
            long = "replication-factor",
            id = "admin.replication_factor",
            value_name = "N"
        )]
        replication_factor: Option<i16>,
        /// A topic setting sent with the create request, e.g. `min.insync.replicas=2` or
        /// `retention.ms=86400000`; repeat for more. Kafka's topic configs are listed at
        /// https://kafka.apache.org/documentation/#topicconfigs.
        #[arg(long = "topic-config", value_name = "KEY=VALUE")]
        topic_config: Vec<String>,
        /// Succeed without change when the topic already exists (its settings are not
        /// compared or changed).
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Delete a topic and all its records.
    #[command(after_help = "Example:\n  factorypal admin delete-topic metrics --if-exists")]
    DeleteTopic {
        name: String,
        /// Succeed without change when the topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List topic names, one per line, sorted.
    #[command(after_help = "Example:\n  factorypal admin list-topics")]
    ListTopics {
        /// Include internal topics (names starting with `_`).
        #[arg(long)]
        all: bool,
    },
    /// Show a topic's partitions with leader, replicas, in-sync replicas, earliest and latest
    /// offsets.
    #[command(after_help = "Example:\n  factorypal admin describe-topic metrics --json")]
    DescribeTopic {
        name: String,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct GenDataArgs {
    /// Directory to write metrics.json and workorder.json into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed: the same seed always writes the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of metrics records.
    #[arg(long, default_value_t = crate::gen_data::DEFAULT_METRICS)]
    pub metrics: u64,
    /// Number of workorder records.
    #[arg(long, default_value_t = crate::gen_data::DEFAULT_WORKORDERS)]
    pub workorders: u64,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings (defaults < file < FACTORYPAL__* env < flags) as TOML.
    #[command(after_help = "Example:\n  FACTORYPAL__API__DELAY=0 factorypal config show")]
    Show,
}

/// A parsed command line: what to do, and the settings layers it asks for.
#[derive(Debug)]
pub struct CommandLine {
    pub cli: Cli,
    /// `--config` and every flag that sets a setting.
    pub settings: SettingsSources,
}

impl CommandLine {
    /// Parses the process's arguments; prints help, version or a usage error and exits as
    /// clap does (exit code 2 for an error).
    pub fn parse() -> Self {
        Self::try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Cli::command();
        let matches = command.clone().try_get_matches_from(args)?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut Cli::command()))?;
        let mut settings = SettingsSources {
            config_file: cli.global.config.clone(),
            overrides: Vec::new(),
        };
        setting_flags(&command, &matches, &mut settings);
        Ok(Self { cli, settings })
    }
}

/// Every flag given on the command line whose id is a settings key (it has a dot), from the
/// top-level command down through the chosen subcommands, each key once (a global flag shows
/// at every level).
fn setting_flags(command: &clap::Command, matches: &ArgMatches, sources: &mut SettingsSources) {
    for arg in command.get_arguments() {
        let key = arg.get_id().as_str();
        let seen = sources.overrides.iter().any(|o| o.key == key);
        if !key.contains('.') || seen || matches.value_source(key) != Some(ValueSource::CommandLine)
        {
            continue;
        }
        let given = matches
            .get_raw(key)
            .and_then(|mut values| values.next_back());
        if let (Some(value), Some(flag)) = (given, arg.get_long()) {
            sources.set(key, &value.to_string_lossy(), flag);
        }
    }
    if let Some((name, sub_matches)) = matches.subcommand()
        && let Some(sub) = command.find_subcommand(name)
    {
        setting_flags(sub, sub_matches, sources);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand, nested ones too, shows at least one example in its `--help`.
    #[test]
    fn every_subcommand_help_has_an_example() {
        fn check(command: &clap::Command, path: &str) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                let after = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(after.contains("Example"), "`{path} --help` has no example");
                check(sub, &path);
            }
        }
        let cli = Cli::command();
        check(&cli, "factorypal");
    }

    /// Every flag id with a dot is a real settings key, so a typo cannot silently map a flag
    /// to nothing (the settings would refuse the unknown key only when the flag is given).
    #[test]
    fn every_setting_flag_names_a_real_key() {
        fn check(command: &clap::Command, keys: &[String], found: &mut usize) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id.contains('.') {
                    assert!(keys.iter().any(|k| k == id), "flag id {id} is no setting");
                    assert!(arg.get_long().is_some(), "{id} has no long flag");
                    *found += 1;
                }
            }
            for sub in command.get_subcommands() {
                check(sub, keys, found);
            }
        }
        let mut found = 0;
        check(
            &Cli::command(),
            &crate::settings::Settings::keys(),
            &mut found,
        );
        assert!(found >= 15, "only {found} setting flags");
    }

    fn overrides(args: &[&str]) -> Vec<(String, String, String)> {
        let parsed = CommandLine::try_parse_from(args).unwrap();
        parsed
            .settings
            .overrides
            .into_iter()
            .map(|o| (o.key, o.value, o.flag))
            .collect()
    }

    fn set(key: &str, value: &str, flag: &str) -> (String, String, String) {
        (key.into(), value.into(), flag.into())
    }

    #[test]
    fn flags_become_overrides_of_their_keys_as_typed() {
        assert_eq!(
            overrides(&[
                "factorypal",
                "serve-api",
                "--bind",
                "127.0.0.1:1",
                "--delay",
                "0.50"
            ]),
            [
                set("api.bind", "127.0.0.1:1", "bind"),
                set("api.delay", "0.50", "delay")
            ]
        );
        // A global flag counts wherever it is given; flags not given set nothing.
        for args in [
            &[
                "factorypal",
                "--bootstrap",
                "b:1",
                "consume",
                "--trigger",
                "1m",
            ][..],
            &[
                "factorypal",
                "consume",
                "--trigger",
                "1m",
                "--bootstrap",
                "b:1",
            ][..],
        ] {
            assert_eq!(
                overrides(args),
                [
                    set("kafka.bootstrap", "b:1", "bootstrap"),
                    set("consumer.trigger", "1m", "trigger")
                ],
                "{args:?}"
            );
        }
        assert_eq!(
            overrides(&[
                "factorypal",
                "admin",
                "create-topic",
                "t",
                "--partitions",
                "4"
            ]),
            [set("admin.partitions", "4", "partitions")]
        );
        assert_eq!(overrides(&["factorypal", "run", "--until-drained"]), []);
        let parsed =
            CommandLine::try_parse_from(["factorypal", "--config", "x.toml", "config", "show"]);
        assert_eq!(
            parsed.unwrap().settings.config_file,
            Some(PathBuf::from("x.toml"))
        );
    }
}
