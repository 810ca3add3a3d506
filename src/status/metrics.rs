//! `GET /metrics`: a [`Snapshot`] in the Prometheus text exposition format (version 0.0.4).
//! Unknown values (a lag before both offsets are known) are left out rather than made up.

use std::fmt::Write;

use super::{PartitionSnapshot, RunState, Snapshot, SourceSnapshot, TopicSnapshot};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family, read off one kind of item (a source, a topic, a partition).
struct Metric<T> {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// `None` leaves the item's sample out.
    value: fn(&T) -> Option<f64>,
}

const fn metric<T>(
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&T) -> Option<f64>,
) -> Metric<T> {
    Metric {
        name,
        kind,
        help,
        value,
    }
}

const PROCESS: &[Metric<Snapshot>] = &[metric(
    "factorypal_uptime_seconds",
    "gauge",
    "Seconds since the process started.",
    |s| Some(s.uptime_seconds),
)];

const SOURCE: &[Metric<SourceSnapshot>] = &[
    metric(
        "factorypal_source_records_total",
        "counter",
        "Records of the source acknowledged by Kafka.",
        |s| Some(s.records as f64),
    ),
    metric(
        "factorypal_source_bad_records_total",
        "counter",
        "Records of the source skipped as bad.",
        |s| Some(s.bad_records as f64),
    ),
    metric(
        "factorypal_source_bytes_total",
        "counter",
        "Value bytes of the source acknowledged by Kafka.",
        |s| Some(s.bytes as f64),
    ),
    metric(
        "factorypal_source_records_per_second",
        "gauge",
        "Records acknowledged per second, between the last two readings.",
        |s| Some(s.records_per_second),
    ),
    metric(
        "factorypal_source_retries_total",
        "counter",
        "Broker and API failures of the source that were retried.",
        |s| Some(s.retries as f64),
    ),
    metric(
        "factorypal_source_retrying",
        "gauge",
        "1 while a failure is being retried (until the next success), else 0.",
        |s| Some(f64::from(u8::from(s.problem.is_some()))),
    ),
    metric(
        "factorypal_source_state",
        "gauge",
        "0 running, 1 finished, 2 failed.",
        |s| Some(state_value(s.state)),
    ),
];

const TOPIC: &[Metric<TopicSnapshot>] = &[
    metric(
        "factorypal_consumer_batches_total",
        "counter",
        "Micro-batches committed.",
        |t| t.consumer.map(|_| t.batches as f64),
    ),
    metric(
        "factorypal_consumer_rows_total",
        "counter",
        "Rows written to the sink.",
        |t| t.consumer.map(|_| t.rows as f64),
    ),
    metric(
        "factorypal_consumer_bad_records_total",
        "counter",
        "Records that did not fit the topic's schema.",
        |t| t.consumer.map(|_| t.bad_records as f64),
    ),
    metric(
        "factorypal_consumer_files_total",
        "counter",
        "Files written by committed batches.",
        |t| t.consumer.map(|_| t.files as f64),
    ),
    metric(
        "factorypal_consumer_last_batch_records",
        "gauge",
        "Records (rows and bad) in the last committed batch.",
        |t| t.last_batch.as_ref().map(|b| b.records as f64),
    ),
    metric(
        "factorypal_consumer_last_batch_duration_seconds",
        "gauge",
        "Fetch, decode, write and commit time of the last committed batch.",
        |t| t.last_batch.as_ref().map(|b| b.duration_seconds),
    ),
    metric(
        "factorypal_consumer_retries_total",
        "counter",
        "Fetch and write failures that were retried.",
        |t| t.consumer.map(|_| t.retries as f64),
    ),
    metric(
        "factorypal_consumer_retrying",
        "gauge",
        "1 while a failure is being retried (until the next committed batch), else 0.",
        |t| t.consumer.map(|_| f64::from(u8::from(t.problem.is_some()))),
    ),
    metric(
        "factorypal_consumer_state",
        "gauge",
        "0 running, 1 finished, 2 failed.",
        |t| t.consumer.map(state_value),
    ),
];

/// A partition with its topic's name.
type TopicPartition = (String, PartitionSnapshot);

