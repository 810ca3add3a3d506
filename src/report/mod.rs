//! `factorypal report`: which machine parameters (metric ids) go with each product's output,
//! computed from the pipeline's own output and stated honestly, including when the data do
//! not support an answer. Needs no Kafka.
//!
//! The method (also in every report, in words): per product, the output of each interval
//! between consecutive work orders is the production counter's increase (negative steps left
//! out); per metric, the mean of its samples in the interval; Pearson's r, Spearman's rho and
//! the two-sided p of r (Student's t) for every metric at lags 0..=`max_lag`, adjusted by
//! Benjamini–Hochberg over all of a product's tests; metrics ranked by |r|.
//!
//! * `input`: where a topic's committed rows are (Parquet files a checkpoint committed, or a
//!   Delta table's snapshot) and reading the needed columns; `columns`: their types;
//! * `workorders` → intervals and outputs; `samples` → interval means per metric;
//! * `stats`: r, rho, p, BH; `analysis`: rows, ranking, verdicts; `model`: the result;
//! * `text` (shared words), `markdown`, `html`, `csv`: the three renderings.

mod analysis;
mod columns;
mod csv;
pub mod html;
mod input;
mod markdown;
pub mod model;
mod samples;
mod stats;
pub mod text;
mod workorders;

use std::path::{Path, PathBuf};

use crate::consume::CheckpointError;
use crate::failure::Classify;
use crate::lake::LakeError;
use crate::settings::{ReportSettings, Settings};
use analysis::Method;
use input::TopicData;
use model::{InputSummary, Report};
use samples::Samples;
use workorders::WorkOrders;

pub use columns::ColumnTypeError;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "no output of topic {topic} at {path}: run `factorypal consume` (or `run`) first, or point --input at the consumer's output (consumer.output); [report] {topic_key} names the topic"
    )]
    MissingTopic {
        topic: String,
        path: String,
        topic_key: &'static str,
    },
    #[error(
        "{dir} holds {files} Parquet file(s) of topic {topic} but no consumer checkpoint says which are committed (looked in {checkpoint}); point --input at the consumer's output with its _checkpoint, or set consumer.checkpoint to where the checkpoints are"
    )]
    NoCheckpoint {
        topic: String,
        files: usize,
        dir: String,
        checkpoint: String,
    },
    #[error("topic {topic}: reading its checkpoint failed")]
    Checkpoint {
        topic: String,
        #[source]
        source: CheckpointError,
    },
    #[error("topic {topic}")]
    Lake {
        topic: String,
        #[source]
        source: LakeError,
    },
    #[error(
        "topic {topic}: the Delta table {table} has deletion vectors ({file}), which the report cannot apply; rewrite the table without them (e.g. OPTIMIZE with purge) and run again"
    )]
    DeletionVectors {
        topic: String,
        table: String,
        file: String,
    },
    #[error(
        "topic {topic}: cannot read {file}: {reason}; if the file is damaged, restore it or consume the topic again into a new output"
    )]
    File {
        topic: String,
        file: String,
        reason: String,
    },
    #[error(
        "topic {topic}: {file} has no column {column} (it has: {present}); set the [report] column names to the topic's schema"
    )]
    MissingColumn {
        topic: String,
        file: String,
        column: String,
        present: String,
    },
    #[error("topic {topic}: {source}; set the [report] column names to the right columns")]
    ColumnType {
        topic: String,
        #[source]
        source: ColumnTypeError,
    },
    #[error(
        "the input holds {what}; narrow the report with --from and --to, or check the [report] topic and column names"
    )]
    TooMuchData { what: String },
    #[error("--from must be before --to (an empty window)")]
    EmptyWindow,
    #[error("cannot write the report to {path}: {source}; check --out (report.out)")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the report's worker stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Classify for ReportError {
    fn is_usage(&self) -> bool {
        match self {
            ReportError::MissingTopic { .. }
            | ReportError::NoCheckpoint { .. }
            | ReportError::DeletionVectors { .. }
            | ReportError::MissingColumn { .. }
            | ReportError::ColumnType { .. }
            | ReportError::TooMuchData { .. }
            | ReportError::EmptyWindow => true,
            ReportError::Lake { source, .. } => matches!(source, LakeError::BadOutput { .. }),
            ReportError::Checkpoint { .. }
            | ReportError::File { .. }
            | ReportError::Write { .. }
            | ReportError::Task(_) => false,
        }
    }
}

/// The most rows (product × metric × lag) a report computes and writes.
pub const MAX_ROWS: usize = 1_000_000;

/// The records kept: `from <= time < to`, unix microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Window {
    pub fn contains(self, micros: i64) -> bool {
        self.from.is_none_or(|f| micros >= f) && self.to.is_none_or(|t| micros < t)
    }
}

/// The files a report run wrote, and its answer per product.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub verdicts: Vec<String>,
}

