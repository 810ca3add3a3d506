//! Command-line definitions (clap). Parsing only: no I/O happens here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    #[arg(long, global = true, value_name = "HOST:PORT[,HOST:PORT]")]
    pub bootstrap: Option<String>,
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
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Directory of JSON files to serve (`api.data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seconds between records (`api.delay`); 0 streams as fast as the client reads.
    #[arg(long, value_name = "SECS")]
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
    #[arg(long, value_name = "URL")]
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
    /// Exit 0 once every source stream has ended and every record is committed to Parquet.
    #[arg(long)]
    pub until_drained: bool,
    /// Seconds between records of the built-in API (`api.delay`).
    #[arg(long, value_name = "SECS")]
    pub delay: Option<f64>,
    #[command(flatten)]
    pub status: StatusArgs,
}

/// The live status server, for the commands that run for a while.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Serve a live status page (/, /status, /metrics) on this address (`status.bind`).
    #[arg(long, value_name = "ADDR")]
    pub status_bind: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkArg {
    Parquet,
    Console,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Where batches go.
    #[arg(long, value_enum, default_value = "parquet")]
    pub sink: SinkArg,
    /// Topics to consume (default: every topic with a schema in [consumer.topics]).
    #[arg(long, value_delimiter = ',', value_name = "TOPIC,...")]
    pub topics: Option<Vec<String>>,
    /// Output root (`consumer.output`).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Checkpoint root (`consumer.checkpoint`; default OUTPUT/TOPIC/_checkpoint).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// `10s`, `500ms`, `1m`, or `available-now` (`consumer.trigger`).
    #[arg(long)]
    pub trigger: Option<String>,
    /// New records per topic per batch, 0 = unlimited (`consumer.max_offsets_per_trigger`).
    #[arg(long, value_name = "N")]
    pub max_offsets_per_trigger: Option<u64>,
    /// Rows per Parquet file (`consumer.max_records_per_file`).
    #[arg(long, value_name = "N")]
    pub max_records_per_file: Option<u64>,
    /// Where to start without a checkpoint: earliest or latest (`consumer.starting_offsets`).
    #[arg(long, value_name = "earliest|latest")]
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
    /// Delete this consumer's earlier output, bad records and checkpoint of each topic first,
    /// and start over from consumer.starting_offsets.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub status: StatusArgs,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a topic.
    #[command(after_help = "Example:\n  factorypal admin create-topic metrics --partitions 3")]
    CreateTopic {
        name: String,
        /// Partition count (`admin.partitions`).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (`admin.replication_factor`).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// Succeed without change when the topic already exists.
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
    /// Show a topic's partitions with leader, earliest and latest offsets.
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

impl StatusArgs {
    fn bind(&self) -> Option<String> {
        self.status_bind.map(|a| a.to_string())
    }
}

impl Cli {
    /// The settings layers this command line asks for: the config file and the flags that
    /// override settings keys.
    pub fn settings_sources(&self) -> SettingsSources {
        let mut sources = SettingsSources {
            config_file: self.global.config.clone(),
            overrides: Vec::new(),
        };
        sources.set_opt("kafka.bootstrap", self.global.bootstrap.clone());
        match &self.command {
            Command::ServeApi(args) => {
                sources.set_opt("api.bind", args.bind.map(|a| a.to_string()));
                sources.set_opt(
                    "api.data_dir",
                    args.data_dir.as_ref().map(|d| d.display().to_string()),
                );
                sources.set_opt("api.delay", args.delay);
            }
            Command::Produce(args) => {
                sources.set_opt("producer.api_url", args.api_url.clone());
                sources.set_opt("status.bind", args.status.bind());
            }
            Command::Run(args) => {
                sources.set_opt("api.delay", args.delay);
                sources.set_opt("status.bind", args.status.bind());
            }
            Command::Consume(args) => {
                sources.set_opt("status.bind", args.status.bind());
                let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
                sources.set_opt("consumer.output", path(&args.output));
                sources.set_opt("consumer.checkpoint", path(&args.checkpoint));
                sources.set_opt("consumer.trigger", args.trigger.clone());
                sources.set_opt(
                    "consumer.max_offsets_per_trigger",
                    args.max_offsets_per_trigger,
                );
                sources.set_opt("consumer.max_records_per_file", args.max_records_per_file);
                sources.set_opt("consumer.starting_offsets", args.starting_offsets.clone());
            }
            Command::Admin(AdminCommand::CreateTopic {
                partitions,
                replication_factor,
                ..
            }) => {
                sources.set_opt("admin.partitions", partitions.map(i64::from));
                sources.set_opt(
                    "admin.replication_factor",
                    replication_factor.map(i64::from),
                );
            }
            _ => {}
        }
        sources
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
}
