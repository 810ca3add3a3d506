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

/// What [`scan_flat_object`] found: where the wanted field's value lies, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatScan {
    /// The byte range of the last value of the wanted field (a string without its quotes).
    pub field: Option<FieldValue>,
}

/// One field's value in a flat object, by kind and byte range in the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// A string without escapes: `range` is its text, without the quotes.
    Text(std::ops::Range<usize>),
    /// A number, `true`, `false` or `null`, as written.
    Literal(std::ops::Range<usize>),
}

/// Validates the common shape of a produced line in one pass, without a parser: a compact
/// JSON object whose values are numbers, literals or strings, with every string printable
/// ASCII without escapes, and nothing after the closing brace. Returns where `field`'s value
/// is (the last one, as serde_json and Python's `json` take it), or `None` when the line is
/// anything else: not valid, nested, escaped, non-ASCII, with whitespace. `None` says
/// nothing about validity; such a line goes to the full parser, which decides (and says what
/// is wrong). Every line this accepts, serde_json accepts with the same field value (tested
/// against it below).
pub fn scan_flat_object(line: &[u8], field: Option<&[u8]>) -> Option<FlatScan> {
    let mut at = 0;
    let mut found = None;
    expect(line, &mut at, b'{')?;
    if line.get(at) == Some(&b'}') {
        return (at + 1 == line.len()).then_some(FlatScan { field: None });
    }
    loop {
        let key = plain_string(line, &mut at)?;
        expect(line, &mut at, b':')?;
        let value = flat_value(line, &mut at)?;
        if field == Some(&line[key]) {
            found = Some(value);
        }
        match line.get(at)? {
            b',' => at += 1,
            b'}' if at + 1 == line.len() => return Some(FlatScan { field: found }),
            _ => return None,
        }
    }
}

fn expect(line: &[u8], at: &mut usize, byte: u8) -> Option<()> {
    (line.get(*at) == Some(&byte)).then(|| *at += 1)
}

/// A string of printable ASCII without escapes at `at`: the range of its text.
fn plain_string(line: &[u8], at: &mut usize) -> Option<std::ops::Range<usize>> {
    expect(line, at, b'"')?;
    let start = *at;
    let len = line[start..].iter().position(|&b| b == b'"')?;
    let text = &line[start..start + len];
    if !text
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\')
    {
        return None;
    }
    *at = start + len + 1;
    Some(start..start + len)
}

/// A value that is not an object or array.
fn flat_value(line: &[u8], at: &mut usize) -> Option<FieldValue> {
    let start = *at;
    match line.get(start)? {
        b'"' => plain_string(line, at).map(FieldValue::Text),
        b't' => literal(line, at, b"true"),
        b'f' => literal(line, at, b"false"),
        b'n' => literal(line, at, b"null"),
        _ => {
            number(line, at)?;
            Some(FieldValue::Literal(start..*at))
        }
    }
}

fn literal(line: &[u8], at: &mut usize, word: &[u8]) -> Option<FieldValue> {
    let start = *at;
    line[start..].starts_with(word).then(|| {
        *at += word.len();
        FieldValue::Literal(start..*at)
    })
}

