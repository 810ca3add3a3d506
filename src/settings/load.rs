//! Reading the layers into [`Settings`]: the config file, `FACTORYPAL__*` variables and flag
//! overrides are merged by the `config` crate, every key is checked against the keys
//! [`Settings`] has, and serde builds the typed values. Every error names the key and where
//! its value came from: the config file as the user named it, the exact environment
//! variable, or the flag.

use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat, Value, ValueKind};

use super::Settings;
use super::validate::{Invalid, validate};
use crate::excerpt::redact_url;

/// The config file read when `--config` is not given. A missing default file is fine (the
/// built-in defaults apply); a missing file named with `--config` is an error.
pub const DEFAULT_CONFIG_FILE: &str = "config/default.toml";

/// Environment variables `FACTORYPAL__API__BIND` and the like set `api.bind`.
pub const ENV_PREFIX: &str = "FACTORYPAL";
pub const ENV_SEPARATOR: &str = "__";

/// The origin the `config` crate gives values from the environment.
const ENV_ORIGIN: &str = "the environment";
/// The start of the origin of a value set by a flag: `flag --bind`.
const FLAG_ORIGIN: &str = "flag --";

/// Tables whose keys are names the user chooses (topics), not settings; serde checks inside.
const OPEN_TABLES: &[&str] = &["consumer.topics"];

impl crate::failure::Classify for SettingsError {
    fn is_usage(&self) -> bool {
        true
    }
}

/// Why the settings could not be loaded. Every variant is a usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {path} does not exist: create it or point --config at an existing file")]
    MissingFile { path: PathBuf },
    #[error("config file {path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {reason}")]
    MalformedFile { path: PathBuf, reason: String },
    #[error("unknown setting `{key}` (from {origin}); valid keys are: {valid}")]
    UnknownKey {
        key: String,
        origin: String,
        valid: String,
    },
    #[error("setting `{key}` (from {origin}) has the wrong type: {reason}")]
    WrongType {
        key: String,
        origin: String,
        reason: String,
    },
    #[error("setting `{key}` (from {origin}) is invalid: {reason}")]
    Invalid {
        key: String,
        origin: String,
        reason: String,
    },
    #[error("could not load settings: {0}")]
    Config(#[source] config::ConfigError),
    #[error("could not print the settings as TOML: {0}")]
    Show(#[source] toml::ser::Error),
}

/// One command-line flag that sets a setting, applied over every other layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The dotted key, e.g. `api.bind`.
    pub key: String,
    /// The value as typed; the setting's type parses it like any other layer's text.
    pub value: String,
    /// The flag's long name without dashes, e.g. `bind`: errors name `flag --bind`.
    pub flag: String,
}

/// Where the settings come from, besides the built-in defaults and the environment.
#[derive(Debug, Default, Clone)]
pub struct SettingsSources {
    /// `--config FILE`; `None` reads [`DEFAULT_CONFIG_FILE`] if it exists.
    pub config_file: Option<PathBuf>,
    /// Command-line flags, applied last.
    pub overrides: Vec<Override>,
}

impl SettingsSources {
    /// Sets `key` to `value`, as flag `--flag` does.
    pub fn set(&mut self, key: &str, value: &str, flag: &str) {
        self.overrides.push(Override {
            key: key.to_string(),
            value: value.to_string(),
            flag: flag.to_string(),
        });
    }

    /// The config file as the user named it, for messages.
    fn file_label(&self) -> String {
        let path = self.config_file.as_deref();
        path.unwrap_or(Path::new(DEFAULT_CONFIG_FILE))
            .display()
            .to_string()
    }
}

impl Settings {
    /// Loads the settings from every layer, using the process environment.
    pub fn load(sources: &SettingsSources) -> Result<Self, SettingsError> {
        Self::load_with_env(sources, std::env::vars())
    }

    /// Like [`Settings::load`], with the environment passed in (so tests need not mutate theirs).
    pub fn load_with_env(
        sources: &SettingsSources,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let config = merge_layers(sources, env)?;
        let origins = Origins {
            config: &config,
            file_label: sources.file_label(),
        };
        check_known_keys(&config, &origins)?;
        let settings: Settings = config
            .clone()
            .try_deserialize()
            .map_err(|e| origins.deserialize_error(e))?;
        validate(&settings).map_err(|Invalid { key, reason }| SettingsError::Invalid {
            origin: origins.of(&key),
            key,
            reason,
        })?;
        Ok(settings)
    }