const PARTITION: &[Metric<TopicPartition>] = &[
    metric(
        "factorypal_partition_committed_offset",
        "gauge",
        "The next offset the consumer reads (committed by its checkpoint).",
        |(_, p)| p.committed.map(|v| v as f64),
    ),
    metric(
        "factorypal_partition_latest_offset",
        "gauge",
        "The partition's end offset as last seen.",
        |(_, p)| p.latest.map(|v| v as f64),
    ),
    metric(
        "factorypal_partition_lag",
        "gauge",
        "Records in the partition not yet committed by the consumer.",
        |(_, p)| p.lag.map(|v| v as f64),
    ),
    metric(
        "factorypal_partition_consumed_records_total",
        "counter",
        "Records this process consumed from the partition.",
        |(_, p)| Some(p.consumed as f64),
    ),
];

fn state_value(state: RunState) -> f64 {
    match state {
        RunState::Running => 0.0,
        RunState::Finished => 1.0,
        RunState::Failed => 2.0,
    }
}

/// Appends each metric's family (header and one sample per item that has a value).
fn write_families<T>(
    out: &mut String,
    metrics: &[Metric<T>],
    items: &[T],
    labels: impl Fn(&T) -> Vec<(&'static str, String)>,
) {
    for m in metrics {
        let samples: Vec<(&T, f64)> = items
            .iter()
            .filter_map(|item| (m.value)(item).map(|v| (item, v)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
        let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind);
        for (item, value) in samples {
            out.push_str(m.name);
            let labels = labels(item);
            if !labels.is_empty() {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", pairs.join(","));
            }
            let _ = writeln!(out, " {value}");
        }
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let info = metric(
        "factorypal_info",
        "gauge",
        "Always 1; the labels say which version runs which command.",
        |_: &Snapshot| Some(1.0),
    );
    write_families(&mut out, &[info], std::slice::from_ref(s), |s| {
        vec![
            ("version", s.version.to_string()),
            ("command", s.command.clone()),
        ]
    });
    write_families(&mut out, PROCESS, std::slice::from_ref(s), |_| Vec::new());
    write_families(&mut out, SOURCE, &s.sources, |x| {
        vec![("source", x.name.clone()), ("topic", x.topic.clone())]
    });
    write_families(&mut out, TOPIC, &s.topics, |t| {
        vec![("topic", t.topic.clone())]
    });
    let partitions: Vec<TopicPartition> = s
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.clone(), p.clone())))
        .collect();
    write_families(&mut out, PARTITION, &partitions, |(topic, p)| {
        vec![
            ("topic", topic.clone()),
            ("partition", p.partition.to_string()),
        ]
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::{BatchReport, Status};
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn renders_labelled_samples_and_leaves_unknowns_out() {
        let status = Status::new("run");
        let topic = status.topic("metrics");
        topic.set_consumer_state(RunState::Running);
        topic.set_committed(&BTreeMap::from([(0, 0), (1, 0)]));
        topic.observe_latest(0, 10);
        topic.record_batch(&BatchReport {
            batch: 0,
            ranges: &BTreeMap::from([(0, (0, 4))]),
            rows: 4,
            bad_records: 0,
            files: 1,
            duration: Duration::from_millis(250),
        });
        status.source("a \"quoted\" source", "metrics");
        let text = render(&status.snapshot());
        assert!(text.contains("factorypal_info{version=\""), "{text}");
        assert!(text.contains("# TYPE factorypal_partition_lag gauge\n"));
        assert!(text.contains("factorypal_partition_lag{topic=\"metrics\",partition=\"0\"} 6\n"));
        // Partition 1's end is unknown: no lag sample rather than a made-up one.
        assert!(!text.contains("factorypal_partition_lag{topic=\"metrics\",partition=\"1\"}"));
        assert!(text.contains(
            "factorypal_partition_committed_offset{topic=\"metrics\",partition=\"1\"} 0\n"
        ));
        assert!(
            text.contains(
                "factorypal_consumer_last_batch_duration_seconds{topic=\"metrics\"} 0.25\n"
            )
        );
        assert!(text.contains(
            "factorypal_source_records_total{source=\"a \\\"quoted\\\" source\",topic=\"metrics\"} 0\n"
        ));
    }
}
