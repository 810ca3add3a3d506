//! Small JSON helpers shared by the API (which serves compact lines) and the producer (which
//! writes compact values).

/// Copies one JSON value without the insignificant whitespace (outside strings).
pub fn compact_into(json: &[u8], out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(s: &str) -> String {
        let mut out = Vec::new();
        compact_into(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn drops_whitespace_outside_strings_only() {
        assert_eq!(compact(" { \"a\" : [ 1 ,\n 2 ] }"), r#"{"a":[1,2]}"#);
        assert_eq!(
            compact(r#"{"s": "a \" b\\", "t": " x "}"#),
            r#"{"s":"a \" b\\","t":" x "}"#
        );
    }
}
