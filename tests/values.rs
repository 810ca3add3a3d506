//! Values arrive exactly, or as bad records with a reason: checked against Python's own parsers
//! and exact arithmetic (`tests/exact_values.py`), with payloads written by kcat and the
//! Parquet read back by pyarrow.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{python, raw_topic, raw_topic_bytes, run_with_timeout, stderr, stdout};
use serde_json::Value;

fn oracle(args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exact_values.py");
    run_with_timeout(
        std::process::Command::new(python()).arg(script).args(args),
        Duration::from_secs(180),
    )
}

/// `dir/c.toml` with one topic of every numeric column type.
fn write_typed_config(dir: &Path, topic: &str) {
    let text = format!(
        "[consumer]\noutput = \"out\"\n\
         [consumer.topics.{topic}.schema]\nid = \"int64\"\nf64 = \"float64\"\nf32 = \"float32\"\nts = \"timestamp\"\n\
         i32 = \"int32\"\n"
    );
    std::fs::write(dir.join("c.toml"), text).unwrap();
}

fn consume_all(dir: &Path, topic: &str) -> std::process::Output {
    run_with_timeout(
        &mut common::configured(
            dir,
            "consume",
            &["--topics", topic, "--trigger", "available-now"],
        ),
        Duration::from_secs(180),
    )
}

