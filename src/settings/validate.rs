//! The rules a value type cannot hold by itself: lower bounds on plain numbers (kept plain
//! because the code that uses them wants an `i32` or a `usize`) and rules across keys. Each
//! names its key; the loader adds where the value came from.

use std::collections::HashSet;

use super::{ColumnType, ConsumerTopic, KafkaSettings, ReportSettings, Settings};
use crate::excerpt::Excerpt;
use crate::sink::day::DATE_COLUMN;

/// A loaded value that breaks a rule.
#[derive(Debug)]
pub(super) struct Invalid {
    pub key: String,
    pub reason: String,
}

fn invalid(key: &str, reason: String) -> Invalid {
    Invalid {
        key: key.to_string(),
        reason,
    }
}

/// `value` of `key` is at least `min`.
fn at_least<T: PartialOrd + std::fmt::Display>(key: &str, value: T, min: T) -> Result<(), Invalid> {
    if value >= min {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("expected at least {min}; found {value}"),
        ))
    }
}

/// `value` of `key` is at most `max`.
fn at_most<T: PartialOrd + std::fmt::Display>(key: &str, value: T, max: T) -> Result<(), Invalid> {
    if value <= max {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("expected at most {max}; found {value}"),
        ))
    }
}

/// More connections than a process has file descriptors for is a typo, and far beyond what
/// tokio's semaphore accepts (which would panic).
const MAX_CONNECTIONS: usize = 1_000_000;

pub(super) fn validate(settings: &Settings) -> Result<(), Invalid> {
    let Settings {
        kafka,
        api,
        admin,
        producer,
        consumer,
        report,
        ..
    } = settings;
    if kafka.bootstrap_brokers().is_empty() {
        return Err(invalid(
            "kafka.bootstrap",
            format!(
                "expected a comma-separated list of HOST:PORT; found {}",
                Excerpt(&kafka.bootstrap)
            ),
        ));
    }
    validate_security(kafka)?;
    at_least("api.max_connections", api.max_connections, 1)?;
    at_most("api.max_connections", api.max_connections, MAX_CONNECTIONS)?;
    at_least(
        "api.max_connections_per_client",
        api.max_connections_per_client,
        1,
    )?;
    at_least("admin.partitions", admin.partitions, 1)?;
    at_least("admin.replication_factor", admin.replication_factor, 1)?;
    at_least("producer.batch_max_bytes", producer.batch_max_bytes, 1024)?;
    at_least("producer.max_line_bytes", producer.max_line_bytes, 1)?;
    at_least(
        "producer.max_pending_records",
        producer.max_pending_records,
        1,
    )?;
    at_least(
        "consumer.max_records_per_file",
        consumer.max_records_per_file,
        1,
    )?;
    validate_sources(settings)?;
    validate_report(report)?;
    for (topic, t) in &consumer.topics {
        if t.schema.is_empty() {
            return Err(invalid(
                "consumer.topics",
                format!(
                    "topic {} has an empty schema: give it at least one column",
                    Excerpt(topic)
                ),
            ));
        }
        validate_partition_by_day(topic, t)?;
    }
    Ok(())
}

/// `partition_by_day` names a `timestamp` column of the topic's schema, and the schema has no
/// column of the partition's name (`date`), which readers would confuse with the partition.
/// More lags than a day of hourly work orders is a typo, and each lag is a test more.
const MAX_REPORT_LAG: usize = 24;

fn validate_report(report: &ReportSettings) -> Result<(), Invalid> {
    at_most("report.max_lag", report.max_lag, MAX_REPORT_LAG)?;
    if !(report.alpha > 0.0 && report.alpha < 1.0) {
        return Err(invalid(
            "report.alpha",
            format!(
                "expected a number between 0 and 1, like 0.05; found {}",
                report.alpha
            ),
        ));
    }
    let columns = [
        ("report.workorder_topic", &report.workorder_topic),
        ("report.product_column", &report.product_column),
        ("report.output_column", &report.output_column),
        (
            "report.workorder_time_column",
            &report.workorder_time_column,
        ),
        ("report.metrics_topic", &report.metrics_topic),
        ("report.metric_id_column", &report.metric_id_column),
        ("report.metric_value_column", &report.metric_value_column),
        ("report.metric_time_column", &report.metric_time_column),
    ];
    if let Some((key, _)) = columns.iter().find(|(_, name)| name.trim().is_empty()) {
        return Err(invalid(key, "expected a name; found nothing".to_string()));
    }
    if !(report.formats.md || report.formats.html || report.formats.csv) {
        return Err(invalid(
            "report.formats",
            "expected at least one of md, html, csv".to_string(),
        ));
    }
    Ok(())
}

