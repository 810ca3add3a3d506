//! Our own connection to a broker, for the requests rskafka does not send (Metadata with
//! leaders and replicas, DescribeConfigs, CreateTopics with configs): TCP, then TLS and the
//! SASL login as [`Security`] says, then one request and its answer.
//!
//! It is also how every client first reaches the cluster ([`super::KafkaClient::connect`]),
//! because each step here fails with a [`ConnectError`] that says what went wrong in words a
//! user can act on (certificate not trusted, host name mismatch, login refused, a TLS client
//! on a plaintext port or the reverse) where rskafka would retry to its deadline and report
//! that the deadline passed.

use std::io;

use bytes::{BufMut, BytesMut};
use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{array, i16_, i32_, put_string, string};
use super::security::{Login, Security, Trust};
use crate::excerpt::Excerpt;
use crate::settings::{KafkaSettings, SecurityProtocol};

/// A broker's answer larger than this means a corrupt length prefix (or a listener speaking
/// something other than Kafka).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const API_KEY_SASL_HANDSHAKE: i16 = 17;
const API_KEY_SASL_AUTHENTICATE: i16 = 36;
/// Kafka's `UNSUPPORTED_SASL_MECHANISM`.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's `ILLEGAL_SASL_STATE`: a SASL request on a listener that takes no login.
const ILLEGAL_SASL_STATE: i16 = 34;
/// SCRAM takes two round trips; anything past this many is a broker going in circles.
const MAX_SASL_STEPS: usize = 8;

/// What we were doing when a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Tls,
    Login,
    Request,
}

/// Why one broker could not be reached, logged in to or asked.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {broker}: {source}")]
    Io {
        broker: String,
        #[source]
        source: io::Error,
    },
    #[error("{broker} is not a HOST:PORT a TLS certificate can name")]
    BadHost { broker: String },
    #[error("TLS with {broker} failed: {problem}")]
    Tls {
        broker: String,
        problem: TlsProblem,
        #[source]
        source: rustls::Error,
    },
    #[error("{broker} closed the connection {}", closed_advice(*.stage, *.protocol))]
    Closed {
        broker: String,
        stage: Stage,
        protocol: SecurityProtocol,
    },
    #[error(
        "{broker} answered with TLS: the listener expects TLS, but kafka.security_protocol is {protocol}; set it to ssl or sasl_ssl (or use the broker's plaintext port)"
    )]
    ExpectsTls {
        broker: String,
        protocol: SecurityProtocol,
    },
    #[error(
        "{broker} does not take a SASL login on this listener (kafka.security_protocol is {protocol}); use the port of a SASL listener, or set kafka.security_protocol to what this one speaks"
    )]
    NoSaslHere {
        broker: String,
        protocol: SecurityProtocol,
    },
    #[error(
        "{broker} does not enable SASL mechanism {mechanism} on this listener; it offers {}: set kafka.sasl_mechanism to one of them", if offered.is_empty() { "none".to_string() } else { Excerpt(&offered.join(", ")).to_string() }
    )]
    MechanismNotEnabled {
        broker: String,
        mechanism: String,
        offered: Vec<String>,
    },
    #[error(
        "authentication failed at {broker} for user {} with {mechanism}{}: check kafka.sasl_username and the password, and that the user exists for this mechanism",
        Excerpt(.username),
        .message.as_deref().map(|m| format!(" (the broker says {})", Excerpt(m))).unwrap_or_default()
    )]
    AuthenticationFailed {
        broker: String,
        username: String,
        mechanism: String,
        message: Option<String>,
    },
    #[error("the SASL login with {broker} failed: {source}")]
    Sasl {
        broker: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{broker} answered the SASL login with error code {code}{}", .message.as_deref().map(|m| format!(": {}", Excerpt(m))).unwrap_or_default())]
    SaslRefused {
        broker: String,
        code: i16,
        message: Option<String>,
    },
    #[error("{broker} sent an answer that is not Kafka's: {reason}")]
    Garbled { broker: String, reason: String },
}

fn closed_advice(stage: Stage, protocol: SecurityProtocol) -> String {
    match stage {
        Stage::Tls => "during the TLS handshake: the listener probably does not speak TLS (a plaintext or sasl_plaintext port?); check the port and kafka.security_protocol".into(),
        Stage::Login => "during the SASL login; check that this port is a SASL listener and kafka.security_protocol".into(),
        Stage::Request if protocol.uses_sasl() => "without answering; is the broker shutting down?".into(),
        Stage::Request => format!(
            "without answering: if the listener needs TLS or a SASL login, set kafka.security_protocol (it is {protocol}); otherwise the broker may be shutting down"
        ),
    }
}

