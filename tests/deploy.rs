//! compose.yaml and Dockerfile cannot run here (no Docker engine), so they are checked by
//! reading: every factorypal command line in them must parse with the real CLI, and every
//! FACTORYPAL__ variable must name a real setting with a valid value.

use std::path::Path;

use clap::Parser;
use factorypal::cli::Cli;
use factorypal::settings::{Settings, SettingsSources};
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

fn compose() -> Yaml {
    YamlLoader::load_from_str(&repo_file("compose.yaml"))
        .expect("compose.yaml is valid YAML")
        .remove(0)
}

/// A service's key, looking through a `<<` merge as compose does.
fn field<'a>(service: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    let own = &service[key];
    if !own.is_badvalue() {
        return Some(own);
    }
    let merged = &service["<<"][key];
    (!merged.is_badvalue()).then_some(merged)
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// A command line must parse; `--help` and `--version` count as parsing.
fn assert_parses(args: &[String], whence: &str) {
    let mut argv = vec!["factorypal".to_string()];
    argv.extend_from_slice(args);
    if let Err(e) = Cli::try_parse_from(&argv) {
        use clap::error::ErrorKind;
        assert!(
            matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion),
            "{whence}: `{}` does not parse: {e}",
            argv.join(" ")
        );
    }
}

#[test]
fn every_factorypal_command_in_compose_parses() {
    let doc = compose();
    let services = doc["services"].as_hash().expect("services");
    let mut checked = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let image = field(service, "image")
            .and_then(Yaml::as_str)
            .unwrap_or_default();
        if !image.starts_with("factorypal") {
            continue;
        }
        let command = field(service, "command").unwrap_or_else(|| panic!("{name}: no command"));
        assert_parses(&strings(command), &format!("compose service {name}"));
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} factorypal services found");
}

/// The `FACTORYPAL__` variables a service sets, with `<<` merges applied.
fn factorypal_vars(name: &str, service: &Yaml) -> Vec<(String, String)> {
    let Some(env) = field(service, "environment").and_then(Yaml::as_hash) else {
        return Vec::new();
    };
    env.iter()
        .map(|(k, v)| {
            let value = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Real(r) => r.clone(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("{name}: {k:?}: unexpected value {other:?}"),
            };
            (k.as_str().unwrap().to_string(), value)
        })
        .filter(|(k, _)| k.starts_with("FACTORYPAL__"))
        .collect()
}

/// Loads every factorypal service's `FACTORYPAL__` variables through the real settings, and
/// checks that every service that talks to Kafka is told where it is (the built-in
/// `127.0.0.1:9092` is nobody inside a container). Returns how many variables were loaded.
fn check_compose_variables(doc: &Yaml) -> Result<usize, String> {
    let mut loaded = 0;
    for (name, service) in doc["services"].as_hash().expect("services") {
        let name = name.as_str().unwrap();
        let image = field(service, "image").and_then(Yaml::as_str);
        if !image.unwrap_or_default().starts_with("factorypal") {
            continue;
        }
        let vars = factorypal_vars(name, service);
        let sources = SettingsSources {
            config_file: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml")),
            ..SettingsSources::default()
        };
        Settings::load_with_env(&sources, vars.clone())
            .map_err(|e| format!("compose service {name:?}: {vars:?} is not valid: {e}"))?;
        loaded += vars.len();
        let command = field(service, "command").map(strings).unwrap_or_default();
        let uses_kafka = command.first().is_some_and(|c| c != "serve-api");
        let told = vars
            .iter()
            .any(|(k, _)| k == "FACTORYPAL__KAFKA__BOOTSTRAP")
            || command.iter().any(|a| a == "--bootstrap");
        if uses_kafka && !told {
            return Err(format!(
                "compose service {name:?} ({command:?}) talks to Kafka but sets neither \
                 FACTORYPAL__KAFKA__BOOTSTRAP nor --bootstrap"
            ));
        }
    }
    Ok(loaded)
}

#[test]
fn every_factorypal_variable_in_compose_is_a_real_setting() {
    let loaded = check_compose_variables(&compose()).unwrap_or_else(|e| panic!("{e}"));
    // A floor, like the command check's: a compose file that lost its variables must fail.
    assert!(loaded >= 5, "only {loaded} FACTORYPAL__ variables found");
}

/// The check above can fail: the same compose file without its `FACTORYPAL__` variables, or
/// with one that names no setting, is refused.
#[test]
fn the_compose_variable_check_refuses_a_compose_without_them() {
    let text = repo_file("compose.yaml");
    let stripped: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("FACTORYPAL__"))
        .map(|l| format!("{l}\n"))
        .collect();
    let doc = YamlLoader::load_from_str(&stripped).unwrap().remove(0);
    let error = check_compose_variables(&doc).expect_err("no variables, yet accepted");
    assert!(error.contains("FACTORYPAL__KAFKA__BOOTSTRAP"), "{error}");

    let misspelt = text.replace("FACTORYPAL__API__DELAY", "FACTORYPAL__API__DELAAY");
    let doc = YamlLoader::load_from_str(&misspelt).unwrap().remove(0);
    let error = check_compose_variables(&doc).expect_err("a misspelt key, yet accepted");
    assert!(error.contains("api.delaay"), "{error}");
}

