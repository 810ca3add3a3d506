//! The one config layer, through the real binary: defaults < file < env < flags, and every
//! kind of bad config is a usage error (exit 2) naming the file or variable and the key.

mod common;

use common::{factorypal, stderr, stdout};
use factorypal::settings::Settings;

fn show(cmd: &mut std::process::Command) -> toml::Table {
    let out = cmd.arg("config").arg("show").output().unwrap();
    assert!(out.status.success(), "config show failed: {}", stderr(&out));
    stdout(&out).parse().expect("config show prints TOML")
}

fn get<'a>(t: &'a toml::Table, section: &str, key: &str) -> &'a toml::Value {
    &t[section][key]
}

#[test]
fn defaults_apply_without_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = show(&mut factorypal(dir.path()));
    assert_eq!(
        get(&t, "kafka", "bootstrap").as_str(),
        Some("127.0.0.1:9092")
    );
    assert_eq!(get(&t, "kafka", "timeout").as_float(), Some(10.0));
    assert_eq!(get(&t, "api", "bind").as_str(), Some("127.0.0.1:5000"));
    assert_eq!(get(&t, "api", "delay").as_float(), Some(0.1));
    assert_eq!(get(&t, "admin", "partitions").as_integer(), Some(3));
    assert_eq!(get(&t, "admin", "replication_factor").as_integer(), Some(1));
}

#[test]
fn file_then_env_then_flag_each_override_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/default.toml"),
        "[kafka]\nbootstrap = \"file:1\"\n[api]\nbind = \"127.0.0.1:7000\"\ndelay = 0.5\n[admin]\npartitions = 4\n",
    )
    .unwrap();

    // File over defaults.
    let t = show(&mut factorypal(dir.path()));
    assert_eq!(get(&t, "kafka", "bootstrap").as_str(), Some("file:1"));
    assert_eq!(get(&t, "api", "bind").as_str(), Some("127.0.0.1:7000"));
    assert_eq!(get(&t, "admin", "partitions").as_integer(), Some(4));

    // Env over file.
    let t = show(
        factorypal(dir.path())
            .env("FACTORYPAL__KAFKA__BOOTSTRAP", "env:2")
            .env("FACTORYPAL__API__BIND", "127.0.0.1:6000")
            .env("FACTORYPAL__ADMIN__PARTITIONS", "5"),
    );
    assert_eq!(get(&t, "kafka", "bootstrap").as_str(), Some("env:2"));
    assert_eq!(get(&t, "api", "bind").as_str(), Some("127.0.0.1:6000"));
    assert_eq!(get(&t, "admin", "partitions").as_integer(), Some(5));
    assert_eq!(
        get(&t, "api", "delay").as_float(),
        Some(0.5),
        "untouched keys keep the file's value"
    );

    // Flag over env.
    let t = show(
        factorypal(dir.path())
            .env("FACTORYPAL__KAFKA__BOOTSTRAP", "env:2")
            .args(["--bootstrap", "flag:3"]),
    );
    assert_eq!(get(&t, "kafka", "bootstrap").as_str(), Some("flag:3"));
}

#[test]
fn config_flag_names_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.toml");
    std::fs::write(&file, "[api]\ndata_dir = \"/srv/plant\"\n").unwrap();
    let t = show(factorypal(dir.path()).arg("--config").arg(&file));
    assert_eq!(get(&t, "api", "data_dir").as_str(), Some("/srv/plant"));
}

/// Runs `config show` expecting a usage error whose message contains every `needle`.
fn expect_usage_error(cmd: &mut std::process::Command, needles: &[&str]) {
    expect_usage_error_from(cmd.arg("config").arg("show"), needles)
}

/// Runs `cmd` as it is, expecting a usage error whose message contains every `needle`.
fn expect_usage_error_from(cmd: &mut std::process::Command, needles: &[&str]) {
    let out = common::run_with_timeout(cmd, std::time::Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
}

#[test]
fn bad_config_is_a_usage_error_naming_file_key_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");

    expect_usage_error(
        factorypal(dir.path()).args(["--config", "missing.toml"]),
        &["missing.toml", "does not exist"],
    );

    std::fs::write(&file, "[api\nbind = 1\n").unwrap();
    expect_usage_error(
        factorypal(dir.path()).arg("--config").arg(&file),
        &["c.toml", "not valid TOML", "line 1"],
    );

    std::fs::write(&file, "[api]\nbindd = \"127.0.0.1:1\"\n").unwrap();
    expect_usage_error(
        factorypal(dir.path()).arg("--config").arg(&file),
        &["c.toml", "api.bindd", "unknown setting", "api.bind"],
    );

    std::fs::write(&file, "[admin]\npartitions = \"many\"\n").unwrap();
    expect_usage_error(
        factorypal(dir.path()).arg("--config").arg(&file),
        &["c.toml", "admin.partitions", "integer"],
    );

    expect_usage_error(
        factorypal(dir.path()).env("FACTORYPAL__API__DELAY", "soon"),
        &["FACTORYPAL__API__DELAY", "api.delay", "floating point"],
    );
    expect_usage_error(
        factorypal(dir.path()).env("FACTORYPAL__KAFKA__TIMEOUTT", "3"),
        &["FACTORYPAL__KAFKA__TIMEOUTT", "kafka.timeoutt"],
    );
    expect_usage_error(
        factorypal(dir.path()).env("FACTORYPAL__API__BIND", "not-an-address"),
        &["api.bind", "environment variable FACTORYPAL__API__BIND"],
    );
    expect_usage_error(
        factorypal(dir.path()).env("FACTORYPAL__API__DELAY", "-1"),
        &["api.delay", "not negative"],
    );
    expect_usage_error(
        factorypal(dir.path()).env("FACTORYPAL__STATUS__BIND", "localhost:8080"),
        &["status.bind", "\"localhost:8080\"", "127.0.0.1:8080"],
    );
}