/// A TLS failure, in words.
#[derive(Debug, thiserror::Error)]
pub enum TlsProblem {
    #[error(
        "its certificate is not trusted by {trust}; point kafka.ssl_ca_location at the CA that signed the brokers' certificates"
    )]
    Untrusted { trust: String },
    #[error(
        "host name mismatch: its certificate does not name {host}; connect by a name the certificate lists, or (only if that cannot be) set kafka.ssl_endpoint_identification = none"
    )]
    NameMismatch { host: String },
    #[error(
        "its certificate has expired or is not valid yet; the broker needs a new certificate (or check this machine's clock)"
    )]
    Expired,
    #[error(
        "it refused our client certificate, or wants one: set kafka.ssl_certificate_location and kafka.ssl_key_location to a certificate its truststore trusts"
    )]
    ClientCertificate,
    #[error("{0}")]
    Other(String),
}

impl ConnectError {
    /// Whether trying again may help: a broker that is down or restarting, yes; a certificate,
    /// a password or a protocol that does not fit, no.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Io { .. } | Self::Closed { .. } | Self::Garbled { .. } => true,
            // Whatever TLS itself refused (a certificate, an alert, a protocol mismatch)
            // refuses again; a connection merely cut during the handshake is `Closed`.
            Self::Tls { .. }
            | Self::BadHost { .. }
            | Self::ExpectsTls { .. }
            | Self::NoSaslHere { .. }
            | Self::MechanismNotEnabled { .. }
            | Self::AuthenticationFailed { .. }
            | Self::Sasl { .. }
            | Self::SaslRefused { .. } => false,
        }
    }
}

/// A stream we can speak Kafka over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// One open, secured, logged-in connection. Requests on it go one at a time; it may carry
/// many (the consumer's fetches reuse theirs).
pub struct Connection {
    stream: Box<dyn Io>,
    broker: String,
    security: Security,
    /// The correlation id of the next request; every answer must carry its request's.
    next_id: i32,
    /// A request was sent and its answer not read whole (the caller gave up on it): what
    /// comes next on the stream belongs to that request, so the connection is done.
    in_flight: bool,
}

/// Connects to `broker` as `security` says and sends one framed `request`; returns the
/// answer's body (without its length prefix).
pub async fn exchange(
    security: &Security,
    client_id: &str,
    broker: &str,
    request: &[u8],
) -> Result<Vec<u8>, ConnectError> {
    let mut connection = Connection::open(security, client_id, broker).await?;
    connection.round_trip(request, Stage::Request).await
}

/// An answer and the broker that gave it.
pub struct Answer {
    pub broker: String,
    pub body: Vec<u8>,
}

/// Why no bootstrap broker answered.
#[derive(Debug)]
pub enum AskError {
    /// A failure that asking another broker or later will not cure (e.g. a refused login).
    Fatal(ConnectError),
    /// Every broker failed with something that may pass; the last failure, in words.
    NoneAnswered(String),
}

/// Sends `request` to each bootstrap broker in turn until one answers, all of them within
/// `kafka.timeout`.
pub async fn ask_bootstrap(
    settings: &KafkaSettings,
    security: &Security,
    request: &[u8],
) -> Result<Answer, AskError> {
    let brokers = settings.bootstrap_brokers();
    // Each broker its share of `kafka.timeout`, so one that swallows connections silently
    // cannot use all of it before the others are asked.
    let timeout = settings.timeout() / u32::try_from(brokers.len().max(1)).unwrap_or(u32::MAX);
    let mut last = None;
    for broker in brokers {
        let asked = exchange(security, &settings.client_id, &broker, request);
        match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(body)) => return Ok(Answer { broker, body }),
            Ok(Err(e)) if !e.is_retriable() => return Err(AskError::Fatal(e)),
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => last = Some(format!("{broker}: no answer within {timeout:?}")),
        }
    }
    Err(AskError::NoneAnswered(
        last.unwrap_or_else(|| "no bootstrap broker configured".into()),
    ))
}