fn validate_partition_by_day(topic: &str, t: &ConsumerTopic) -> Result<(), Invalid> {
    let Some(column) = &t.partition_by_day else {
        return Ok(());
    };
    let key = format!("consumer.topics.{topic}.partition_by_day");
    let columns = || {
        t.schema
            .iter()
            .map(|(name, kind)| format!("{name} ({kind})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match t.schema.get(column) {
        None => {
            return Err(invalid(
                &key,
                format!(
                    "topic {} has no column {}: name one of its timestamp columns; its columns are {}",
                    Excerpt(topic),
                    Excerpt(column),
                    columns()
                ),
            ));
        }
        Some(kind) if *kind != ColumnType::Timestamp => {
            return Err(invalid(
                &key,
                format!(
                    "column {} of topic {} is {kind}, not a timestamp: name one of its timestamp columns; its columns are {}",
                    Excerpt(column),
                    Excerpt(topic),
                    columns()
                ),
            ));
        }
        Some(_) => {}
    }
    if t.schema.contains_key(DATE_COLUMN) {
        return Err(invalid(
            &key,
            format!(
                "topic {} has a column named `{DATE_COLUMN}`, the name of the day partition \
                 partition_by_day adds: rename that column in the topic's schema, or remove \
                 partition_by_day",
                Excerpt(topic),
            ),
        ));
    }
    Ok(())
}

/// Source names are unique and not empty; each source has exactly one of `path` and `url`.
fn validate_sources(settings: &Settings) -> Result<(), Invalid> {
    let mut names = HashSet::new();
    for source in &settings.producer.sources {
        if source.name.is_empty() || !names.insert(source.name.as_str()) {
            return Err(invalid(
                "producer.sources",
                format!(
                    "source name {}: expected a non-empty name, different for every source",
                    Excerpt(&source.name)
                ),
            ));
        }
        if source.path.is_some() == source.url.is_some() {
            return Err(invalid(
                "producer.sources",
                format!(
                    "source {}: expected exactly one of `path` and `url`",
                    Excerpt(&source.name)
                ),
            ));
        }
    }
    Ok(())
}

/// The security keys fit the protocol: a login only where the protocol has one, TLS files only
/// where it has TLS, exactly one source for the password, a certificate only with its key.
/// Files are read (and checked) when connecting, not here, so `config show` works anywhere.
fn validate_security(kafka: &KafkaSettings) -> Result<(), Invalid> {
    let protocol = kafka.security_protocol;
    let sasl_keys = [
        ("kafka.sasl_username", !kafka.sasl_username.is_empty()),
        ("kafka.sasl_password", !kafka.sasl_password.is_empty()),
        (
            "kafka.sasl_password_file",
            !kafka.sasl_password_file.as_os_str().is_empty(),
        ),
    ];
    let tls_keys = [
        (
            "kafka.ssl_ca_location",
            !kafka.ssl_ca_location.as_os_str().is_empty(),
        ),
        (
            "kafka.ssl_certificate_location",
            !kafka.ssl_certificate_location.as_os_str().is_empty(),
        ),
        (
            "kafka.ssl_key_location",
            !kafka.ssl_key_location.as_os_str().is_empty(),
        ),
    ];
    if !protocol.uses_sasl()
        && let Some((key, _)) = sasl_keys.iter().find(|(_, set)| *set)
    {
        return Err(invalid(
            key,
            format!(
                "a SASL login needs kafka.security_protocol = sasl_ssl or sasl_plaintext; it is {protocol}: set the protocol, or remove {key}"
            ),
        ));
    }
    if !protocol.uses_tls()
        && let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set)
    {
        return Err(invalid(
            key,
            format!(
                "TLS files need kafka.security_protocol = ssl or sasl_ssl; it is {protocol}: set the protocol, or remove {key}"
            ),
        ));
    }
    if protocol.uses_sasl() {
        validate_login(kafka)?;
    }
    if protocol.uses_tls() && kafka.bootstrap_brokers().iter().any(|b| b.starts_with('[')) {
        return Err(invalid(
            "kafka.bootstrap",
            "an IPv6 address with TLS: the Kafka client library cannot check a certificate for one; give the brokers' host names".into(),
        ));
    }
    let [_, (_, certificate), (_, key)] = tls_keys;
    if certificate != key {
        return Err(invalid(
            "kafka.ssl_certificate_location",
            "a client certificate needs its private key: set both kafka.ssl_certificate_location and kafka.ssl_key_location, or neither".into(),
        ));
    }
    Ok(())
}

/// A SASL protocol has a user name and exactly one source for the password.
fn validate_login(kafka: &KafkaSettings) -> Result<(), Invalid> {
    if kafka.sasl_username.is_empty() {
        return Err(invalid(
            "kafka.sasl_username",
            format!(
                "kafka.security_protocol = {} logs in: set the user name",
                kafka.security_protocol
            ),
        ));
    }
    let password = !kafka.sasl_password.is_empty();
    let file = !kafka.sasl_password_file.as_os_str().is_empty();
    if password == file {
        let why = if password {
            "both are set: keep one"
        } else {
            "neither is set"
        };
        return Err(invalid(
            "kafka.sasl_password",
            format!("a SASL login needs kafka.sasl_password or kafka.sasl_password_file; {why}"),
        ));
    }
    Ok(())
}