    /// The effective settings as TOML, for `factorypal config show`, with the secrets a URL
    /// may carry (a password, query values) masked: this output ends up in bug reports.
    pub fn to_toml(&self) -> Result<String, SettingsError> {
        let mut shown = self.clone();
        let producer = &mut shown.producer;
        producer.api_url = redact_url(&producer.api_url);
        for source in &mut producer.sources {
            source.url = source.url.as_deref().map(redact_url);
        }
        toml::to_string(&shown).map_err(SettingsError::Show)
    }

    /// Every setting's dotted key (`api.bind`), in the order `config show` prints them. A
    /// list of tables (`producer.sources`) or a table of user-chosen names
    /// (`consumer.topics`) counts as one setting.
    pub fn keys() -> Vec<String> {
        let mut keys = Vec::new();
        if let Ok(defaults) = default_table() {
            collect_keys(&defaults, "", &mut keys);
        }
        keys
    }
}

fn collect_keys(table: &toml::Table, prefix: &str, keys: &mut Vec<String>) {
    for (name, value) in table {
        let key = format!("{prefix}{name}");
        match value {
            toml::Value::Table(sub) if !OPEN_TABLES.contains(&key.as_str()) => {
                collect_keys(sub, &format!("{key}."), keys)
            }
            _ => keys.push(key),
        }
    }
}

/// The built-in defaults as a TOML table: the shape every layer is checked against.
fn default_table() -> Result<toml::Table, SettingsError> {
    toml::Table::try_from(Settings::default()).map_err(SettingsError::Show)
}

/// File < environment < flags, merged (not yet typed).
fn merge_layers(
    sources: &SettingsSources,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, SettingsError> {
    let mut builder = Config::builder();
    match &sources.config_file {
        Some(path) => builder = builder.add_source(read_file(path, true)?),
        None => {
            let path = Path::new(DEFAULT_CONFIG_FILE);
            if path.exists() {
                builder = builder.add_source(read_file(path, false)?);
            }
        }
    }
    let (text, typed): (config::Map<String, String>, config::Map<String, String>) = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
        .partition(|(k, _)| is_text_only(k));
    for (env, parse) in [(typed, true), (text, false)] {
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .separator(ENV_SEPARATOR)
                .try_parsing(parse)
                .source(Some(env)),
        );
    }
    for o in &sources.overrides {
        let origin = format!("{FLAG_ORIGIN}{}", o.flag);
        let value = Value::new(Some(&origin), o.value.as_str());
        builder = builder
            .set_override(o.key.as_str(), value)
            .map_err(SettingsError::Config)?;
    }
    builder.build().map_err(SettingsError::Config)
}

/// Settings whose environment value is taken as written, never parsed as a number or a
/// boolean first: parsing would turn a password `007` into `7`, or `1e3` into `1000`.
const TEXT_ONLY_KEYS: &[&str] = &[
    "storage.endpoint",
    "storage.region",
    "kafka.sasl_password",
    "kafka.sasl_username",
    "kafka.client_id",
    "report.workorder_topic",
    "report.product_column",
    "report.output_column",
    "report.workorder_time_column",
    "report.metrics_topic",
    "report.metric_id_column",
    "report.metric_value_column",
    "report.metric_time_column",
];

/// Whether the environment variable `name` sets one of [`TEXT_ONLY_KEYS`].
fn is_text_only(name: &str) -> bool {
    let key = name
        .trim_start_matches(ENV_PREFIX)
        .trim_start_matches(ENV_SEPARATOR)
        .replace(ENV_SEPARATOR, ".")
        .to_ascii_lowercase();
    TEXT_ONLY_KEYS.contains(&key.as_str())
}

fn read_file(
    path: &Path,
    required: bool,
) -> Result<File<config::FileSourceFile, FileFormat>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound && required {
            SettingsError::MissingFile { path: path.into() }
        } else {
            SettingsError::Unreadable {
                path: path.into(),
                source,
            }
        }
    })?;
    // Parse once here so a syntax error names the file, line and column.
    if let Err(e) = text.parse::<toml::Table>() {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        return Err(SettingsError::MalformedFile {
            path: path.into(),
            reason: format!("{}{}", at.unwrap_or_default(), e.message()),
        });
    }
    // Read through the path (not the text) so every value remembers which file set it.
    Ok(File::from(path).format(FileFormat::Toml).required(true))
}

/// Names where each merged value came from.
struct Origins<'a> {
    config: &'a Config,
    file_label: String,
}

