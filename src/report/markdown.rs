//! `report.md`: the answer per product first, then the numbers behind it.

use std::fmt::Write as _;

use super::model::{InputSummary, ProductReport, Report};
use super::text::{self, fmt_p, fmt_r};

/// Renders the Markdown report.
pub fn render(report: &Report) -> String {
    let mut out = String::from("# Which machine parameters go with each product's output\n\n");
    summary(&mut out, &report.input, report);
    let _ = writeln!(out, "## Method\n\n{}\n", text::method(report));
    if report.products.is_empty() {
        out.push_str(
            "**No work orders in the input (or in the window asked for): there is no output to \
             relate any parameter to.**\n",
        );
    }
    for product in &report.products {
        product_section(&mut out, product, report.alpha);
    }
    out.push_str(
        "Every product × metric × lag, with full-precision numbers: `correlations.csv`.\n",
    );
    out
}

fn summary(out: &mut String, input: &InputSummary, report: &Report) {
    if let (Some(first), Some(last)) = (input.first_micros, input.last_micros) {
        let _ = writeln!(
            out,
            "Work orders from {} to {} (UTC).",
            text::fmt_time(first),
            text::fmt_time(last)
        );
    }
    if input.from_micros.is_some() || input.to_micros.is_some() {
        let bound = |t: Option<i64>| t.map_or("—".to_string(), text::fmt_time);
        let _ = writeln!(
            out,
            "Window asked for: from {} to {}.",
            bound(input.from_micros),
            bound(input.to_micros)
        );
    }
    out.push_str("\nData read:\n\n");
    for source in &input.sources {
        let _ = writeln!(out, "- {}", escape(source));
    }
    let _ = writeln!(
        out,
        "- {} work orders of {} products; {} samples of {} metrics ({} in no work-order interval)",
        input.workorder_records,
        report.products.len(),
        input.metric_samples,
        report.metrics.len(),
        input.metric_outside_intervals
    );
    if input.workorder_dropped + input.metric_dropped > 0 {
        let _ = writeln!(
            out,
            "- left out for a missing or non-finite value: {} work orders, {} metric samples",
            input.workorder_dropped, input.metric_dropped
        );
    }
    out.push('\n');
}

fn product_section(out: &mut String, product: &ProductReport, alpha: f64) {
    let _ = writeln!(
        out,
        "## Product {}\n\n**{}**\n",
        escape(&product.product.to_string()),
        escape(&product.verdict)
    );
    if !product.top.is_empty() {
        out.push_str("| Rank | Metric | Lag | r | rho | n | p | adjusted p | significant |\n");
        out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---|\n");
        for (rank, top) in product.top.iter().enumerate() {
            let row = &product.correlations[top.row];
            let s = row.stats.expect("ranked rows are defined");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                rank + 1,
                escape(&row.metric.to_string()),
                row.lag,
                fmt_r(s.pearson_r),
                fmt_r(s.spearman_rho),
                row.n,
                fmt_p(s.p_value),
                fmt_p(s.p_adjusted),
                if s.significant { "yes" } else { "no" }
            );
        }
        out.push('\n');
    }
    let c = product.counts;
    let _ = write!(out, "{} work orders, {} intervals", c.records, c.intervals);
    if c.negative_steps > 0 {
        let _ = write!(
            out,
            "; {} interval(s) where production went down (reset or correction) left out",
            c.negative_steps
        );
    }
    if c.zero_length > 0 {
        let _ = write!(out, "; {} repeated time(s) skipped", c.zero_length);
    }
    let untestable = product
        .correlations
        .iter()
        .filter(|r| r.lag == 0 && r.stats.is_none())
        .count();
    if untestable > 0 {
        let _ = write!(
            out,
            "; {untestable} metric(s) could not be tested at lag 0 (insufficient data, see the CSV)"
        );
    }
    let _ = writeln!(out, ". Significant means adjusted p ≤ {}.\n", fmt_p(alpha));
}

/// Text from the data (ids, paths) as Markdown shows it literally: its punctuation
/// backslash-escaped, line breaks as spaces, so a `|` cannot split a table cell.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_break_a_table_or_a_heading() {
        assert_eq!(escape("m|1\n# x"), "m\\|1 \\# x");
        assert_eq!(escape("plain 7"), "plain 7");
    }
}
