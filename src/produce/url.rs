//! A source's `http://` URL: what a connection needs (address, request target, credentials),
//! and how the URL may be shown.
//!
//! A URL can carry secrets: `user:password@` in its authority, tokens in its query. Both are
//! sent as they are (the credentials as an `Authorization: Basic` header, which is what
//! `user:password@` means for HTTP), and never shown: every log line, error and status message
//! shows [`StreamUrl`]'s `Display`, which keeps the user name and the query's keys and masks the
//! password and every query value (`http://ops:***@gw:8000/line3?token=***`). A URL that does
//! not even parse is shown through [`redact_unparsed`], for the same reason.

use std::fmt;

use base64::Engine as _;
use hyper::Uri;

use crate::excerpt::{MASK, mask_query};

/// An `http://` URL split into what a connection needs.
#[derive(Clone, PartialEq)]
pub struct StreamUrl {
    /// `host:port`, for connecting and the `Host` header.
    authority: String,
    path: String,
    /// The URL's own query, kept when `offset=` is added.
    query: Option<String>,
    /// `user:password@` from the URL, percent-decoded.
    credentials: Option<Credentials>,
}

/// HTTP basic-auth credentials from a URL's userinfo.
#[derive(Clone, PartialEq)]
struct Credentials {
    user: String,
    password: Option<String>,
    /// The user name as the URL writes it (still percent-encoded), for display.
    shown_user: String,
}

impl StreamUrl {
    /// Parses an `http://[user[:password]@]host[:port]/path[?query]` URL. The error never
    /// quotes the URL (it may hold secrets); the caller shows [`redact_unparsed`] of it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err("scheme https is not supported, only http (put a TLS-terminating proxy in front)".into());
            }
            Some(other) => return Err(format!("scheme {other} is not supported, only http")),
            None => return Err("no scheme".into()),
        }
        let authority = uri.authority().ok_or("no host")?;
        let host = uri.host().ok_or("no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let credentials = match authority.as_str().rsplit_once('@') {
            None => None,
            Some((userinfo, _)) => Some(Credentials::parse(userinfo)?),
        };
        Ok(Self {
            authority: format!("{host}:{port}"),
            path: uri.path().to_string(),
            query: uri.query().map(String::from),
            credentials,
        })
    }

    /// `host:port`, to connect to and for the `Host` header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request target starting at record `offset`, with the URL's query as it is.
    pub fn target(&self, offset: u64) -> String {
        match (&self.query, offset) {
            (None, 0) => self.path.clone(),
            (Some(q), 0) => format!("{}?{q}", self.path),
            (None, n) => format!("{}?offset={n}", self.path),
            (Some(q), n) => format!("{}?{q}&offset={n}", self.path),
        }
    }

    /// The `Authorization` header value for the URL's `user:password@`, if it has one.
    pub fn authorization(&self) -> Option<String> {
        let c = self.credentials.as_ref()?;
        let pair = format!("{}:{}", c.user, c.password.as_deref().unwrap_or(""));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        Some(format!("Basic {encoded}"))
    }

    /// The URL at record `offset` as it may be shown: secrets masked, `offset=N` visible.
    pub fn shown_at(&self, offset: u64) -> ShownUrl<'_> {
        ShownUrl { url: self, offset }
    }
}

/// `Debug` masks like `Display`: a URL in a `{:?}` must not leak either.
impl fmt::Debug for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamUrl({self})")
    }
}

/// The URL as it may be shown (logs, errors, status): see the module docs.
impl fmt::Display for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shown_at(0).fmt(f)
    }
}

/// A [`StreamUrl`] at a stream offset, for display: secrets masked.
pub struct ShownUrl<'a> {
    url: &'a StreamUrl,
    offset: u64,
}

impl fmt::Display for ShownUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.url;
        f.write_str("http://")?;
        if let Some(c) = &url.credentials {
            match c.password {
                Some(_) => write!(f, "{}:{MASK}@", c.shown_user)?,
                // A user name alone is often a token: mask it.
                None => write!(f, "{MASK}@")?,
            }
        }
        write!(f, "{}{}", url.authority, url.path)?;
        let mut separator = '?';
        if let Some(query) = &url.query {
            f.write_str("?")?;
            f.write_str(&mask_query(query))?;
            separator = '&';
        }
        if self.offset > 0 {
            write!(f, "{separator}offset={}", self.offset)?;
        }
        Ok(())
    }
}

