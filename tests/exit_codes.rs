//! Exit codes as a script sees them: 2 when the request cannot work as given (fix the flags,
//! config or input), 1 when the operation failed. Each case runs the real binary; the usage
//! errors are wrapped in other errors on their way to `main`, which is what these check.

mod common;

use std::time::Duration;

use common::{factorypal, run_with_timeout, stderr};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn an_invalid_topic_name_from_consume_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[consumer.topics.\"bad name!\".schema]\nx = \"int64\"\n",
    )
    .unwrap();
    let out = run_with_timeout(
        factorypal(dir.path()).args([
            "--config",
            "c.toml",
            "--bootstrap",
            &common::bootstrap(),
            "consume",
            "--topics",
            "bad name!",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid topic name \"bad name!\""));
}

#[test]
fn an_invalid_topic_name_from_admin_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        factorypal(dir.path()).args([
            "--bootstrap",
            &common::bootstrap(),
            "admin",
            "create-topic",
            "no/slashes",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_data_dir_that_cannot_be_served_is_a_usage_error_and_a_busy_port_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = run_with_timeout(
        factorypal(dir.path()).args([
            "serve-api",
            "--data-dir",
            "nowhere",
            "--bind",
            "127.0.0.1:0",
        ]),
        LIMIT,
    );
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("nowhere"), "{}", stderr(&missing));

    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/m.json"), r#"[{"time": 1}]"#).unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = run_with_timeout(
        factorypal(dir.path()).args(["serve-api", "--data-dir", "data", "--bind", &addr]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("cannot listen on {addr}")));
}

#[test]
fn a_broker_that_does_not_answer_is_a_failure_not_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_with_timeout(
        factorypal(dir.path())
            .env("FACTORYPAL__KAFKA__TIMEOUT", "2")
            .args([
                "--bootstrap",
                &format!("127.0.0.1:{port}"),
                "admin",
                "list-topics",
            ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not reach Kafka"),
        "{}",
        stderr(&out)
    );
}

/// `run` streams until stopped: an `available-now` trigger would end its consumers, and with
/// them its producers, at once, so it is refused before anything starts.
#[test]
fn run_with_an_available_now_trigger_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        factorypal(dir.path()).args([
            "--bootstrap",
            &common::bootstrap(),
            "run",
            "--trigger",
            "available-now",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not available-now"),
        "{}",
        stderr(&out)
    );
}
