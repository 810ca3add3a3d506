//! Connection security: the `kafka.security_protocol`, `kafka.ssl_*` and `kafka.sasl_*`
//! settings turned, once per client, into a TLS configuration and a SASL login that both our
//! own requests ([`super::wire`]) and rskafka's connections use. Reading the files happens
//! here, so a missing CA file, a PEM that does not parse or an empty password file is a usage
//! error at start that names the key and the file.
//!
//! The password lives in a [`Secret`] from the settings to the login: nothing here prints it.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use rskafka::client::{ClientBuilder, Credentials, SaslConfig};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::settings::{
    EndpointIdentification, KafkaSettings, SaslMechanism, Secret, SecurityProtocol,
};

/// Why the security settings cannot be used. Every one is a usage error (exit 2): the
/// settings or the files they name must change.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {what} {path} ({key}): {source}; check the path and its permissions")]
    Unreadable {
        what: &'static str,
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{what} {path} ({key}) is not valid PEM: {source}; it must be text with base64 between `-----BEGIN ...-----` and `-----END ...-----` lines: copy it again if it was cut short or edited, or convert a binary (DER) file to PEM with openssl"
    )]
    BadPem {
        what: &'static str,
        key: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error(
        "{path} ({key}) holds no certificate: expected PEM blocks starting `-----BEGIN CERTIFICATE-----`"
    )]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error(
        "{path} (kafka.ssl_key_location) holds no private key: expected a PEM block `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` (unencrypted)"
    )]
    NoKey { path: PathBuf },
    #[error("a CA certificate in {path} (kafka.ssl_ca_location) is not usable: {source}")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "no usable root certificates found on this system{details}; set kafka.ssl_ca_location to the PEM file of your cluster's CA"
    )]
    NoSystemRoots { details: String },
    #[error(
        "the client certificate {certificate} and the key {key} cannot be used together: {source}; check that the key belongs to the certificate"
    )]
    ClientAuth {
        certificate: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS cannot be set up: {source}")]
    Tls {
        #[source]
        source: rustls::Error,
    },
    #[error(
        "the password file {path} (kafka.sasl_password_file) is empty: write the password into it"
    )]
    EmptyPasswordFile { path: PathBuf },
}

impl crate::failure::Classify for SecurityError {
    fn is_usage(&self) -> bool {
        true
    }
}

/// How to secure a connection to any broker of the cluster.
#[derive(Clone)]
pub struct Security {
    pub protocol: SecurityProtocol,
    tls: Option<Arc<ClientConfig>>,
    /// The certificates the brokers' must chain to, in words, for error messages.
    trust: Trust,
    login: Option<Login>,
}

/// Where the trusted roots come from.
#[derive(Debug, Clone)]
pub enum Trust {
    CaFile(PathBuf),
    SystemRoots,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CaFile(path) => {
                write!(f, "the CA file {} (kafka.ssl_ca_location)", path.display())
            }
            Self::SystemRoots => {
                f.write_str("the system's root certificates (kafka.ssl_ca_location is empty)")
            }
        }
    }
}

/// A SASL user and password.
#[derive(Debug, Clone)]
pub struct Login {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("trust", &self.trust)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// Reads the files the settings name and builds the TLS configuration and the login.
    pub fn load(settings: &KafkaSettings) -> Result<Self, SecurityError> {
        let protocol = settings.security_protocol;
        let trust = if settings.ssl_ca_location.as_os_str().is_empty() {
            Trust::SystemRoots
        } else {
            Trust::CaFile(settings.ssl_ca_location.clone())
        };
        let tls = if protocol.uses_tls() {
            Some(Arc::new(tls_config(settings, &trust)?))
        } else {
            None
        };
        let login = if protocol.uses_sasl() {
            Some(Login {
                mechanism: settings.sasl_mechanism,
                username: settings.sasl_username.clone(),
                password: password(settings)?,
            })
        } else {
            None
        };
        Ok(Self {
            protocol,
            tls,
            trust,
            login,
        })
    }

    /// The TLS configuration, if the protocol has TLS.
    pub fn tls(&self) -> Option<&Arc<ClientConfig>> {
        self.tls.as_ref()
    }

    /// The trusted roots, in words.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The SASL login, if the protocol has one.
    pub fn login(&self) -> Option<&Login> {
        self.login.as_ref()
    }