/// A JSON number: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
fn number(line: &[u8], at: &mut usize) -> Option<()> {
    let digits = |at: &mut usize| {
        let n = line[*at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        *at += n;
        n
    };
    if line.get(*at) == Some(&b'-') {
        *at += 1;
    }
    match line.get(*at)? {
        b'0' => *at += 1,
        b'1'..=b'9' => {
            digits(at);
        }
        _ => return None,
    }
    if line.get(*at) == Some(&b'.') {
        *at += 1;
        (digits(at) > 0).then_some(())?;
    }
    if matches!(line.get(*at), Some(b'e' | b'E')) {
        *at += 1;
        if matches!(line.get(*at), Some(b'+' | b'-')) {
            *at += 1;
        }
        (digits(at) > 0).then_some(())?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// What serde_json (an independent parser) makes of `line`: `None` if it refuses it or it
    /// is not an object; else the raw text of the last `"id"` value, if any.
    fn serde_view(line: &[u8]) -> Option<Option<String>> {
        let map: std::collections::HashMap<String, &serde_json::value::RawValue> =
            serde_json::from_slice(line).ok()?;
        Some(map.get("id").map(|raw| raw.get().to_string()))
    }

    /// The raw text of what the scan found, as serde_json would show it.
    fn scan_view(line: &[u8], scan: FlatScan) -> Option<String> {
        let text = |r: std::ops::Range<usize>| String::from_utf8(line[r].to_vec()).unwrap();
        scan.field.map(|value| match value {
            FieldValue::Text(r) => format!("\"{}\"", text(r)),
            FieldValue::Literal(r) => text(r),
        })
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
        ]
    }

    fn flat_value() -> impl Strategy<Value = String> {
        prop_oneof![
            number(),
            "[ -!#-\\[\\]-~]{0,12}".prop_map(|s| format!("\"{s}\"")),
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
        ]
    }

    /// Compact flat objects, as serve-api sends them: keys from a small set so that `id`
    /// appears, sometimes twice.
    fn flat_object() -> impl Strategy<Value = String> {
        let key = prop_oneof![Just("id"), Just("ts"), Just("value"), Just("i d"), Just("")];
        proptest::collection::vec((key, flat_value()), 0..6).prop_map(|fields| {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        })
    }

    /// Objects whose values may also be number-like or literal-like tokens that are not
    /// JSON (`+1`, `1e`, `.5`, `nul`, `truex`, ...): near misses for the scan to refuse.
    fn loose_object() -> impl Strategy<Value = String> {
        let key = prop_oneof![Just("id"), Just("ts"), Just("")];
        let value = prop_oneof![
            flat_value(),
            "[-+0-9.eE]{1,6}",
            "(-?0[0-9]{1,3}|[+.][0-9]{1,3}|-?[0-9]{1,3}[.eE]|-|-?[0-9]\\.[0-9][eE][+-]?)",
            "(tru|true|truex|fals|false|nul|null|nulll|[tfn][a-z]{0,4})",
        ];
        proptest::collection::vec((key, value), 0..5).prop_map(|fields| {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        })
    }

    /// A byte edit: (position as a fraction, what to do, the byte).
    fn edits() -> impl Strategy<Value = Vec<(f64, u8, u8)>> {
        let byte = prop_oneof![
            proptest::sample::select(b"{}[]\",:.-+eE019 \t\\/ntfu".to_vec()),
            any::<u8>(),
        ];
        proptest::collection::vec((0.0..1.0f64, 0u8..3, byte), 1..4)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Every compact flat object is taken by the scan, with the value serde_json finds.
        #[test]
        fn the_scan_takes_flat_objects_as_serde_json_reads_them(line in flat_object()) {
            let scan = scan_flat_object(line.as_bytes(), Some(b"id"));
            let scan = scan.unwrap_or_else(|| panic!("not taken: {line}"));
            proptest::prop_assert_eq!(
                Some(scan_view(line.as_bytes(), scan)),
                serde_view(line.as_bytes()),
                "{}",
                line
            );
        }

        /// Whatever the scan takes of damaged lines, serde_json takes too, with the same
        /// value; what it leaves goes to serde_json anyway.
        #[test]
        fn the_scan_takes_nothing_serde_json_refuses(
            line in prop_oneof![flat_object(), loose_object()],
            edits in prop_oneof![Just(Vec::new()), edits()],
        ) {
            let mut bytes = line.into_bytes();
            for (at, op, byte) in edits {
                let i = ((bytes.len() as f64) * at) as usize;
                match op {
                    0 => bytes.insert(i.min(bytes.len()), byte),
                    1 if i < bytes.len() => bytes[i] = byte,
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => {}
                }
            }
            if let Some(scan) = scan_flat_object(&bytes, Some(b"id")) {
                proptest::prop_assert_eq!(
                    Some(scan_view(&bytes, scan)),
                    serde_view(&bytes),
                    "{}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }

    proptest::proptest! {
        /// Any bytes at all: no panic, and nothing taken that serde_json refuses.
        #[test]
        fn the_scan_never_panics_on_any_bytes(
            bytes in proptest::collection::vec(
                prop_oneof![proptest::sample::select(b"{}\":,-.0123456789eEtrunlfasid ".to_vec()), any::<u8>()],
                0..40,
            ),
        ) {
            if let Some(scan) = scan_flat_object(&bytes, Some(b"id")) {
                proptest::prop_assert_eq!(Some(scan_view(&bytes, scan)), serde_view(&bytes));
            }
        }
    }

    #[test]
    fn the_scan_leaves_whatever_it_does_not_know_to_the_parser() {
        for line in [
            &br#"{"id":1} "#[..],
            br#"{ "id":1}"#,
            br#"{"id":{"a":1}}"#,
            br#"{"id":[1]}"#,
            br#"{"id":"a\"b"}"#,
            "{\"id\":\"\u{e9}\"}".as_bytes(),
            br#"{"id":01}"#,
            br#"{"id":1.}"#,
            br#"{"id":-}"#,
            br#"{"id":tru}"#,
            br#"{"id":1,}"#,
            br#"{"id":1}}"#,
            br#"{"id"}"#,
            br#"{}x"#,
            b"",
            b"{",
            br#"{""#,
            br#"{"id":+1}"#,
            br#"{"id":1e}"#,
            br#"{"id":.5}"#,
            br#"{"id":-0.}"#,
            br#"{"id":truex}"#,
            br#"{"id":nul}"#,
            b"{\"id\":1}\0",
            b"{\"id\":1}\r",
            b"{\"id\":\"a\x7fb\"}",
            b"{\"id\":\"a\tb\"}",
        ] {
            assert_eq!(
                scan_flat_object(line, Some(b"id")),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            scan_flat_object(br#"{"id":7,"id":"x"}"#, Some(b"id")),
            Some(FlatScan {
                field: Some(FieldValue::Text(14..15))
            })
        );
    }
}