impl Connection {
    /// Connects to `broker` (`host:port`), with TLS and the login as `security` says.
    pub async fn open(
        security: &Security,
        client_id: &str,
        broker: &str,
    ) -> Result<Self, ConnectError> {
        let tcp = TcpStream::connect(broker)
            .await
            .map_err(|source| ConnectError::Io {
                broker: broker.to_string(),
                source,
            })?;
        // Best effort: a request is one write, and waiting on Nagle only adds latency.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match security.tls() {
            None => Box::new(tcp),
            Some(config) => {
                let name = server_name(broker)?;
                let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config));
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| io_failure(broker, security, Stage::Tls, e))?;
                Box::new(tls)
            }
        };
        let mut connection = Self {
            stream,
            broker: broker.to_string(),
            security: security.clone(),
            next_id: 1,
            in_flight: false,
        };
        if let Some(login) = security.login() {
            connection.log_in(client_id, login).await?;
        }
        Ok(connection)
    }

    /// The broker this connection reaches (`host:port`).
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// Whether a request was given up half-way (its answer may still arrive): such a
    /// connection must not carry another.
    pub fn is_spoiled(&self) -> bool {
        self.in_flight
    }

    /// Sends one framed request and reads the answer's body (without its length prefix) into
    /// `body`, whose allocation is reused: a fetch answer is a megabyte, fetched again and
    /// again.
    pub async fn request_into(
        &mut self,
        request: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<(), ConnectError> {
        self.round_trip_into(request, Stage::Request, body).await
    }

    /// Writes one framed request and reads the framed answer.
    async fn round_trip(&mut self, request: &[u8], stage: Stage) -> Result<Vec<u8>, ConnectError> {
        let mut body = Vec::new();
        self.round_trip_into(request, stage, &mut body).await?;
        Ok(body)
    }

    async fn round_trip_into(
        &mut self,
        request: &[u8],
        stage: Stage,
        body: &mut Vec<u8>,
    ) -> Result<(), ConnectError> {
        let (broker, security) = (self.broker.as_str(), &self.security);
        let failed = |e| io_failure(broker, security, stage, e);
        // Each request its own correlation id (the header's bytes 8..12, after the length,
        // key and version), checked on the answer: an answer to anything else is refused.
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut request = request.to_vec();
        if let Some(slot) = request.get_mut(8..12) {
            slot.copy_from_slice(&id.to_be_bytes());
        }
        self.in_flight = true;
        self.stream.write_all(&request).await.map_err(failed)?;
        self.stream.flush().await.map_err(failed)?;
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).await.map_err(failed)?;
        // A TLS record (an alert, 0x15, or a handshake, 0x16, of version 3.x) where a Kafka
        // length should be: we spoke plaintext to a TLS listener.
        if security.tls().is_none() && matches!(prefix, [0x15 | 0x16, 0x03, _, _]) {
            return Err(ConnectError::ExpectsTls {
                broker: broker.to_string(),
                protocol: security.protocol,
            });
        }
        let len = i32::from_be_bytes(prefix);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| ConnectError::Garbled {
                broker: broker.to_string(),
                reason: format!("an answer of {len} bytes"),
            })?;
        body.clear();
        body.resize(len, 0);
        self.stream.read_exact(body).await.map_err(failed)?;
        self.in_flight = false;
        match body.get(..4) {
            Some(answered) if answered == id.to_be_bytes() => Ok(()),
            _ => Err(ConnectError::Garbled {
                broker: broker.to_string(),
                reason: format!("an answer that is not to request {id} on the connection"),
            }),
        }
    }

    /// SaslHandshake, then SaslAuthenticate until the mechanism (rsasl's) is done. SCRAM's
    /// last step checks the broker's signature, so a broker that does not know the password
    /// is refused too.
    async fn log_in(&mut self, client_id: &str, login: &Login) -> Result<(), ConnectError> {
        let mechanism = login.mechanism.to_string();
        let answer = self
            .round_trip(&handshake_request(client_id, &mechanism), Stage::Login)
            .await?;
        self.check_handshake(&answer, &mechanism)?;
        let broker = self.broker.clone();
        let sasl_error = |e: Box<dyn std::error::Error + Send + Sync>| ConnectError::Sasl {
            broker: broker.clone(),
            source: e,
        };
        let config = SASLConfig::with_credentials(
            None,
            login.username.clone(),
            login.password.expose().to_string(),
        )
        .map_err(|e| sasl_error(Box::new(e)))?;
        let name = Mechname::parse(mechanism.as_bytes()).map_err(|e| sasl_error(Box::new(e)))?;
        let mut session = SASLClient::new(config)
            .start_suggested(&[name])
            .map_err(|e| sasl_error(Box::new(e)))?;
        let mut received: Option<Vec<u8>> = None;
        for _ in 0..MAX_SASL_STEPS {
            let mut message = Vec::new();
            let state = session
                .step(received.as_deref(), &mut message)
                .map_err(|e| sasl_error(Box::new(e)))?;
            if state.has_sent_message() {
                let request = authenticate_request(client_id, &message);
                let answer = self.round_trip(&request, Stage::Login).await?;
                received = Some(self.check_authenticate(&answer, login)?);
            }
            if state.is_finished() {
                return Ok(());
            }
        }
        Err(ConnectError::Garbled {
            broker: self.broker.to_string(),
            reason: format!("the SASL login did not finish in {MAX_SASL_STEPS} steps"),
        })
    }

    fn check_handshake(&self, answer: &[u8], mechanism: &str) -> Result<(), ConnectError> {
        let broker = self.broker.to_string();
        let (code, offered) = decode_handshake(answer).map_err(|reason| ConnectError::Garbled {
            broker: broker.clone(),
            reason,
        })?;
        match code {
            0 => Ok(()),
            UNSUPPORTED_SASL_MECHANISM => Err(ConnectError::MechanismNotEnabled {
                broker,
                mechanism: mechanism.to_string(),
                offered,
            }),
            ILLEGAL_SASL_STATE => Err(ConnectError::NoSaslHere {
                broker,
                protocol: self.security.protocol,
            }),
            code => Err(ConnectError::SaslRefused {
                broker,
                code,
                message: None,
            }),
        }
    }

    /// The broker's SASL bytes, or why it refused.
    fn check_authenticate(&self, answer: &[u8], login: &Login) -> Result<Vec<u8>, ConnectError> {
        let broker = self.broker.to_string();
        let decoded = decode_authenticate(answer).map_err(|reason| ConnectError::Garbled {
            broker: broker.clone(),
            reason,
        })?;
        match decoded.error_code {
            0 => Ok(decoded.auth_bytes),
            // SASL_AUTHENTICATION_FAILED
            58 => Err(ConnectError::AuthenticationFailed {
                broker,
                username: login.username.clone(),
                mechanism: login.mechanism.to_string(),
                message: decoded.message,
            }),
            code => Err(ConnectError::SaslRefused {
                broker,
                code,
                message: decoded.message,
            }),
        }
    }
}

