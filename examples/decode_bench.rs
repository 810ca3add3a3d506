//! How fast the consumer turns JSON payloads into Arrow rows, alone: no Kafka, no Parquet.
//! The payloads are the plant's own metrics (`data_source/metrics.json`, numbers spelled as
//! the plant sent them), repeated to `RECORDS`, decoded in batches of 10,000 rows as the
//! consumer does; the best of 7 passes is reported, so other load on the box shows less.
//!
//! usage: cargo run --release --example decode_bench [RECORDS]   (default 1000000)

use std::time::Instant;

use factorypal::consume::schema::RowDecoder;
use factorypal::settings::ColumnType;
use indexmap::IndexMap;
use serde_json::value::RawValue;

fn main() {
    let records: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |n| n.parse().expect("RECORDS is a number"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data_source/metrics.json");
    let text = std::fs::read_to_string(path).expect("read data_source/metrics.json");
    let values: Vec<&RawValue> = serde_json::from_str(&text).expect("a JSON array");
    let payloads: Vec<Vec<u8>> = values
        .iter()
        .cycle()
        .take(records)
        .map(|v| {
            let mut out = Vec::new();
            factorypal::json::compact_into(v.get().as_bytes(), &mut out);
            out
        })
        .collect();
    let schema: IndexMap<String, ColumnType> = [
        ("id".to_string(), ColumnType::Int32),
        ("val".to_string(), ColumnType::Float64),
        ("time".to_string(), ColumnType::Timestamp),
    ]
    .into_iter()
    .collect();
    let mut decoder = RowDecoder::new(&schema);
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let started = Instant::now();
        let mut rows = 0;
        for payload in &payloads {
            decoder.decode(payload).expect("the plant's metrics decode");
            if decoder.rows() == 10_000 {
                rows += decoder.finish().num_rows();
            }
        }
        rows += decoder.finish().num_rows();
        assert_eq!(rows, records);
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "decoded {records} metrics payloads: best of 7 {:.3} s, {:.0} records/s, {:.0} ns/record",
        best,
        records as f64 / best,
        best * 1e9 / records as f64
    );
}