    /// Gives rskafka the same TLS configuration and login.
    pub fn apply(&self, mut builder: ClientBuilder) -> ClientBuilder {
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        if let Some(login) = &self.login {
            let credentials =
                Credentials::new(login.username.clone(), login.password.expose().to_string());
            builder = builder.sasl_config(match login.mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(credentials),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
            });
        }
        builder
    }
}

/// The one crypto provider, named rather than taken from the process default, so a second
/// provider linked in by another crate can never make rustls refuse to pick.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(settings: &KafkaSettings, trust: &Trust) -> Result<ClientConfig, SecurityError> {
    let roots = Arc::new(root_store(trust)?);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| SecurityError::Tls { source })?;
    let builder = match settings.ssl_endpoint_identification {
        EndpointIdentification::Https => builder.with_root_certificates(roots),
        EndpointIdentification::None => {
            warn_unchecked_names();
            let checked = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| SecurityError::Tls {
                    source: rustls::Error::General(e.to_string()),
                })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyHostName(checked)))
        }
    };
    if settings.ssl_certificate_location.as_os_str().is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let certificate = &settings.ssl_certificate_location;
    let key_path = &settings.ssl_key_location;
    let chain = certificates(
        certificate,
        "kafka.ssl_certificate_location",
        "client certificate",
    )?;
    let key = private_key(key_path)?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|source| SecurityError::ClientAuth {
            certificate: certificate.clone(),
            key: key_path.clone(),
            source,
        })
}

fn warn_unchecked_names() {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "kafka.ssl_endpoint_identification = none: the brokers' certificates are checked against the CA, but NOT that they name the broker connected to; anyone holding any certificate from that CA can pose as a broker. Use \"https\" unless the certificates cannot name the brokers"
        );
    });
}

fn root_store(trust: &Trust) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    match trust {
        Trust::CaFile(path) => {
            for certificate in certificates(path, "kafka.ssl_ca_location", "CA file")? {
                roots
                    .add(certificate)
                    .map_err(|source| SecurityError::BadCa {
                        path: path.clone(),
                        source,
                    })?;
            }
        }
        Trust::SystemRoots => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let details = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(SecurityError::NoSystemRoots { details });
            }
        }
    }
    Ok(roots)
}

/// Every certificate in a PEM file; at least one.
fn certificates(
    path: &Path,
    key: &'static str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem_error = |source| pem_error(source, what, key, path);
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certificates.is_empty() {
        return Err(SecurityError::NoCertificate {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => SecurityError::NoKey {
            path: path.to_path_buf(),
        },
        source => pem_error(source, "private key", "kafka.ssl_key_location", path),
    })
}

fn pem_error(
    source: rustls::pki_types::pem::Error,
    what: &'static str,
    key: &'static str,
    path: &Path,
) -> SecurityError {
    match source {
        rustls::pki_types::pem::Error::Io(source) => SecurityError::Unreadable {
            what,
            key,
            path: path.to_path_buf(),
            source,
        },
        source => SecurityError::BadPem {
            what,
            key,
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The password, from `sasl_password` or read from `sasl_password_file` (one trailing
/// newline dropped). A file every user may read is used, with a warning: container secret
/// mounts (Docker's 0444, Kubernetes' default 0644) are world-readable by design.
fn password(settings: &KafkaSettings) -> Result<Secret, SecurityError> {
    let path = &settings.sasl_password_file;
    if path.as_os_str().is_empty() {
        return Ok(settings.sasl_password.clone());
    }
    let unreadable = |source| SecurityError::Unreadable {
        what: "password file",
        key: "kafka.sasl_password_file",
        path: path.clone(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o004 != 0 {
        tracing::warn!(
            "the password file {} (kafka.sasl_password_file) can be read by every user of this machine (mode {:o}); `chmod 600` it unless it is a container's secret mount",
            path.display(),
            mode & 0o777
        );
    }
    let mut text = std::fs::read_to_string(path).map_err(unreadable)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(SecurityError::EmptyPasswordFile { path: path.clone() });
    }
    Ok(Secret::new(text))
}

/// Checks a broker's certificate against the CA like [`WebPkiServerVerifier`], but accepts it
/// whatever host it names (`ssl_endpoint_identification = none`).
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name last, after the chain, so these errors mean "valid, but for
        // another name".
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
