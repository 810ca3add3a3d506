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

#[test]
fn every_factorypal_variable_in_compose_is_a_real_setting() {
    let doc = compose();
    for (name, service) in doc["services"].as_hash().unwrap() {
        let Some(env) = field(service, "environment").and_then(Yaml::as_hash) else {
            continue;
        };
        let vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Real(r) => r.clone(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => panic!("{k:?}: unexpected value {other:?}"),
                };
                (k.as_str().unwrap().to_string(), value)
            })
            .filter(|(k, _)| k.starts_with("FACTORYPAL__"))
            .collect();
        if vars.is_empty() {
            continue;
        }
        let sources = SettingsSources {
            config_file: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml")),
            overrides: Vec::new(),
        };
        if let Err(e) = Settings::load_with_env(&sources, vars.clone()) {
            panic!("compose service {name:?}: {vars:?} is not valid: {e}");
        }
    }
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
