//! `gen-data` through the real binary: deterministic for a seed, the plant's shape, and the
//! planted correlations the doc comment promises.

mod common;

use std::collections::HashSet;

use common::{factorypal, stderr};
use factorypal::gen_data::{PLANTED, production_rate};
use serde_json::Value;

fn generate(dir: &std::path::Path, args: &[&str]) -> (Vec<Value>, Vec<Value>) {
    let out = factorypal(dir)
        .args(["gen-data", "--out", "out"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |name: &str| -> Vec<Value> {
        serde_json::from_slice(&std::fs::read(dir.join("out").join(name)).unwrap()).unwrap()
    };
    (read("metrics.json"), read("workorder.json"))
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    generate(a.path(), &["--seed", "7", "--metrics", "3000"]);
    generate(b.path(), &["--seed", "7", "--metrics", "3000"]);
    generate(c.path(), &["--seed", "8", "--metrics", "3000"]);
    let bytes =
        |d: &tempfile::TempDir, f: &str| std::fs::read(d.path().join("out").join(f)).unwrap();
    for file in ["metrics.json", "workorder.json"] {
        assert_eq!(bytes(&a, file), bytes(&b, file), "{file}");
        assert_ne!(bytes(&a, file), bytes(&c, file), "{file}");
    }
}

#[test]
fn default_output_has_the_plants_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (metrics, workorders) = generate(dir.path(), &[]);

    assert_eq!(metrics.len(), 7000);
    let mut seen = HashSet::new();
    let mut times = Vec::new();
    for m in &metrics {
        let obj = m.as_object().unwrap();
        assert_eq!(obj.len(), 3, "{m}");
        let id = m["id"].as_i64().expect("int id");
        assert!((0..=19).contains(&id));
        assert!(m["val"].is_f64(), "{m}");
        let time = m["time"].as_i64().expect("int time");
        times.push(time);
        assert!(seen.insert(m.to_string()), "duplicate record {m}");
    }
    let span_days = (times.iter().max().unwrap() - times.iter().min().unwrap()) as f64 / 86_400.0;
    assert!((16.0..17.5).contains(&span_days), "span {span_days} days");
    assert!(
        times.windows(2).any(|w| w[0] > w[1]),
        "metrics must not be in time order"
    );
    let gaps: HashSet<i64> = {
        let mut sorted = times.clone();
        sorted.sort();
        sorted.windows(2).map(|w| w[1] - w[0]).collect()
    };
    assert!(gaps.len() > 100, "intervals must be irregular");

    assert_eq!(workorders.len(), 576);
    for product in 0..=1 {
        let series: Vec<(i64, f64)> = workorders
            .iter()
            .filter(|w| w["product"].as_i64() == Some(product))
            .map(|w| {
                (
                    w["time"].as_i64().unwrap(),
                    w["production"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(series.len(), 288);
        for w in series.windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!((4000..=6000).contains(&gap), "gap {gap}");
        }
        let rising = series.windows(2).filter(|w| w[1].1 > w[0].1).count();
        assert!(rising as f64 > 0.95 * 287.0, "production must mostly rise");
        assert!(series.last().unwrap().1 > series[0].1 * 50.0);
    }
}

fn correlation(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let vx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let vy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

#[test]
fn planted_metric_ids_follow_their_products_production_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (metrics, _) = generate(dir.path(), &[]);
    for (product, ids) in PLANTED.iter().enumerate() {
        for id in 0..20u32 {
            let (vals, rates): (Vec<f64>, Vec<f64>) = metrics
                .iter()
                .filter(|m| m["id"].as_u64() == Some(id as u64))
                .map(|m| {
                    let t = m["time"].as_f64().unwrap();
                    (m["val"].as_f64().unwrap(), production_rate(product, t))
                })
                .unzip();
            let r = correlation(&vals, &rates);
            if ids.contains(&id) {
                assert!(r > 0.9, "planted id {id} vs product {product}: r = {r}");
            } else if !PLANTED.iter().flatten().any(|&p| p == id) {
                assert!(
                    r.abs() < 0.5,
                    "unrelated id {id} vs product {product}: r = {r}"
                );
            }
        }
    }
}

#[test]
fn committed_sample_data_is_what_gen_data_writes() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), &[]);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["metrics.json", "workorder.json"] {
        assert!(
            std::fs::read(repo.join("data_source").join(file)).unwrap()
                == std::fs::read(dir.path().join("out").join(file)).unwrap(),
            "data_source/{file} differs from `factorypal gen-data --out data_source`; regenerate it"
        );
    }
}
