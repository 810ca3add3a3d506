//! Interval outputs and metric means → correlations, their adjustment, the ranking and the
//! verdict of each product (method steps 4 and 5).

use super::model::{
    Correlation, IntervalPoint, Key, MAX_SERIES_POINTS, ProductReport, Stats, TopMetric,
};
use super::samples::Samples;
use super::stats::{benjamini_hochberg, correlate};
use super::text::{fmt_p, fmt_r};
use super::workorders::Intervals;

/// How many metrics a product's answer names at most.
pub const TOP: usize = 3;

/// The analysis choices of one report.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub max_lag: usize,
    pub alpha: f64,
}

/// The pairs of one correlation: output of interval `j` and the metric's mean in `j − lag`.
struct Pairs {
    output_intervals: Vec<usize>,
    outputs: Vec<f64>,
    means: Vec<f64>,
}

fn pairs(
    intervals: &Intervals,
    samples: &Samples<'_>,
    p: usize,
    metric: usize,
    lag: usize,
) -> Pairs {
    let mut pairs = Pairs {
        output_intervals: Vec::new(),
        outputs: Vec::new(),
        means: Vec::new(),
    };
    for j in lag..intervals.len() {
        let (Some(output), Some(mean)) = (intervals.outputs[j], samples.mean(p, metric, j - lag))
        else {
            continue;
        };
        pairs.output_intervals.push(j);
        pairs.outputs.push(output);
        pairs.means.push(mean);
    }
    pairs
}

/// The report of product `p`; `metrics` is [`Samples::metrics`], sorted once for all products.
pub fn product_report(
    intervals: &Intervals,
    samples: &Samples<'_>,
    metrics: &[(Key, usize)],
    p: usize,
    method: Method,
) -> ProductReport {
    let lags = method.max_lag + 1;
    let mut correlations = Vec::with_capacity(metrics.len() * lags);
    for (metric, index) in metrics {
        for lag in 0..lags {
            let pairs = pairs(intervals, samples, p, *index, lag);
            correlations.push(row(metric.clone(), lag, &pairs));
        }
    }
    adjust(&mut correlations, method.alpha);
    let ranked = ranking(&correlations);
    // Rows are metric-major, so row / lags is the metric's place in `metrics`.
    let top = ranked
        .iter()
        .take(TOP)
        .map(|&row| {
            let index = metrics[row / lags].1;
            let lag = correlations[row].lag;
            TopMetric {
                row,
                series: series(intervals, &pairs(intervals, samples, p, index, lag)),
            }
        })
        .collect::<Vec<_>>();
    let mut report = ProductReport {
        product: intervals.product.clone(),
        counts: intervals.counts,
        correlations,
        top,
        verdict: String::new(),
    };
    report.verdict = verdict(&report, &ranked, method);
    report
}

fn row(metric: Key, lag: usize, pairs: &Pairs) -> Correlation {
    let n = pairs.outputs.len();
    match correlate(&pairs.outputs, &pairs.means) {
        Ok(c) => Correlation {
            metric,
            lag,
            n,
            stats: Some(Stats {
                pearson_r: c.pearson_r,
                spearman_rho: c.spearman_rho,
                p_value: c.p_value,
                p_adjusted: f64::NAN, // set by `adjust`
                significant: false,
            }),
            note: None,
        },
        Err(why) => Correlation {
            metric,
            lag,
            n,
            stats: None,
            note: Some(why.note()),
        },
    }
}

/// Benjamini–Hochberg over every defined row of the product: every metric and every lag.
fn adjust(rows: &mut [Correlation], alpha: f64) {
    let p: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.stats.map(|s| s.p_value))
        .collect();
    let mut adjusted = benjamini_hochberg(&p).into_iter();
    for stats in rows.iter_mut().filter_map(|r| r.stats.as_mut()) {
        stats.p_adjusted = adjusted.next().expect("one adjusted p per defined row");
        stats.significant = stats.p_adjusted <= alpha;
    }
}

/// Row indices, one per metric (its largest |r| over the lags; ties: the smaller lag), best
/// first (ties: the smaller metric).
fn ranking(rows: &[Correlation]) -> Vec<usize> {
    let abs_r = |i: usize| rows[i].stats.map_or(-1.0, |s| s.pearson_r.abs());
    let mut best: Vec<usize> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if row.stats.is_none() {
            continue;
        }
        match best.last_mut() {
            Some(last) if rows[*last].metric == row.metric => {
                if abs_r(i) > abs_r(*last) {
                    *last = i;
                }
            }
            _ => best.push(i),
        }
    }
    best.sort_by(|&a, &b| {
        abs_r(b)
            .total_cmp(&abs_r(a))
            .then_with(|| rows[a].metric.cmp(&rows[b].metric))
    });
    best
}

/// The pairs in time order, averaged into at most [`MAX_SERIES_POINTS`] buckets.
fn series(intervals: &Intervals, pairs: &Pairs) -> Vec<IntervalPoint> {
    let n = pairs.outputs.len();
    let buckets = n.min(MAX_SERIES_POINTS);
    (0..buckets)
        .map(|b| {
            let (from, to) = (b * n / buckets, (b + 1) * n / buckets);
            let len = (to - from) as f64;
            IntervalPoint {
                start_micros: intervals.starts[pairs.output_intervals[from]],
                output: pairs.outputs[from..to].iter().sum::<f64>() / len,
                metric_mean: pairs.means[from..to].iter().sum::<f64>() / len,
            }
        })
        .collect()
}