#[test]
fn bad_values_name_the_flag_or_variable_that_gave_them() {
    let dir = tempfile::tempdir().unwrap();
    // Settings load before any network, so no broker is needed to be refused.
    expect_usage_error_from(
        factorypal(dir.path()).args(["consume", "--trigger", "5x"]),
        &[
            "consumer.trigger",
            "flag --trigger",
            "\"5x\"",
            "available-now",
        ],
    );
    expect_usage_error(
        factorypal(dir.path()).args(["--bootstrap", ","]),
        &["kafka.bootstrap", "flag --bootstrap", "HOST:PORT"],
    );
    expect_usage_error_from(
        factorypal(dir.path()).args(["admin", "create-topic", "t", "--partitions=0"]),
        &["admin.partitions", "flag --partitions", "at least 1"],
    );
    expect_usage_error(
        factorypal(dir.path()).env("FACTORYPAL__PRODUCER__COMPRESSION", "brotli"),
        &[
            "producer.compression",
            "FACTORYPAL__PRODUCER__COMPRESSION",
            "\"brotli\" is not one of none, gzip, lz4, snappy, zstd",
        ],
    );
}

/// A duration too large for `Duration` used to load fine and panic where it was used (or, for
/// the trigger, panic while loading): now it is refused, naming the key.
#[test]
fn durations_beyond_a_year_are_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    expect_usage_error(
        factorypal(dir.path()).env("FACTORYPAL__PRODUCER__RETRY_DEADLINE", "1e30"),
        &["producer.retry_deadline", "at most 31536000"],
    );
    let huge = format!("{}h", "9".repeat(40));
    expect_usage_error(
        factorypal(dir.path()).env("FACTORYPAL__CONSUMER__TRIGGER", &huge),
        &["consumer.trigger", "at most a year"],
    );
}

/// A config file's keys, tables of settings flattened to dotted keys like
/// [`Settings::keys`] lists them.
fn file_keys(table: &toml::Table, prefix: &str, keys: &mut Vec<String>) {
    for (name, value) in table {
        let key = format!("{prefix}{name}");
        match value {
            toml::Value::Table(sub) if key != "consumer.topics" => {
                file_keys(sub, &format!("{key}."), keys)
            }
            _ => keys.push(key),
        }
    }
}

/// Adding a setting means documenting it: config/default.toml sets every key (so it shows
/// every default with its comment) and README's table has a row for it.
#[test]
fn every_setting_is_in_the_shipped_config_file_and_the_readme() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let keys = Settings::keys();
    assert!(keys.len() > 30, "{keys:?}");
    let file: toml::Table = std::fs::read_to_string(repo.join("config/default.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut in_file = Vec::new();
    file_keys(&file, "", &mut in_file);
    let missing: Vec<&String> = keys.iter().filter(|k| !in_file.contains(k)).collect();
    let unknown: Vec<&String> = in_file.iter().filter(|k| !keys.contains(k)).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "config/default.toml lacks {missing:?} and has unknown {unknown:?}"
    );

    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    for key in &keys {
        let row = if key == "consumer.topics" {
            "| `consumer.topics.NAME.schema` |".to_string()
        } else {
            format!("| `{key}` |")
        };
        assert!(
            readme.contains(&row),
            "README's Configuration table has no row {row}"
        );
    }
}

#[test]
fn the_shipped_config_file_matches_the_defaults() {
    // config/default.toml documents every key; it must load and agree with the built-in values.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let from_file = show(
        factorypal(repo)
            .arg("--config")
            .arg(repo.join("config/default.toml")),
    );
    let built_in = show(&mut factorypal(dir.path()));
    assert_eq!(from_file, built_in);
}

#[test]
fn completions_print_without_needing_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.toml"), "[api\n").unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = factorypal(dir.path())
            .args(["--config", "broken.toml", "completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains("factorypal") && script.contains("serve-api"),
            "{shell}"
        );
    }
}

#[test]
fn json_logs_are_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.json"), r#"[{"time": 1}]"#).unwrap();
    // serve-api logs what it loaded, then fails on a port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = common::run_with_timeout(
        factorypal(dir.path()).env("RUST_LOG", "info").args([
            "--log-format",
            "json",
            "serve-api",
            "--data-dir",
            ".",
            "--bind",
            &addr,
        ]),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let json_lines: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    assert!(
        json_lines
            .iter()
            .any(|l| l["fields"]["message"] == "loaded"),
        "{err}"
    );
}

#[test]
fn config_show_masks_the_secrets_a_url_carries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        r#"
[producer]
api_url = "http://ops:hunter2@gateway:8000/?token=s3cret"

[[producer.sources]]
name = "line3"
url = "http://plc:pa/ss@10.0.0.7/feed?key=k3y#frag"
topic = "metrics"
"#,
    )
    .unwrap();
    let out = factorypal(dir.path())
        .args(["--config", "c.toml", "config", "show"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    for secret in ["hunter2", "s3cret", "pa/ss", "k3y", "frag"] {
        assert!(!shown.contains(secret), "{secret} shows in:\n{shown}");
    }
    // What a reader needs to recognise the endpoints stays.
    let table: toml::Table = toml::from_str(&shown).unwrap();
    assert_eq!(
        get(&table, "producer", "api_url").as_str(),
        Some("http://ops:***@gateway:8000/?token=***")
    );
    let url = table["producer"]["sources"][0]["url"].as_str().unwrap();
    assert_eq!(url, "http://plc:***@10.0.0.7/feed?key=***#***");
}