/// The host of `HOST:PORT`, as TLS checks it against the certificate.
fn server_name(broker: &str) -> Result<ServerName<'static>, ConnectError> {
    let bad = || ConnectError::BadHost {
        broker: broker.to_string(),
    };
    let host = host_of(broker).ok_or_else(bad)?;
    ServerName::try_from(host.to_string()).map_err(|_| bad())
}

/// The host of `HOST:PORT` (an IPv6 address without its brackets), if there is a port.
fn host_of(broker: &str) -> Option<&str> {
    let (host, _port) = broker.rsplit_once(':')?;
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

/// Turns a failed read, write or handshake into words: TLS trouble by its cause, a closed
/// connection by the stage it closed in.
fn io_failure(broker: &str, security: &Security, stage: Stage, error: io::Error) -> ConnectError {
    let broker_owned = broker.to_string();
    let tls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    if let Some(source) = tls_error {
        let problem = tls_problem(&source, broker, security.trust());
        return ConnectError::Tls {
            broker: broker_owned,
            problem,
            source,
        };
    }
    match error.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ConnectError::Closed {
            broker: broker_owned,
            stage,
            protocol: security.protocol,
        },
        _ => ConnectError::Io {
            broker: broker_owned,
            source: error,
        },
    }
}

fn tls_problem(error: &rustls::Error, broker: &str, trust: &Trust) -> TlsProblem {
    use rustls::Error as E;
    match error {
        E::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            TlsProblem::Untrusted {
                trust: trust.to_string(),
            }
        }
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => TlsProblem::NameMismatch {
            host: host_of(broker).unwrap_or(broker).to_string(),
        },
        E::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => TlsProblem::Expired,
        E::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied,
        ) => TlsProblem::ClientCertificate,
        other => TlsProblem::Other(other.to_string()),
    }
}

