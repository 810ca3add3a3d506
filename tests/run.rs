//! `factorypal run`, the whole pipeline in one process, against the real broker: where its
//! producers look for its API, and what a failure does to the rest of the run.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    bootstrap, configured, kcat_read, parquet_rows, run_with_timeout, sample_data, stderr,
    unique_topic, write_run_config,
};

/// Rewrites `dir/c.toml` with `from` replaced by `to`.
fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("c.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// The producers read the built-in API where it is bound, not at 127.0.0.1 whatever the bind:
/// an API on another loopback address, or on IPv6, is reached all the same.
#[test]
fn run_reaches_its_api_where_it_is_bound() {
    for bind in ["127.0.0.2:0", "[::1]:0"] {
        let data = sample_data(200, 20);
        let dir = tempfile::tempdir().unwrap();
        let metrics = unique_topic("rb-metrics");
        let workorder = unique_topic("rb-workorder");
        write_run_config(
            dir.path(),
            data.path(),
            &metrics,
            &workorder,
            "trigger = \"200ms\"",
        );
        edit_config(
            dir.path(),
            "bind = \"127.0.0.1:0\"",
            &format!("bind = \"{bind}\""),
        );
        let out = run_with_timeout(
            configured(dir.path(), "run", &["--until-drained", "--delay", "0"])
                // An API it cannot reach fails the run in seconds, not after two minutes.
                .env("FACTORYPAL__PRODUCER__RETRY_DEADLINE", "5"),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{bind}: {}", stderr(&out));
        // Read back by an independent client (kcat) and independent Parquet readers.
        assert_eq!(kcat_read(&bootstrap(), &metrics).len(), 200, "{bind}");
        assert_eq!(kcat_read(&bootstrap(), &workorder).len(), 20, "{bind}");
        let rows = parquet_rows(&dir.path().join("out").join(&metrics));
        assert_eq!(rows.len(), 200, "{bind}");
    }
}