impl Origins<'_> {
    /// Where the value at `key` (`a.b`, `a.list[0].c`) came from, as a user recognizes it:
    /// `config file PATH`, `environment variable FACTORYPAL__A__B` or `flag --b`.
    fn of(&self, key: &str) -> String {
        let raw = value_at(&self.config.cache, key).and_then(first_origin);
        self.name(raw, key)
    }

    fn name(&self, raw: Option<&str>, key: &str) -> String {
        match raw {
            Some(ENV_ORIGIN) => format!(
                "environment variable {ENV_PREFIX}{ENV_SEPARATOR}{}",
                key.to_uppercase().replace('.', ENV_SEPARATOR)
            ),
            Some(flag) if flag.starts_with(FLAG_ORIGIN) => flag.to_string(),
            Some(_) => format!("config file {}", self.file_label),
            None => "the built-in defaults".to_string(),
        }
    }

    /// A serde error while typing the merged values, with its key and origin named.
    fn deserialize_error(&self, err: config::ConfigError) -> SettingsError {
        use config::ConfigError as E;
        match err {
            E::Type {
                unexpected,
                expected,
                key,
                ..
            } => {
                let key = key.unwrap_or_default();
                SettingsError::WrongType {
                    origin: self.of(&key),
                    key,
                    reason: format!("found {unexpected}, expected {expected}"),
                }
            }
            E::At { error, key, .. } => {
                let key = key.unwrap_or_default();
                SettingsError::Invalid {
                    origin: self.of(&key),
                    key,
                    reason: error.to_string(),
                }
            }
            E::NotFound(key) => {
                let key = dotted_after_index(&key);
                let parent = key.rsplit_once(['.', '[']).map_or("", |(p, _)| p);
                SettingsError::Invalid {
                    origin: self.of(parent),
                    key,
                    reason: "required, but not given".into(),
                }
            }
            other => SettingsError::Config(other),
        }
    }
}

/// `config` joins a list index and the field after it without a dot (`a[0]b`); puts it back.
fn dotted_after_index(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']' && chars.peek().is_some_and(|next| !matches!(next, '[' | '.')) {
            out.push('.');
        }
    }
    out
}

/// The merged value at a dotted key with optional list indices (`producer.sources[0].name`).
fn value_at<'v>(root: &'v Value, key: &str) -> Option<&'v Value> {
    let mut value = root;
    for segment in key.split('.').filter(|s| !s.is_empty()) {
        let (name, indices) = segment.split_once('[').unwrap_or((segment, ""));
        if !name.is_empty() {
            match &value.kind {
                ValueKind::Table(table) => value = table.get(name)?,
                _ => return None,
            }
        }
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            match &value.kind {
                ValueKind::Array(items) => value = items.get(i)?,
                _ => return None,
            }
        }
    }
    Some(value)
}

/// A value's origin, or for a table or list without one, that of its first member that has one.
fn first_origin(value: &Value) -> Option<&str> {
    value.origin().or_else(|| match &value.kind {
        ValueKind::Table(table) => table.values().find_map(first_origin),
        ValueKind::Array(items) => items.iter().find_map(first_origin),
        _ => None,
    })
}

/// Compares every key the layers set against the keys of [`Settings`], so a typo is an error
/// that names the key instead of a setting that silently does nothing.
fn check_known_keys(config: &Config, origins: &Origins) -> Result<(), SettingsError> {
    match &config.cache.kind {
        ValueKind::Table(table) => check_table(table, &default_table()?, "", origins),
        _ => Ok(()),
    }
}