#[test]
fn compose_starts_in_order_without_fixed_addresses() {
    let text = repo_file("compose.yaml");
    assert!(!text.contains("ipv4_address") && !text.contains("ipv6_address"));
    let doc = compose();
    let kafka = &doc["services"]["kafka"];
    assert!(
        kafka["image"]
            .as_str()
            .unwrap()
            .starts_with("apache/kafka:")
    );
    assert_eq!(
        kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].as_str(),
        Some("false")
    );
    assert!(
        !kafka["healthcheck"].is_badvalue(),
        "kafka needs a health check"
    );
    for service in ["produce", "consume"] {
        let depends = &doc["services"][service]["depends_on"];
        let conditions: Vec<&str> = depends
            .as_hash()
            .unwrap_or_else(|| panic!("{service}: depends_on with conditions"))
            .values()
            .map(|d| d["condition"].as_str().unwrap())
            .collect();
        assert!(
            conditions.contains(&"service_completed_successfully"),
            "{service}"
        );
    }
    let consume = &doc["services"]["consume"];
    assert!(
        strings(&consume["volumes"])
            .iter()
            .any(|v| v.starts_with("./database:"))
    );
}

/// The address a service's status server binds: `--status-bind` in its command, else
/// `FACTORYPAL__STATUS__BIND` in its environment.
fn status_bind(service: &Yaml) -> Option<std::net::SocketAddr> {
    let command = strings(field(service, "command")?);
    let from_flag = command
        .iter()
        .position(|a| a == "--status-bind")
        .map(|i| command[i + 1].clone());
    let from_env = field(service, "environment")
        .map(|env| &env["FACTORYPAL__STATUS__BIND"])
        .and_then(Yaml::as_str)
        .map(String::from);
    from_flag
        .or(from_env)
        .map(|a| a.parse().expect("an address"))
}

#[test]
fn the_consumer_serves_its_status_page_on_8080() {
    let doc = compose();
    let consume = &doc["services"]["consume"];
    let bind = status_bind(consume).expect("consume runs a status server");
    assert_eq!(bind.port(), 8080);
    assert!(
        bind.ip().is_unspecified(),
        "{bind}: inside a container the status server must listen on all interfaces to be reachable"
    );
    assert!(
        strings(&consume["ports"]).contains(&"8080:8080".to_string()),
        "port 8080 is published"
    );
    let check = strings(&consume["healthcheck"]["test"]).join(" ");
    assert!(
        check.contains("8080"),
        "the health check looks at the status server: {check}"
    );
    // Every other published status port matches its server too.
    for (name, service) in doc["services"].as_hash().unwrap() {
        if let Some(bind) = status_bind(service) {
            let published = format!("{0}:{0}", bind.port());
            assert!(
                strings(&service["ports"]).contains(&published),
                "{name:?} serves status on {bind} but does not publish {published}"
            );
        }
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_the_right_entrypoint() {
    let text = repo_file("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage build"
    );
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(
        !user.ends_with("root") && !user.ends_with(" 0"),
        "runs as non-root: {user}"
    );
    assert!(lines.contains(&r#"ENTRYPOINT ["factorypal"]"#));
    for dir in ["config", "data_source"] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("COPY {dir} "))),
            "the image ships {dir}/"
        );
    }
    let cmd = lines
        .iter()
        .find(|l| l.starts_with("CMD "))
        .expect("a CMD line");
    let args: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD ")).unwrap();
    assert_parses(&args, "Dockerfile CMD");
}

/// serve-api listens on loopback by default, which no other container can reach: compose must
/// bind it to every interface itself, on the port it publishes and the producer uses.
#[test]
fn the_api_listens_on_every_interface_in_its_container() {
    let doc = compose();
    let api = &doc["services"]["api"];
    let command = strings(field(api, "command").expect("the api service has a command"));
    let bind = command
        .iter()
        .position(|a| a == "--bind")
        .map(|i| command[i + 1].clone())
        .or_else(|| {
            field(api, "environment")
                .map(|env| &env["FACTORYPAL__API__BIND"])
                .and_then(Yaml::as_str)
                .map(String::from)
        })
        .expect("the api service sets its bind address (--bind or FACTORYPAL__API__BIND)");
    let bind: std::net::SocketAddr = bind.parse().expect("an address");
    assert!(bind.ip().is_unspecified(), "{bind}");
    assert!(
        strings(&api["ports"]).contains(&format!("{0}:{0}", bind.port())),
        "port {} is published",
        bind.port()
    );
    let produce = strings(&doc["services"]["produce"]["command"]).join(" ");
    assert!(
        produce.contains(&format!("http://api:{}", bind.port())),
        "{produce}"
    );
}
