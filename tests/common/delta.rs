//! Delta tables as independent readers see them (`tests/delta_read.py`: the Python `deltalake`
//! package and DuckDB's delta extension, which must agree), and the local S3 (s3proxy) that
//! scripts/test.sh starts, whose settings are the `export` lines of the file
//! `FACTORYPAL_TEST_S3_ENV` names (scripts/s3proxy-local.sh writes it).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{Spawned, python, run_with_timeout, stderr, stdout};

/// The s3proxy's settings as `(name, value)` pairs (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `FACTORYPAL__STORAGE__ENDPOINT`,
/// `FACTORYPAL__STORAGE__REGION`, `FACTORYPAL__STORAGE__ALLOW_HTTP`,
/// `FACTORYPAL_TEST_S3_BUCKET`), ready for `Command::envs`; `None` when
/// `FACTORYPAL_TEST_S3_ENV` is not set. Panics if the file it names cannot be read.
pub fn s3_env() -> Option<Vec<(String, String)>> {
    let file = std::env::var("FACTORYPAL_TEST_S3_ENV").ok()?;
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "FACTORYPAL_TEST_S3_ENV={file}: {e} (start one with scripts/s3proxy-local.sh start, \
             or run scripts/test.sh)"
        )
    });
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(
        vars.iter().any(|(k, _)| k == "FACTORYPAL_TEST_S3_BUCKET"),
        "{file} has no FACTORYPAL_TEST_S3_BUCKET line (not written by scripts/s3proxy-local.sh?)"
    );
    Some(vars)
}

/// A fresh `s3://BUCKET/NAME-PID-N` on the test s3proxy (nothing is there yet), or `None`
/// when `FACTORYPAL_TEST_S3_ENV` is not set.
pub fn s3_test_url(name: &str) -> Option<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let vars = s3_env()?;
    let bucket = &vars
        .iter()
        .find(|(k, _)| k == "FACTORYPAL_TEST_S3_BUCKET")?
        .1;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Some(format!("s3://{bucket}/{name}-{}-{n}", std::process::id()))
}

/// `python tests/delta_read.py ARGS` with the s3proxy's settings in its environment.
fn delta_read_command(args: &[&str]) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_read.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).args(args);
    if let Some(vars) = s3_env() {
        cmd.envs(vars);
    }
    cmd
}

/// The Delta table at `uri` (a local path or `s3://...`) as `tests/delta_read.py` reports it,
/// after deltalake and DuckDB agreed on it: `{"version", "files", "partition_columns",
/// "schema": [{"name", "type"}], "rows": [{...}]}`, timestamps as microseconds since the epoch,
/// floats exact. Panics with the reader's stderr if it fails or the readers disagree.
pub fn read_delta(uri: &str) -> serde_json::Value {
    let text = read_delta_text(uri);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("tests/delta_read.py {uri} printed no JSON document ({e}): {text}")
    })
}

/// [`read_delta`]'s document as the reader printed it. Hand this, not a re-serialised
/// `Value`, to a Python judge: serde_json's float parsing is not correctly rounded, so a
/// round trip through it can move a value by one ulp.
pub fn read_delta_text(uri: &str) -> String {
    let out = run_with_timeout(&mut delta_read_command(&[uri]), Duration::from_secs(300));
    assert!(
        out.status.success(),
        "tests/delta_read.py {uri}: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Starts `tests/delta_read.py URI --poll SECONDS --out OUT --key KEYS` in the background: it
/// reads each new version of the table for at most `seconds` or until SIGTERM, and writes its
/// summary (`finished`, `versions`, `max_rows`, `violations`, `errors`) to `out` after each
/// version and at its end. Stop it with `send_signal(p.child.id(), "TERM")` and
/// `p.finish(...)`: exit 0 if no version held a duplicate key or lost a key.
pub fn delta_poller(uri: &str, seconds: u64, out: &Path, keys: &[&str]) -> Spawned {
    let seconds = seconds.to_string();
    let out = out.to_str().expect("a UTF-8 path");
    let keys = keys.join(",");
    Spawned::start(&mut delta_read_command(&[
        uri, "--poll", &seconds, "--out", out, "--key", &keys,
    ]))
}