/// A request header (v1: key, version, correlation id, client id) and `body`, framed.
pub fn framed(api_key: i16, version: i16, client_id: &str, body: &[u8]) -> Vec<u8> {
    let mut header = BytesMut::new();
    header.put_i16(api_key);
    header.put_i16(version);
    header.put_i32(1); // correlation id: the connection sets each request's own
    put_string(&mut header, client_id);
    let len = header.len() + body.len();
    let mut out = Vec::with_capacity(4 + len);
    out.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}

/// SaslHandshake v1: the mechanism we want.
fn handshake_request(client_id: &str, mechanism: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    put_string(&mut body, mechanism);
    framed(API_KEY_SASL_HANDSHAKE, 1, client_id, &body)
}

/// SaslAuthenticate v1: one message of the mechanism.
fn authenticate_request(client_id: &str, message: &[u8]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i32(i32::try_from(message.len()).unwrap_or(i32::MAX));
    body.put_slice(message);
    framed(API_KEY_SASL_AUTHENTICATE, 1, client_id, &body)
}

/// SaslHandshake v1's answer: error code and the mechanisms the listener enables.
fn decode_handshake(mut buf: &[u8]) -> Result<(i16, Vec<String>), String> {
    let r = &mut buf;
    let _correlation_id = i32_(r)?;
    let code = i16_(r)?;
    let mechanisms = array(r, |r| Ok(string(r)?.unwrap_or_default()))?;
    Ok((code, mechanisms))
}

struct Authenticated {
    error_code: i16,
    message: Option<String>,
    auth_bytes: Vec<u8>,
}

/// SaslAuthenticate v1's answer (its session lifetime is not needed: no re-login is done).
fn decode_authenticate(mut buf: &[u8]) -> Result<Authenticated, String> {
    let r = &mut buf;
    let _correlation_id = i32_(r)?;
    let error_code = i16_(r)?;
    let message = string(r)?;
    let auth_bytes = super::codec::bytes(r)?;
    Ok(Authenticated {
        error_code,
        message,
        auth_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_answers_decode_and_truncations_are_errors() {
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_i16(UNSUPPORTED_SASL_MECHANISM);
        b.put_i32(2);
        put_string(&mut b, "PLAIN");
        put_string(&mut b, "SCRAM-SHA-256");
        assert_eq!(
            decode_handshake(&b).unwrap(),
            (33, vec!["PLAIN".to_string(), "SCRAM-SHA-256".to_string()])
        );
        for cut in 0..b.len() {
            assert!(decode_handshake(&b[..cut]).is_err());
        }
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_i16(58);
        put_string(&mut b, "Authentication failed");
        b.put_i32(3);
        b.put_slice(b"abc");
        b.put_i64(0);
        let a = decode_authenticate(&b).unwrap();
        assert_eq!((a.error_code, a.auth_bytes.as_slice()), (58, &b"abc"[..]));
        assert_eq!(a.message.as_deref(), Some("Authentication failed"));
        for cut in 0..b.len() - 8 {
            assert!(decode_authenticate(&b[..cut]).is_err());
        }
    }

    /// What a broker sends is quoted, not copied: a login refusal with a megabyte of text
    /// makes a message of a few hundred bytes.
    #[test]
    fn broker_texts_in_messages_are_excerpts() {
        let huge = "x".repeat(1 << 20);
        let errors = [
            ConnectError::AuthenticationFailed {
                broker: "b:1".into(),
                username: "u".into(),
                mechanism: "PLAIN".into(),
                message: Some(huge.clone()),
            },
            ConnectError::SaslRefused {
                broker: "b:1".into(),
                code: 1,
                message: Some(huge.clone()),
            },
            ConnectError::MechanismNotEnabled {
                broker: "b:1".into(),
                mechanism: "PLAIN".into(),
                offered: vec![huge.clone()],
            },
        ];
        for error in errors {
            let shown = error.to_string();
            assert!(shown.len() < 1000, "{} bytes", shown.len());
            assert!(shown.contains("(1048576 bytes)"), "{shown}");
        }
    }

    #[test]
    fn server_names_come_from_the_host() {
        assert!(server_name("localhost:9093").is_ok());
        assert!(server_name("127.0.0.1:9093").is_ok());
        assert!(server_name("[::1]:9093").is_ok());
        assert!(server_name("no-port").is_err());
    }
}