/// Reads the consumer's output (`consumer.output`), analyses it and writes the report files
/// to `report.out`.
pub async fn run(settings: &Settings, window: Window) -> Result<Written, ReportError> {
    if let (Some(from), Some(to)) = (window.from, window.to)
        && from >= to
    {
        return Err(ReportError::EmptyWindow);
    }
    let report_settings = settings.report.clone();
    let input = &settings.consumer.output;
    let (consumer, storage) = (&settings.consumer, &settings.storage);
    let workorders = TopicData::locate(input, &report_settings.workorder_topic, consumer, storage)
        .await
        .map_err(|e| e.for_key("report.workorder_topic"))?;
    let metrics = TopicData::locate(input, &report_settings.metrics_topic, consumer, storage)
        .await
        .map_err(|e| e.for_key("report.metrics_topic"))?;
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let report = build(&report_settings, &workorders, &metrics, window, &runtime)?;
        write(&report_settings, &report)
    })
    .await?
}

impl ReportError {
    /// Names the setting that chose the topic of a missing-topic error.
    fn for_key(self, key: &'static str) -> Self {
        match self {
            ReportError::MissingTopic { topic, path, .. } => ReportError::MissingTopic {
                topic,
                path,
                topic_key: key,
            },
            other => other,
        }
    }
}

/// Reads both topics and computes the report (blocking).
fn build(
    settings: &ReportSettings,
    workorder_data: &TopicData,
    metric_data: &TopicData,
    window: Window,
    runtime: &tokio::runtime::Handle,
) -> Result<Report, ReportError> {
    let names = columns::Names {
        topic: &workorder_data.topic,
        key: &settings.product_column,
        value: &settings.output_column,
        time: &settings.workorder_time_column,
    };
    let mut orders = WorkOrders::default();
    workorder_data.read(&names.columns(), runtime, |batch| {
        orders.add(batch, &names, window)
    })?;
    let (kept, dropped) = (orders.kept, orders.dropped);
    let intervals = orders.into_intervals();
    let names = columns::Names {
        topic: &metric_data.topic,
        key: &settings.metric_id_column,
        value: &settings.metric_value_column,
        time: &settings.metric_time_column,
    };
    let mut samples = Samples::new(&intervals);
    metric_data.read(&names.columns(), runtime, |batch| {
        samples.add(batch, &names, window)
    })?;
    let metrics = samples.metrics();
    let rows = intervals.len() * metrics.len() * (settings.max_lag + 1);
    if rows > MAX_ROWS {
        return Err(ReportError::TooMuchData {
            what: format!(
                "{} products × {} metric ids × {} lags = {rows} correlations (more than {MAX_ROWS})",
                intervals.len(),
                metrics.len(),
                settings.max_lag + 1
            ),
        });
    }
    let method = Method {
        max_lag: settings.max_lag,
        alpha: settings.alpha,
    };
    let products = intervals
        .iter()
        .enumerate()
        .map(|(p, product)| analysis::product_report(product, &samples, &metrics, p, method))
        .collect();
    let input = InputSummary {
        sources: vec![
            format!("{}: {}", workorder_data.topic, workorder_data.description),
            format!("{}: {}", metric_data.topic, metric_data.description),
        ],
        workorder_records: kept,
        metric_samples: samples.kept,
        workorder_dropped: dropped,
        metric_dropped: samples.dropped,
        metric_outside_intervals: samples.outside,
        from_micros: window.from,
        to_micros: window.to,
        first_micros: intervals
            .iter()
            .filter_map(|i| i.starts.first())
            .min()
            .copied(),
        last_micros: intervals
            .iter()
            .filter_map(|i| i.ends.last())
            .max()
            .copied(),
    };
    Ok(Report {
        input,
        max_lag: settings.max_lag,
        alpha: settings.alpha,
        metrics: metrics.into_iter().map(|(key, _)| key).collect(),
        products,
    })
}

/// One of the three renderings.
type Renderer = fn(&Report) -> String;

/// Writes the formats asked for, each under a temporary name renamed into place.
fn write(settings: &ReportSettings, report: &Report) -> Result<Written, ReportError> {
    let out = &settings.out;
    std::fs::create_dir_all(out).map_err(|source| ReportError::Write {
        path: out.display().to_string(),
        source,
    })?;
    let mut files = Vec::new();
    let formats = settings.formats;
    let renderers: [(bool, &str, Renderer); 3] = [
        (formats.md, "report.md", markdown::render),
        (formats.html, "report.html", html::render),
        (formats.csv, "correlations.csv", csv::render),
    ];
    for (wanted, name, render) in renderers {
        if wanted {
            files.push(write_file(out, name, &render(report))?);
        }
    }
    Ok(Written {
        files,
        verdicts: report.products.iter().map(|p| p.verdict.clone()).collect(),
    })
}

fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, ReportError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let error = |source| ReportError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&tmp, text).map_err(error)?;
    std::fs::rename(&tmp, &path).map_err(error)?;
    Ok(path)
}