fn check_table(
    actual: &config::Map<String, Value>,
    known: &toml::Table,
    prefix: &str,
    origins: &Origins,
) -> Result<(), SettingsError> {
    for (key, value) in actual {
        let path = format!("{prefix}{key}");
        match known.get(key) {
            None => {
                return Err(SettingsError::UnknownKey {
                    origin: origins.name(first_origin(value), &path),
                    valid: known
                        .keys()
                        .map(|k| format!("{prefix}{k}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    key: path,
                });
            }
            Some(toml::Value::Table(_)) if OPEN_TABLES.contains(&path.as_str()) => {}
            Some(toml::Value::Table(sub)) => match &value.kind {
                ValueKind::Table(inner) => check_table(inner, sub, &format!("{path}."), origins)?,
                _ => {
                    return Err(SettingsError::WrongType {
                        origin: origins.name(first_origin(value), &path),
                        key: path,
                        reason: "expected a table (section)".into(),
                    });
                }
            },
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)], flags: &[(&str, &str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = SettingsSources::default();
        if let Some(text) = file {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            sources.config_file = Some(path);
        } else {
            sources.config_file = Some(dir.path().join("none.toml"));
            std::fs::write(dir.path().join("none.toml"), "").unwrap();
        }
        for (key, value, flag) in flags {
            sources.set(key, value, flag);
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        match Settings::load_with_env(&sources, env) {
            Ok(settings) => settings.to_toml().unwrap(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// A password or user name that looks like a number reaches the login as written.
    #[test]
    fn secrets_from_the_environment_are_taken_as_written() {
        for raw in ["007", "1e3", "TRUE", "0x10", "-0"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.toml");
            std::fs::write(&path, "").unwrap();
            let sources = SettingsSources {
                config_file: Some(path),
                ..SettingsSources::default()
            };
            let env = [
                ("FACTORYPAL__KAFKA__SECURITY_PROTOCOL", "sasl_plaintext"),
                ("FACTORYPAL__KAFKA__SASL_USERNAME", raw),
                ("FACTORYPAL__KAFKA__SASL_PASSWORD", raw),
                ("FACTORYPAL__KAFKA__CLIENT_ID", raw),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()));
            let settings = Settings::load_with_env(&sources, env).unwrap();
            assert_eq!(settings.kafka.sasl_password.expose(), raw);
            assert_eq!(settings.kafka.sasl_username, raw);
            assert_eq!(settings.kafka.client_id, raw);
        }
    }

    #[test]
    fn errors_name_the_key_and_where_the_value_came_from() {
        let e = load(None, &[("FACTORYPAL__API__BIND", "nope")], &[]);
        assert!(
            e.contains("`api.bind` (from environment variable FACTORYPAL__API__BIND)"),
            "{e}"
        );
        let e = load(Some("[consumer]\ntrigger = \"5x\"\n"), &[], &[]);
        assert!(e.contains("`consumer.trigger` (from config file"), "{e}");
        assert!(
            e.contains("c.toml) is invalid: \"5x\" is not an interval"),
            "{e}"
        );
        let e = load(None, &[], &[("consumer.trigger", "-1s", "trigger")]);
        assert!(
            e.contains("`consumer.trigger` (from flag --trigger)"),
            "{e}"
        );
        let e = load(None, &[], &[("admin.partitions", "0", "partitions")]);
        assert!(e.contains("`admin.partitions` (from flag --partitions) is invalid: expected at least 1; found 0"), "{e}");
        let e = load(
            None,
            &[("FACTORYPAL__PRODUCER__RETRY_DEADLINE", "1e30")],
            &[],
        );
        assert!(e.contains("`producer.retry_deadline` (from environment variable FACTORYPAL__PRODUCER__RETRY_DEADLINE) is invalid: expected a number of seconds, at least 0.001"), "{e}");
        let e = load(
            Some("[[producer.sources]]\nname = \"a\"\npath = \"/a\"\n"),
            &[],
            &[],
        );
        assert!(
            e.contains("`producer.sources[0].topic` (from config file"),
            "{e}"
        );
        assert!(e.contains("required"), "{e}");
        let e = load(
            Some(
                "[[producer.sources]]\nname = \"a\"\npath = \"/a\"\nurl = \"http://x/\"\ntopic = \"t\"\n",
            ),
            &[],
            &[],
        );
        assert!(e.contains("`producer.sources` (from config file"), "{e}");
        assert!(e.contains("exactly one of `path` and `url`"), "{e}");
        let e = load(Some("[producer]\ncompression = \"brotli\"\n"), &[], &[]);
        assert!(
            e.contains("`producer.compression` (from config file"),
            "{e}"
        );
        assert!(e.contains("brotli") && e.contains("zstd"), "{e}");
    }

    #[test]
    fn flags_win_and_are_parsed_like_any_other_text() {
        let shown = load(
            Some("[api]\ndelay = 0.5\n"),
            &[("FACTORYPAL__API__DELAY", "0.7")],
            &[
                ("api.delay", "0.25", "delay"),
                ("consumer.trigger", "1500ms", "trigger"),
            ],
        );
        let t: toml::Table = shown.parse().unwrap();
        assert_eq!(t["api"]["delay"].as_float(), Some(0.25), "{shown}");
        assert_eq!(t["consumer"]["trigger"].as_str(), Some("1500ms"), "{shown}");
    }

    #[test]
    fn keys_list_every_setting_once() {
        let keys = Settings::keys();
        for key in [
            "kafka.bootstrap",
            "api.delay",
            "producer.sources",
            "consumer.topics",
            "status.bind",
        ] {
            assert_eq!(
                keys.iter().filter(|k| *k == key).count(),
                1,
                "{key} in {keys:?}"
            );
        }
        assert!(
            !keys.iter().any(|k| k.starts_with("consumer.topics.")),
            "{keys:?}"
        );
    }
}