/// The first sentence of a product's section: the significant metrics (each at its strongest
/// significant lag, strongest first, at most [`TOP`]), or why there are none.
fn verdict(report: &ProductReport, ranked: &[usize], method: Method) -> String {
    let product = &report.product;
    if report.correlations.is_empty() {
        return format!(
            "No machine parameter is significantly related to product {product}'s output: there \
             are no metric samples to test (none in the input, or none in the window asked for)."
        );
    }
    let Some(&strongest) = ranked.first() else {
        return format!(
            "No machine parameter is significantly related to product {product}'s output: no \
             test could be computed ({}; {} work orders give {} intervals).",
            undefined_reasons(&report.correlations),
            report.counts.records,
            report.counts.intervals
        );
    };
    let significant = strongest_significant(&report.correlations);
    if significant.is_empty() {
        let tested = report
            .correlations
            .iter()
            .filter(|c| c.stats.is_some())
            .count();
        let strongest = &report.correlations[strongest];
        let stats = strongest.stats.expect("ranked rows are defined");
        return format!(
            "No machine parameter is significantly related to product {product}'s output: none \
             of the {tested} tests has an adjusted p at or below {}; the strongest, metric {} \
             (r = {}, adjusted p = {}), is within what chance alone gives.",
            fmt_p(method.alpha),
            strongest.metric,
            fmt_r(stats.pearson_r),
            fmt_p(stats.p_adjusted)
        );
    }
    let named: Vec<String> = significant
        .iter()
        .take(TOP)
        .map(|c| {
            let s = c.stats.expect("significant rows are defined");
            format!(
                "metric {} (r = {}{})",
                c.metric,
                fmt_r(s.pearson_r),
                lag_words(c.lag)
            )
        })
        .collect();
    let (count, verb) = match significant.len() {
        1 => ("One machine parameter".to_string(), "goes"),
        2 => ("Two machine parameters".to_string(), "go"),
        3 => ("Three machine parameters".to_string(), "go"),
        n => (format!("{n} machine parameters"), "go"),
    };
    let lead = if significant.len() > named.len() {
        "; the strongest"
    } else {
        ""
    };
    format!(
        "{count} {verb} significantly with product {product}'s output{lead}: {}.",
        join_words(&named)
    )
}

/// Per metric with a significant row, its significant row of largest |r| (ties: the smaller
/// lag); strongest first (ties: the smaller metric).
fn strongest_significant(rows: &[Correlation]) -> Vec<&Correlation> {
    let abs_r = |c: &Correlation| c.stats.map_or(-1.0, |s| s.pearson_r.abs());
    let mut best: Vec<&Correlation> = Vec::new();
    for row in rows
        .iter()
        .filter(|c| c.stats.is_some_and(|s| s.significant))
    {
        match best.last_mut() {
            Some(last) if last.metric == row.metric => {
                if abs_r(row) > abs_r(last) {
                    *last = row;
                }
            }
            _ => best.push(row),
        }
    }
    best.sort_by(|a, b| {
        abs_r(b)
            .total_cmp(&abs_r(a))
            .then_with(|| a.metric.cmp(&b.metric))
    });
    best
}

/// Why no row is defined, with how many rows each reason left out: `n < 3: 40 tests`.
fn undefined_reasons(rows: &[Correlation]) -> String {
    let mut reasons: Vec<(&str, usize)> = Vec::new();
    for note in rows.iter().filter_map(|c| c.note) {
        let reason = note.trim_start_matches("insufficient data: ");
        match reasons.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((reason, 1)),
        }
    }
    let parts: Vec<String> = reasons
        .iter()
        .map(|(reason, n)| format!("{reason}: {n} test{}", if *n == 1 { "" } else { "s" }))
        .collect();
    parts.join("; ")
}

fn lag_words(lag: usize) -> String {
    match lag {
        0 => String::new(),
        1 => ", 1 interval earlier".to_string(),
        k => format!(", {k} intervals earlier"),
    }
}

fn join_words(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::IntervalCounts;

    fn defined(metric: i64, lag: usize, n: usize, r: f64, p_adjusted: f64) -> Correlation {
        Correlation {
            metric: Key::Int(metric),
            lag,
            n,
            stats: Some(Stats {
                pearson_r: r,
                spearman_rho: r,
                p_value: p_adjusted,
                p_adjusted,
                significant: p_adjusted <= 0.05,
            }),
            note: None,
        }
    }

    fn verdict_of(correlations: Vec<Correlation>) -> String {
        let ranked = ranking(&correlations);
        let report = ProductReport {
            product: Key::Int(0),
            counts: IntervalCounts::default(),
            correlations,
            top: Vec::new(),
            verdict: String::new(),
        };
        let method = Method {
            max_lag: 1,
            alpha: 0.05,
        };
        verdict(&report, &ranked, method)
    }

    #[test]
    fn a_significant_row_at_a_weaker_lag_is_named() {
        // Metric 7's largest |r| is at lag 1 on 3 intervals (not significant); at lag 0 on
        // 30 intervals it is significant: the verdict must not say "no parameter".
        let text = verdict_of(vec![
            defined(7, 0, 30, 0.755, 2.8e-6),
            defined(7, 1, 3, 0.952, 0.198),
        ]);
        assert!(
            text.starts_with("One machine parameter goes significantly"),
            "{text}"
        );
        assert!(text.contains("metric 7 (r = +0.755)"), "{text}");
    }

    #[test]
    fn no_defined_row_says_why() {
        let constant = Correlation {
            metric: Key::Int(1),
            lag: 0,
            n: 59,
            stats: None,
            note: Some("insufficient data: constant output"),
        };
        let text = verdict_of(vec![constant]);
        assert!(
            text.starts_with("No machine parameter is significantly"),
            "{text}"
        );
        assert!(text.contains("constant output: 1 test"), "{text}");
    }
}