impl Credentials {
    fn parse(userinfo: &str) -> Result<Self, String> {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        let decode = |part: &str, what: &str| {
            percent_decode(part)
                .ok_or_else(|| format!("the URL's {what} is not valid percent-encoded UTF-8"))
        };
        Ok(Self {
            user: decode(user, "user name")?,
            password: password.map(|p| decode(p, "password")).transpose()?,
            shown_user: user.to_string(),
        })
    }
}

/// `%XX` escapes decoded; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsed_urls_never_show_a_password_with_slashes_or_question_marks() {
        for (url, secret) in [
            ("http://ops:pa/ss@gw:8000/x", "pa/ss"),
            ("http://ops:pa?ss@gw/x", "pa?ss"),
            ("http://ops:p#ss@gw/x", "ss@gw"),
            ("http://gw/x#tok3n", "tok3n"),
            ("http://gw/x?token=s3cret", "s3cret"),
        ] {
            let shown = crate::excerpt::redact_url(url);
            assert!(!shown.contains(secret), "{url} → {shown}");
        }
        assert_eq!(
            crate::excerpt::redact_url("http://ops:pa/ss@gw:8000/x"),
            "http://ops:***@gw:8000/x"
        );
    }

    #[test]
    fn urls_keep_their_query_and_add_the_offset() {
        let url = StreamUrl::parse("http://127.0.0.1:5000/stream_data_metrics").unwrap();
        assert_eq!(url.target(0), "/stream_data_metrics");
        assert_eq!(url.target(42), "/stream_data_metrics?offset=42");
        assert_eq!(url.to_string(), "http://127.0.0.1:5000/stream_data_metrics");
        let url = StreamUrl::parse("http://gw/line3?delay=0").unwrap();
        assert_eq!(url.authority(), "gw:80");
        assert_eq!(url.target(7), "/line3?delay=0&offset=7");
        assert!(url.authorization().is_none());
        assert!(StreamUrl::parse("https://gw/x").is_err());
        assert!(StreamUrl::parse("/relative").is_err());
    }

    #[test]
    fn credentials_become_basic_auth_and_never_show() {
        let url =
            StreamUrl::parse("http://ops%40plant:s3cr%3At@gw:8000/line3?token=t0k&a=1").unwrap();
        assert_eq!(url.authority(), "gw:8000");
        assert_eq!(url.target(5), "/line3?token=t0k&a=1&offset=5");
        // base64("ops@plant:s3cr:t")
        assert_eq!(
            url.authorization().as_deref(),
            Some("Basic b3BzQHBsYW50OnMzY3I6dA==")
        );
        let shown = url.to_string();
        assert_eq!(
            shown,
            "http://ops%40plant:***@gw:8000/line3?token=***&a=***"
        );
        assert_eq!(
            url.shown_at(9).to_string(),
            "http://ops%40plant:***@gw:8000/line3?token=***&a=***&offset=9"
        );
        assert!(!format!("{url:?}").contains("s3cr"));
        // A user name alone may be a token.
        let url = StreamUrl::parse("http://ghp_abc@gw/x?secret").unwrap();
        assert_eq!(url.to_string(), "http://***@gw:80/x?***");
        assert_eq!(url.authorization().as_deref(), Some("Basic Z2hwX2FiYzo="));
        assert_eq!(
            url.shown_at(3).to_string(),
            "http://***@gw:80/x?***&offset=3"
        );
    }

    #[test]
    fn unparsed_urls_are_masked_too() {
        assert_eq!(
            crate::excerpt::redact_url("http://u:pw@h:x/p?k=v&w"),
            "http://u:***@h:x/p?k=***&***"
        );
        assert_eq!(crate::excerpt::redact_url("tok@h/p"), "***@h/p");
        assert_eq!(crate::excerpt::redact_url("http://h/p"), "http://h/p");
        assert!(StreamUrl::parse("http://u:%zz@h/p").is_err());
    }
}
