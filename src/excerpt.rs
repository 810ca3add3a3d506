//! Quoting untrusted text in messages without letting it grow them: a bad record's reason or a
//! log line quotes at most [`MAX_QUOTED_BYTES`] of the offending value, then says how long the
//! whole value was. A 900 KB string in a record costs ~250 bytes of stderr, not 900 KB.
//! URLs are shown with their secrets (password, query values, fragment) masked.

use std::fmt;

/// How much of a value a message quotes.
pub const MAX_QUOTED_BYTES: usize = 200;

/// A value quoted for a message: `Debug`-style quotes and escapes, cut at
/// [`MAX_QUOTED_BYTES`] (on a character boundary) with `…` and the full length.
///
/// `Excerpt("abc")` shows as `"abc"`; a 1,000-byte value as its first 200 bytes, then
/// `…" (1000 bytes)`.
#[derive(Debug, Clone, Copy)]
pub struct Excerpt<'a>(pub &'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.len() <= MAX_QUOTED_BYTES {
            return write!(f, "{text:?}");
        }
        let cut = floor_char_boundary(text, MAX_QUOTED_BYTES);
        let shown = format!("{:?}", &text[..cut]);
        // `shown` ends with the closing quote; put the ellipsis inside it.
        let open = &shown[..shown.len() - 1];
        write!(f, "{open}…\" ({} bytes)", text.len())
    }
}

/// Quotes bytes that may not be text: valid UTF-8 as an [`Excerpt`], anything else as the
/// byte count only.
pub fn bytes(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => Excerpt(text).to_string(),
        Err(_) => format!("({} bytes, not UTF-8)", value.len()),
    }
}

/// What a masked secret shows as.
pub const MASK: &str = "***";

/// A query with every value masked: `a=1&token=x&flag` → `a=***&token=***&***`. Keys stay (they
/// tell a reader which parameters there are); a part without `=` may be a token itself.
pub fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|part| match part.split_once('=') {
            Some((key, _)) => format!("{key}={MASK}"),
            None if part.is_empty() => String::new(),
            None => MASK.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A URL (parsed or not) shown with what looks like userinfo, query values and a fragment
/// masked. Unparsed, a password may hold `/`, `?` or `#`, so everything between `://` and the
/// last `@` counts as userinfo.
pub fn redact_url(url: &str) -> String {
    let (url, fragment) = match url.split_once('#') {
        Some((url, _)) => (url, Some(MASK)),
        None => (url, None),
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, host_and_more)) => (Some(userinfo), host_and_more),
        None => (None, rest),
    };
    let userinfo = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, _)) if !user.contains(['/', '?']) => format!("{user}:{MASK}@"),
            _ => format!("{MASK}@"),
        },
        None => String::new(),
    };
    let mut shown = format!("{scheme}{userinfo}");
    match rest.split_once('?') {
        Some((before, query)) => {
            shown.push_str(before);
            shown.push('?');
            shown.push_str(&mask_query(query));
        }
        None => shown.push_str(rest),
    }
    if let Some(mask) = fragment {
        shown.push('#');
        shown.push_str(mask);
    }
    shown
}

/// The largest index ≤ `max` that starts a character (`str::floor_char_boundary` is unstable).
fn floor_char_boundary(text: &str, max: usize) -> usize {
    (0..=max.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(Excerpt("a\"b\n").to_string(), r#""a\"b\n""#);
        let exact = "y".repeat(MAX_QUOTED_BYTES);
        assert_eq!(Excerpt(&exact).to_string(), format!("\"{exact}\""));
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = "z".repeat(900_000);
        let quoted = Excerpt(&long).to_string();
        assert!(quoted.len() < MAX_QUOTED_BYTES + 40, "{}", quoted.len());
        assert!(quoted.ends_with("…\" (900000 bytes)"), "{quoted}");
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        // 'é' is two bytes; 201 bytes of them put byte 200 inside a character.
        let text = format!("a{}", "é".repeat(150));
        let quoted = Excerpt(&text).to_string();
        assert!(quoted.starts_with("\"aé"), "{quoted}");
        assert!(quoted.ends_with(&format!("…\" ({} bytes)", text.len())));
    }

    #[test]
    fn bytes_that_are_not_text_show_only_their_length() {
        assert_eq!(bytes(&[0xff, 0xfe]), "(2 bytes, not UTF-8)");
        assert_eq!(bytes(b"ok"), "\"ok\"");
    }
}