fn bad_records(dir: &Path, topic: &str) -> Vec<Value> {
    let bad_dir = dir.join("out").join(topic).join("_bad_records");
    let mut entries: Vec<_> = std::fs::read_dir(&bad_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

#[test]
fn hard_floats_and_timestamps_arrive_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = dir.path().join("payloads.jsonl");
    let out = oracle(&["gen", payloads.to_str().unwrap(), "20261124", "6000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&payloads).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let topic = raw_topic(&lines);
    write_typed_config(dir.path(), &topic);

    let out = consume_all(dir.path(), &topic);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 bad records"),
        "every value is in range: {}",
        stdout(&out)
    );

    let topic_dir = dir.path().join("out").join(&topic);
    let out = oracle(&[
        "check",
        topic_dir.to_str().unwrap(),
        payloads.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "values differ from Python's: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn values_out_of_range_for_their_column_are_bad_records_with_a_reason() {
    let cases: [(&str, &str); 12] = [
        (r#"{"id": 1, "f32": 3.5e38}"#, "too large for float32"),
        (r#"{"id": 2, "f32": 1e-50}"#, "too small for float32"),
        (r#"{"id": 3, "f64": 1e400}"#, "too large for float64"),
        (r#"{"id": 4, "f64": 1e-400}"#, "too small for float64"),
        (r#"{"id": 5, "i32": 2147483648}"#, "outside int32"),
        (r#"{"id": 9223372036854775808}"#, "outside int64"),
        (
            r#"{"id": 7, "ts": 9214646400000}"#,
            "outside the years 0001 to 9999",
        ),
        (
            r#"{"id": 8, "ts": -62135596801}"#,
            "outside the years 0001 to 9999",
        ),
        (
            r#"{"id": 9, "ts": "10000-01-01T00:00:00Z"}"#,
            "field `ts` should be a timestamp",
        ),
        (r#"{"id": 10, "i32": 1.5}"#, "fractional"),
        // An exponent at the end of i64: no overflow, no wrap-around to 1970.
        (
            r#"{"id": 11, "ts": 1e9223372036854775801}"#,
            "outside the years 0001 to 9999",
        ),
        (r#"{"id": 12, "i32": 1e3}"#, "exponent form"),
    ];
    let good = [
        r#"{"id": 100, "f32": 3.4028234e38, "f64": 1.7976931348623157e308, "i32": -2147483648, "ts": 253402300799.999999}"#,
        r#"{"id": 101, "f32": 1.4e-45, "f64": 5e-324, "ts": "0001-01-01T00:00:00Z"}"#,
    ];
    let mut payloads: Vec<&str> = cases.iter().map(|c| c.0).collect();
    payloads.extend(good);
    let topic = raw_topic(&payloads);
    let dir = tempfile::tempdir().unwrap();
    write_typed_config(dir.path(), &topic);
    let out = consume_all(dir.path(), &topic);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 rows in 1 batches, 1 files, 12 bad records"),
        "{}",
        stdout(&out)
    );
    let bad = bad_records(dir.path(), &topic);
    assert_eq!(bad.len(), cases.len());
    for (entry, (payload, why)) in bad.iter().zip(cases) {
        assert_eq!(entry["payload"], payload);
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            reason.contains(why),
            "{payload}: {reason:?} should say {why:?}"
        );
    }

    // The in-range extremes, read by pyarrow.
    let script = r#"
import json, sys
import pyarrow.dataset as ds, pyarrow as pa, pyarrow.compute as pc
t = ds.dataset(sys.argv[1], format="parquet").to_table().sort_by("id")
print(json.dumps({
    "f32": [None if v is None else v.hex() for v in t.column("f32").to_pylist()],
    "f64": [None if v is None else v.hex() for v in t.column("f64").to_pylist()],
    "ts": pc.cast(t.column("ts"), pa.int64()).to_pylist(),
    "i32": t.column("i32").to_pylist(),
}))
"#;
    let topic_dir = dir.path().join("out").join(&topic);
    let out = run_with_timeout(
        std::process::Command::new(python())
            .args(["-c", script])
            .arg(&topic_dir),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // Expected spellings are Python's `float.hex()` of float32 max and its smallest subnormal.
    assert_eq!(v["f32"][0], "0x1.fffffe0000000p+127");
    assert_eq!(v["f32"][1], "0x1.0000000000000p-149");
    assert_eq!(v["f64"][0], "0x1.fffffffffffffp+1023");
    assert_eq!(v["f64"][1], "0x0.0000000000001p-1022");
    assert_eq!(v["ts"][0], 253_402_300_799_999_999_i64);
    assert_eq!(v["ts"][1], -62_135_596_800_000_000_i64);
    assert_eq!(v["i32"][0], -2_147_483_648_i64);
}

#[test]
fn a_bad_payload_that_is_not_utf8_keeps_its_bytes() {
    let not_utf8: &[u8] = b"{\"id\": 1, \"note\": \"caf\xe9\xff\"}";
    let topic = raw_topic_bytes(&[
        not_utf8,
        b"{\"id\": \"text, not a number\"}",
        b"{\"id\": 3}",
    ]);
    let dir = tempfile::tempdir().unwrap();
    write_typed_config(dir.path(), &topic);
    let out = consume_all(dir.path(), &topic);
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = bad_records(dir.path(), &topic);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].get("payload").is_none(), "{}", bad[0]);
    let script = "import base64, sys; sys.stdout.buffer.write(base64.b64decode(sys.argv[1]))";
    let decoded = run_with_timeout(
        std::process::Command::new(python())
            .args(["-c", script])
            .arg(bad[0]["payload_base64"].as_str().unwrap()),
        Duration::from_secs(30),
    );
    assert_eq!(
        decoded.stdout, not_utf8,
        "the original bytes, decoded by Python"
    );
    assert!(
        bad[0]["reason"].as_str().unwrap().contains("UTF-8"),
        "{}",
        bad[0]
    );
    assert_eq!(bad[1]["payload"], r#"{"id": "text, not a number"}"#);
    assert!(bad[1].get("payload_base64").is_none());
}

/// Five records, each with a 900 KB value that makes it bad, in a different way: text in an
/// int32 column, text that is no timestamp, a 900,000-digit number, a float64 too large, and a
/// payload that is one long JSON string instead of an object.
fn huge_bad_payloads() -> Vec<String> {
    const BIG: usize = 900_000;
    vec![
        format!(r#"{{"id": 1, "i32": "{}"}}"#, "a".repeat(BIG)),
        format!(r#"{{"id": 2, "ts": "{}"}}"#, "b".repeat(BIG)),
        format!(r#"{{"id": 3, "i32": 1{}}}"#, "3".repeat(BIG)),
        format!(r#"{{"id": 4, "f64": 4{}}}"#, "0".repeat(BIG)),
        format!(r#""{}""#, "e".repeat(BIG)),
    ]
}

/// What each reason must still say, in the order of [`huge_bad_payloads`].
const HUGE_REASONS: [&str; 5] = [
    "field `i32` should be an int32, found the text \"aaaa",
    "field `ts` should be a timestamp",
    "outside int32",
    "too large for float64",
    "expected a JSON object",
];

/// pyarrow's view of `_bad_records/`: per entry its offset, whether its payload is
/// byte-identical to the line in `expected` (one payload per line, as kcat was given them),
/// and its reason; plus the files' total size.
const READ_BAD_RECORDS: &str = r#"
import json, pathlib, sys
import pyarrow.json as pj
bad_dir, expected = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_bytes().split(b"\n")
files = sorted(bad_dir.glob("*.jsonl"))
entries, size = [], 0
for f in files:
    size += f.stat().st_size
    t = pj.read_json(f, read_options=pj.ReadOptions(block_size=64 << 20)).to_pylist()
    entries.extend(t)
print(json.dumps({
    "columns": sorted({k for e in entries for k, v in e.items() if v is not None}),
    "bytes": size,
    "entries": [{
        "offset": e["offset"],
        "same_payload": e["payload"].encode() == expected[e["offset"]],
        "reason": e["reason"],
    } for e in entries],
}))
"#;

#[test]
fn huge_bad_values_are_quoted_short_and_their_payload_is_stored_once() {
    let payloads = huge_bad_payloads();
    let lines: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let topic = raw_topic(&lines);
    let payload_bytes: usize = payloads.iter().map(String::len).sum();
    let dir = tempfile::tempdir().unwrap();
    write_typed_config(dir.path(), &topic);
    let expected = dir.path().join("payloads.txt");
    std::fs::write(&expected, payloads.join("\n")).unwrap();

    // Parquet sink, bad records skipped into _bad_records/.
    let out = run_with_timeout(
        common::configured(
            dir.path(),
            "consume",
            &["--topics", &topic, "--trigger", "available-now"],
        )
        .env("RUST_LOG", "info"),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("5 bad records"), "{}", stdout(&out));
    assert!(
        out.stderr.len() < 50_000,
        "stderr holds {} bytes for five bad records",
        out.stderr.len()
    );
    let bad_dir = dir.path().join("out").join(&topic).join("_bad_records");
    let read = run_with_timeout(
        std::process::Command::new(python())
            .args(["-c", READ_BAD_RECORDS])
            .arg(&bad_dir)
            .arg(&expected),
        Duration::from_secs(120),
    );
    assert!(read.status.success(), "{}", stderr(&read));
    let view: Value = serde_json::from_str(&stdout(&read)).unwrap();
    assert_eq!(
        view["columns"],
        serde_json::json!(["offset", "partition", "payload", "reason", "topic"])
    );
    let entries = view["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5, "{entries:?}");
    for (i, (entry, why)) in entries.iter().zip(HUGE_REASONS).enumerate() {
        assert_eq!(entry["offset"], i as u64);
        assert_eq!(entry["same_payload"], true, "payload of offset {i} differs");
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            reason.len() < 1000,
            "reason of offset {i} is {} bytes",
            reason.len()
        );
        assert!(reason.contains(why), "{reason:?} should say {why:?}");
    }
    // Each payload once: the files are the payloads plus a little JSON around each.
    let bytes = view["bytes"].as_u64().unwrap() as usize;
    assert!(
        bytes < payload_bytes + 10_000,
        "_bad_records holds {bytes} bytes for {payload_bytes} bytes of payloads"
    );

    // The console sink logs bad records instead; on_bad_record = "fail" stops at the first
    // with an error: both on stderr, both short.
    let console = run_with_timeout(
        &mut common::configured(
            dir.path(),
            "consume",
            &[
                "--sink",
                "console",
                "--topics",
                &topic,
                "--trigger",
                "available-now",
            ],
        ),
        Duration::from_secs(180),
    );
    assert!(console.status.success(), "{}", stderr(&console));
    let err = stderr(&console);
    assert_eq!(err.matches("bad record skipped").count(), 5, "{err:.2000}");
    assert!(err.len() < 50_000, "console stderr: {} bytes", err.len());
    assert!(err.contains("(900000 bytes)"), "{err:.2000}");

    let fail = tempfile::tempdir().unwrap();
    write_typed_config(fail.path(), &topic);
    let config = std::fs::read_to_string(fail.path().join("c.toml")).unwrap();
    let config = config.replace("[consumer]\n", "[consumer]\non_bad_record = \"fail\"\n");
    std::fs::write(fail.path().join("c.toml"), config).unwrap();
    let failed = consume_all(fail.path(), &topic);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let err = stderr(&failed);
    assert!(err.len() < 50_000, "fail-mode stderr: {} bytes", err.len());
    assert!(
        err.contains("offset 0") && err.contains(HUGE_REASONS[0]),
        "{err:.2000}"
    );
}
