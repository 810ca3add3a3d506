//! The Python that scripts/test.sh installs (pyarrow, DuckDB, prometheus_client): the
//! independent readers of what factorypal writes.

use std::path::Path;
use std::time::Duration;

use super::{run_with_timeout, stderr, stdout};

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

/// A topic's Parquet output as `tests/read_parquet.py` reports it (`schema`, `rows`, with
/// timestamps as microseconds), after checking pyarrow and DuckDB count the same rows.
pub fn read_parquet_report(topic_dir: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_parquet.py");
    let out = run_with_timeout(
        std::process::Command::new(python())
            .arg(script)
            .arg(topic_dir),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "read_parquet.py: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v["pyarrow_rows"], v["duckdb_rows"],
        "the two readers disagree"
    );
    v
}

/// Every row of a topic's Parquet output as pyarrow reads it (timestamps as microseconds),
/// after checking DuckDB counts the same rows.
pub fn parquet_rows(topic_dir: &Path) -> Vec<serde_json::Value> {
    serde_json::from_value(read_parquet_report(topic_dir)["rows"].clone()).unwrap()
}
