//! The self-contained HTML report: one page with inline CSS and inline SVG, no scripts and no
//! external assets, so it can be mailed, archived or opened offline. It only formats a
//! [`Report`]; every number and every decision comes from `analysis`.
//!
//! Layout, top to bottom:
//! 1. the title and the data summary (sources, counts, what was left out, the time span in
//!    UTC, the window asked for);
//! 2. "at a glance": one row per product with its strongest parameter, linking to its section;
//! 3. the method paragraph ([`text::method`], shared with the Markdown report);
//! 4. per product: the verdict sentence first, boxed (green when a parameter is significant);
//!    the interval counts; the table of its top metrics; a horizontal bar chart of |r| for
//!    every metric at its best lag (sorted by |r|, significant bars coloured and starred, the
//!    sign of r in the label, metrics without a defined row listed under the chart); and one
//!    time-series panel per top metric: the interval output and the metric's interval mean,
//!    each scaled to its own min–max (real ranges in the legend), on a UTC time axis.
//!
//! Every text from the data goes through [`escape`]; every number drawn or printed goes
//! through a guard, so NaN or ±inf never reach the page. The output depends only on the report
//! (no clock, no hash-map order): the same report gives the same bytes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::model::{
    Correlation, InputSummary, IntervalCounts, IntervalPoint, Key, ProductReport, Report,
};
use super::text;

/// `write!` into a `String`, which cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

const STYLE: &str = "
body{margin:0;background:#eef1f5;color:#1c2430;
  font:15px/1.5 'DejaVu Sans',system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}
main{max-width:1000px;margin:0 auto;padding:22px 30px 30px;background:#fff}
h1{font-size:25px;margin:0 0 14px}
h2{font-size:20px;margin:30px 0 10px;padding-bottom:4px;border-bottom:2px solid #dfe4ea}
h3{font-size:16px;margin:20px 0 6px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
.facts th{text-align:left;vertical-align:top;padding:2px 18px 2px 0;color:#4a5568;white-space:nowrap}
.facts td{padding:2px 0}
.facts ul{margin:0;padding-left:18px}
.data th,.data td{padding:4px 10px;border-bottom:1px solid #e3e7ee;text-align:right}
.data th:first-child,.data td:first-child,.data .name{text-align:left}
.data thead th{background:#f0f3f7;font-size:13px}
.data tr.sig td{font-weight:bold}
.method{color:#2d3748;font-size:14px}
.verdict{font-size:18px;font-weight:bold;margin:8px 0;padding:10px 14px;border-left:6px solid;border-radius:4px}
.verdict.yes{background:#e6f4ea;border-color:#1a7f37}
.verdict.no{background:#f1f3f5;border-color:#8c959f}
.counts,.legend,.undefined,.empty{color:#4a5568;font-size:13px}
.swatch{display:inline-block;width:12px;height:12px;vertical-align:-1px;margin:0 5px 0 0}
.key{margin-right:18px;white-space:nowrap}
.sig-fill{background:#1a7f37}.nosig-fill{background:#b6bec9}
.out-fill{background:#1f4e9c}.met-fill{background:#d9730d}
.panel{margin:10px 0 18px;padding:8px 12px;border:1px solid #e3e7ee;border-radius:6px}
.panel figcaption{font-size:14px}
svg{display:block;width:100%;height:auto}
svg text{font-family:'DejaVu Sans',sans-serif;font-size:12px;fill:#1c2430}
svg .small{font-size:11px;fill:#4a5568}
svg .strong{font-weight:bold}
.bar-sig{fill:#1a7f37}.bar-nosig{fill:#b6bec9}
.gridline{stroke:#e3e7ee;stroke-width:1}
.axis{stroke:#8c959f;stroke-width:1}
.line-out{stroke:#1f4e9c;fill:none;stroke-width:1.6}
.line-met{stroke:#d9730d;fill:none;stroke-width:1.6}
.dot-out{fill:#1f4e9c}.dot-met{fill:#d9730d}
footer{margin-top:30px;color:#4a5568;font-size:13px}
";

/// Renders the whole page.
pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(64 * 1024);
    page.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<title>factorypal report: machine parameters and product output</title>\n");
    put!(page, "<style>{STYLE}</style>\n</head>\n<body>\n<main>\n");
    page.push_str("<h1>Which machine parameters go with each product's output</h1>\n");
    summary(&mut page, report);
    glance(&mut page, report);
    put!(
        page,
        "<h2>Method</h2>\n<p class=\"method\">{}</p>\n",
        escape(&text::method(report))
    );
    for (index, product) in report.products.iter().enumerate() {
        product_section(&mut page, report, index, product);
    }
    page.push_str(
        "<footer>Every metric at every lag, with the reason a row is undefined, is in \
         correlations.csv (format csv).</footer>\n</main>\n</body>\n</html>\n",
    );
    page
}

/// Escapes a text for HTML content and attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Data summary and the "at a glance" table.

/// The "Data" section: where the data came from, how much of it, what was left out, when.
fn summary(page: &mut String, report: &Report) {
    let input = &report.input;
    page.push_str("<h2>Data</h2>\n<table class=\"facts\">\n");
    fact(page, "Sources", &sources_html(&input.sources));
    fact(page, "Time span (UTC)", &escape(&span_text(input)));
    if let Some(window) = window_text(input) {
        fact(page, "Window asked", &escape(&window));
    }
    let workorders = format!(
        "{} records; {} rows left out (a null field or a number that is not finite)",
        count(input.workorder_records),
        count(input.workorder_dropped)
    );
    fact(page, "Work orders", &escape(&workorders));
    let samples = format!(
        "{} samples; {} rows left out (a null field or a number that is not finite); \
         {} fell in no interval of any product",
        count(input.metric_samples),
        count(input.metric_dropped),
        count(input.metric_outside_intervals)
    );
    fact(page, "Metric samples", &escape(&samples));
    let tested = format!(
        "{} products × {} metric ids × lags 0–{}; significant when the adjusted p ≤ {}",
        count(report.products.len() as u64),
        count(report.metrics.len() as u64),
        report.max_lag,
        alpha_text(report.alpha)
    );
    fact(page, "Tested", &escape(&tested));
    page.push_str("</table>\n");
}

/// One row of the facts table; `html` is already escaped.
fn fact(page: &mut String, label: &str, html: &str) {
    put!(page, "<tr><th>{}</th><td>{html}</td></tr>\n", escape(label));
}

fn sources_html(sources: &[String]) -> String {
    if sources.is_empty() {
        return "none".to_string();
    }
    let items: String = sources
        .iter()
        .map(|source| format!("<li>{}</li>", escape(source)))
        .collect();
    format!("<ul>{items}</ul>")
}

/// `2026-01-03 06:00 to 2026-01-09 18:00 (6.5 days)`, or why there is no span.
fn span_text(input: &InputSummary) -> String {
    match (input.first_micros, input.last_micros) {
        (Some(first), Some(last)) => {
            let seconds = (i128::from(last) - i128::from(first)) as f64 / 1e6;
            let length = if seconds < 2.0 * 86_400.0 {
                format!("{} hours", fmt_num(seconds / 3600.0))
            } else {
                format!("{} days", fmt_num(seconds / 86_400.0))
            };
            format!("{} to {} ({length})", utc_minute(first), utc_minute(last))
        }
        _ => "no work orders in the data".to_string(),
    }
}

/// The `--from`/`--to` window, when one was asked for.
fn window_text(input: &InputSummary) -> Option<String> {
    match (input.from_micros, input.to_micros) {
        (None, None) => None,
        (Some(from), None) => Some(format!("from {}", utc_minute(from))),
        (None, Some(to)) => Some(format!("before {}", utc_minute(to))),
        (Some(from), Some(to)) => Some(format!(
            "from {} up to (not including) {}",
            utc_minute(from),
            utc_minute(to)
        )),
    }
}

fn alpha_text(alpha: f64) -> String {
    if alpha.is_finite() {
        text::fmt_p(alpha)
    } else {
        "—".to_string()
    }
}

/// One row per product: its strongest parameter, linking to the product's section.
fn glance(page: &mut String, report: &Report) {
    page.push_str("<h2>At a glance</h2>\n");
    if report.products.is_empty() {
        page.push_str(
            "<p class=\"verdict no\">No product has work orders in the data, so there is \
             nothing to relate. Check the input directory and the --from/--to window.</p>\n",
        );
        return;
    }
    page.push_str(
        "<table class=\"data\">\n<thead><tr><th>Product</th><th class=\"name\">Strongest parameter</th>\
         <th>lag</th><th>r</th><th>adjusted p</th><th>Any significant?</th></tr></thead>\n<tbody>\n",
    );
    for (index, product) in report.products.iter().enumerate() {
        let best = product
            .top
            .first()
            .and_then(|top| product.correlations.get(top.row));
        let (metric, lag, r, p_adjusted) = match best {
            Some(row) => (
                escape(&row.metric.to_string()),
                row.lag.to_string(),
                row.stats.map_or(DASH.to_string(), |s| r_text(s.pearson_r)),
                row.stats.map_or(DASH.to_string(), |s| p_text(s.p_adjusted)),
            ),
            None => (
                "none defined".to_string(),
                DASH.into(),
                DASH.into(),
                DASH.into(),
            ),
        };
        let any = if product.any_significant() {
            "yes"
        } else {
            "no"
        };
        let class = if product.any_significant() {
            " class=\"sig\""
        } else {
            ""
        };
        put!(
            page,
            "<tr{class}><td><a href=\"#product-{}\">{}</a></td><td class=\"name\">{metric}</td><td>{lag}</td>\
             <td>{r}</td><td>{p_adjusted}</td><td>{any}</td></tr>\n",
            index + 1,
            escape(&product.product.to_string())
        );
    }
    page.push_str("</tbody>\n</table>\n");
}

// ---------------------------------------------------------------------------------------------
// A product's section.

const DASH: &str = "—";

fn product_section(page: &mut String, report: &Report, index: usize, product: &ProductReport) {
    let class = if product.any_significant() {
        "yes"
    } else {
        "no"
    };
    put!(
        page,
        "<section class=\"product\" id=\"product-{}\">\n<h2>Product {}</h2>\n\
         <p class=\"verdict {class}\">{}</p>\n<p class=\"counts\">{}</p>\n",
        index + 1,
        escape(&product.product.to_string()),
        escape(&product.verdict),
        escape(&counts_text(&product.counts))
    );
    top_table(page, product);
    bar_section(page, report, product);
    panels(page, product);
    page.push_str("</section>\n");
}

fn counts_text(counts: &IntervalCounts) -> String {
    format!(
        "{} work orders → {} intervals between consecutive work orders; {} of them with a \
         falling production counter (left out); {} pairs with the same time (not intervals).",
        count(counts.records as u64),
        count(counts.intervals as u64),
        count(counts.negative_steps as u64),
        count(counts.zero_length as u64)
    )
}

/// The table of the product's top metrics, best first.
fn top_table(page: &mut String, product: &ProductReport) {
    let rows: Vec<&Correlation> = product
        .top
        .iter()
        .filter_map(|top| product.correlations.get(top.row))
        .collect();
    if rows.is_empty() {
        // The chart section below says there is nothing defined.
        return;
    }
    page.push_str("<h3>Top metrics</h3>\n");
    page.push_str(
        "<table class=\"data\">\n<thead><tr><th>metric</th><th>lag</th><th>r</th><th>rho</th>\
         <th>n</th><th>p</th><th>adjusted p</th><th>significant</th></tr></thead>\n<tbody>\n",
    );
    for row in rows {
        top_row(page, row);
    }
    page.push_str("</tbody>\n</table>\n");
}

fn top_row(page: &mut String, row: &Correlation) {
    let metric = escape(&row.metric.to_string());
    let Some(stats) = row.stats else {
        let note = escape(row.note.unwrap_or("undefined"));
        put!(
            page,
            "<tr><td>{metric}</td><td>{}</td><td colspan=\"2\">{DASH}</td><td>{}</td>\
             <td colspan=\"3\">{note}</td></tr>\n",
            row.lag,
            row.n
        );
        return;
    };
    let (class, significant) = if stats.significant {
        (" class=\"sig\"", "★ yes")
    } else {
        ("", "no")
    };
    put!(
        page,
        "<tr{class}><td>{metric}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{significant}</td></tr>\n",
        row.lag,
        r_text(stats.pearson_r),
        r_text(stats.spearman_rho),
        count(row.n as u64),
        p_text(stats.p_value),
        p_text(stats.p_adjusted)
    );
}

// ---------------------------------------------------------------------------------------------
// The bar chart of |r| for every metric.

/// A metric at its best lag: the defined row with the largest |r| (ties: the smaller lag).
#[derive(Debug, Clone, Copy)]
struct Bar<'a> {
    metric: &'a Key,
    lag: usize,
    r: f64,
    significant: bool,
}

/// What the chart shows: bars sorted by |r| descending (ties: metric ascending), and the
/// metrics without any defined row, grouped by the reason (the note of their smallest lag).
struct BarData<'a> {
    bars: Vec<Bar<'a>>,
    undefined: BTreeMap<&'static str, Vec<&'a Key>>,
}

fn bar_data<'a>(report: &'a Report, product: &'a ProductReport) -> BarData<'a> {
    let mut best: BTreeMap<&Key, Bar> = BTreeMap::new();
    let mut notes: BTreeMap<&Key, (usize, &'static str)> = BTreeMap::new();
    for row in &product.correlations {
        match row.stats.filter(|s| s.pearson_r.is_finite()) {
            Some(stats) => {
                let bar = Bar {
                    metric: &row.metric,
                    lag: row.lag,
                    r: stats.pearson_r,
                    significant: stats.significant,
                };
                let entry = best.entry(&row.metric).or_insert(bar);
                if better(&bar, entry) {
                    *entry = bar;
                }
            }
            None => {
                let note = row.note.unwrap_or("insufficient data");
                let entry = notes.entry(&row.metric).or_insert((row.lag, note));
                if row.lag < entry.0 {
                    *entry = (row.lag, note);
                }
            }
        }
    }
    for metric in &report.metrics {
        notes.entry(metric).or_insert((0, "no data"));
    }
    let mut undefined: BTreeMap<&'static str, Vec<&Key>> = BTreeMap::new();
    for (metric, (_, note)) in notes {
        if !best.contains_key(metric) {
            undefined.entry(note).or_default().push(metric);
        }
    }
    let mut bars: Vec<Bar> = best.into_values().collect();
    bars.sort_by(|a, b| {
        b.r.abs()
            .total_cmp(&a.r.abs())
            .then_with(|| a.metric.cmp(b.metric))
    });
    BarData { bars, undefined }
}

/// Whether `candidate` represents its metric better than `current`.
fn better(candidate: &Bar, current: &Bar) -> bool {
    match candidate.r.abs().total_cmp(&current.r.abs()) {
        Ordering::Greater => true,
        Ordering::Equal => candidate.lag < current.lag,
        Ordering::Less => false,
    }
}

fn bar_section(page: &mut String, report: &Report, product: &ProductReport) {
    let data = bar_data(report, product);
    page.push_str("<h3>Every metric: strength of its relation to output (|r|)</h3>\n");
    if data.bars.is_empty() {
        page.push_str("<p class=\"empty\">No metric has a defined correlation to chart.</p>\n");
    } else {
        put!(
            page,
            "<p class=\"legend\"><span class=\"key\"><span class=\"swatch sig-fill\"></span>★ \
             significant (adjusted p ≤ {})</span><span class=\"key\"><span class=\"swatch \
             nosig-fill\"></span>not significant</span><br>Each metric at the lag where |r| is \
             largest; the label gives r with its sign (+ rises with output, − falls as output \
             rises).</p>\n",
            escape(&alpha_text(report.alpha))
        );
        bar_svg(page, &data.bars);
    }
    if !data.undefined.is_empty() {
        let groups: Vec<String> = data
            .undefined
            .iter()
            .map(|(note, metrics)| {
                let names: Vec<String> = metrics.iter().map(|m| escape(&m.to_string())).collect();
                format!("{} ({})", names.join(", "), escape(note))
            })
            .collect();
        put!(
            page,
            "<p class=\"undefined\"><b>Insufficient data</b> (not charted): {}.</p>\n",
            groups.join("; ")
        );
    }
}

const BAR_LABEL_X: f64 = 206.0;
const BAR_X0: f64 = 214.0;
const BAR_LEN: f64 = 520.0;
const BAR_ROW: f64 = 22.0;
const BAR_TOP: f64 = 30.0;

fn bar_svg(page: &mut String, bars: &[Bar]) {
    let height = BAR_TOP + BAR_ROW * bars.len() as f64 + 8.0;
    put!(
        page,
        "<svg viewBox=\"0 0 960 {height}\" role=\"img\" aria-label=\"|r| per metric\">\n"
    );
    for tick in 0..=5 {
        let value = f64::from(tick) / 5.0;
        let x = BAR_X0 + value * BAR_LEN;
        put!(
            page,
            "<line class=\"gridline\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>\
             <text class=\"small\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            BAR_TOP - 4.0,
            height - 4.0,
            BAR_TOP - 10.0,
            fmt_num(value)
        );
    }
    put!(
        page,
        "<text class=\"small\" x=\"{}\" y=\"{}\" text-anchor=\"end\">metric</text>\
         <text class=\"small\" x=\"{}\" y=\"{}\">|r|</text>\n",
        BAR_LABEL_X - 14.0,
        BAR_TOP - 10.0,
        BAR_X0 + BAR_LEN + 14.0,
        BAR_TOP - 10.0
    );
    for (index, bar) in bars.iter().enumerate() {
        bar_row(page, index, bar);
    }
    page.push_str("</svg>\n");
}

fn bar_row(page: &mut String, index: usize, bar: &Bar) {
    let y = BAR_TOP + BAR_ROW * index as f64;
    let length = (bar.r.abs().min(1.0) * BAR_LEN).max(1.0);
    let name = bar.metric.to_string();
    let (class, mark, weight) = if bar.significant {
        ("bar-sig", " ★", " class=\"strong\"")
    } else {
        ("bar-nosig", "", "")
    };
    put!(
        page,
        "<text x=\"{BAR_LABEL_X}\" y=\"{}\" text-anchor=\"end\"{weight}><title>{}</title>{}</text>\
         <rect class=\"{class}\" x=\"{BAR_X0}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\
         <text x=\"{}\" y=\"{}\"{weight}>{} · lag {}{mark}</text>\n",
        y + 15.0,
        escape(&name),
        escape(&shorten(&name, 28)),
        y + 4.0,
        coord(length),
        BAR_ROW - 8.0,
        coord(BAR_X0 + length + 6.0),
        y + 15.0,
        r_text(bar.r),
        bar.lag
    );
}

// ---------------------------------------------------------------------------------------------
// Time-series panels.

fn panels(page: &mut String, product: &ProductReport) {
    if product.top.is_empty() {
        return;
    }
    page.push_str("<h3>Over time: output and each top metric</h3>\n");
    for top in &product.top {
        if let Some(row) = product.correlations.get(top.row) {
            panel(page, row, &top.series);
        }
    }
}

/// The smallest and largest finite value of a series; `None` when it has none.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    min: f64,
    max: f64,
}

impl Range {
    fn of(values: impl Iterator<Item = f64>) -> Option<Range> {
        values.filter(|v| v.is_finite()).fold(None, |range, v| {
            Some(match range {
                None => Range { min: v, max: v },
                Some(r) => Range {
                    min: r.min.min(v),
                    max: r.max.max(v),
                },
            })
        })
    }

    /// Where `value` goes between `bottom` (min) and `top` (max); the middle when flat.
    fn place(&self, value: f64, bottom: f64, top: f64) -> f64 {
        let span = self.max - self.min;
        if span > 0.0 && span.is_finite() {
            bottom + (value - self.min) / span * (top - bottom)
        } else {
            (bottom + top) / 2.0
        }
    }

    fn text(range: Option<Range>) -> String {
        match range {
            Some(r) if r.min == r.max => format!("constant {}", fmt_num(r.min)),
            Some(r) => format!("{} to {}", fmt_num(r.min), fmt_num(r.max)),
            None => "no values".to_string(),
        }
    }
}

fn panel(page: &mut String, row: &Correlation, series: &[IntervalPoint]) {
    let metric = escape(&row.metric.to_string());
    let when = match row.lag {
        0 => "in the same interval".to_string(),
        1 => "1 interval earlier".to_string(),
        lag => format!("{lag} intervals earlier"),
    };
    let output = Range::of(series.iter().map(|p| p.output));
    let means = Range::of(series.iter().map(|p| p.metric_mean));
    put!(
        page,
        "<figure class=\"panel\">\n<figcaption><b>Metric {metric}</b> (lag {}): interval output \
         and the metric's mean {when}, each line <em>scaled</em> to its own min–max.{}\
         </figcaption>\n<p class=\"legend\"><span class=\"key\"><span class=\"swatch out-fill\">\
         </span>interval output: {}</span><span class=\"key\"><span class=\"swatch met-fill\">\
         </span>metric {metric} mean: {}</span></p>\n",
        row.lag,
        bucket_note(row.n, series.len()),
        escape(&Range::text(output)),
        escape(&Range::text(means))
    );
    if series.is_empty() {
        page.push_str("<p class=\"empty\">No intervals to show.</p>\n");
    } else {
        series_svg(page, series, output, means);
    }
    page.push_str("</figure>\n");
}

/// Says so when the analysis averaged a long series into fewer points
/// ([`super::model::MAX_SERIES_POINTS`]).
fn bucket_note(pairs: usize, points: usize) -> String {
    if points > 0 && points < pairs {
        format!(
            " Its {} intervals are averaged into {} points.",
            count(pairs as u64),
            count(points as u64)
        )
    } else {
        String::new()
    }
}

/// The plot area of a panel, in SVG units.
const PLOT_LEFT: f64 = 64.0;
const PLOT_RIGHT: f64 = 920.0;
const PLOT_TOP: f64 = 14.0;
const PLOT_BOTTOM: f64 = 194.0;
const PANEL_HEIGHT: f64 = 240.0;
/// Up to this many points a series also gets a dot per point (a single point is a dot only).
const MAX_DOTS: usize = 60;

fn series_svg(
    page: &mut String,
    series: &[IntervalPoint],
    output: Option<Range>,
    means: Option<Range>,
) {
    let time = TimeAxis::new(series);
    put!(
        page,
        "<svg viewBox=\"0 0 960 {PANEL_HEIGHT}\" role=\"img\" aria-label=\"output and metric over time, scaled\">\n"
    );
    scaled_axis(page);
    time.draw(page);
    if let Some(range) = output {
        line(page, series, &time, range, |p| p.output, "out");
    }
    if let Some(range) = means {
        line(page, series, &time, range, |p| p.metric_mean, "met");
    }
    page.push_str("</svg>\n");
}

/// The vertical axis: gridlines at min, middle and max, and the word "scaled".
fn scaled_axis(page: &mut String) {
    let middle = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
    for (y, label) in [(PLOT_TOP, "max"), (middle, "mid"), (PLOT_BOTTOM, "min")] {
        put!(
            page,
            "<line class=\"gridline\" x1=\"{PLOT_LEFT}\" y1=\"{y}\" x2=\"{PLOT_RIGHT}\" y2=\"{y}\"/>\
             <text class=\"small\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>\n",
            PLOT_LEFT - 6.0,
            y + 4.0
        );
    }
    put!(
        page,
        "<line class=\"axis\" x1=\"{PLOT_LEFT}\" y1=\"{PLOT_TOP}\" x2=\"{PLOT_LEFT}\" y2=\"{PLOT_BOTTOM}\"/>\
         <line class=\"axis\" x1=\"{PLOT_LEFT}\" y1=\"{PLOT_BOTTOM}\" x2=\"{PLOT_RIGHT}\" y2=\"{PLOT_BOTTOM}\"/>\
         <text class=\"small\" transform=\"translate(16 {middle}) rotate(-90)\" \
         text-anchor=\"middle\">scaled</text>\n"
    );
}

/// One series as a polyline (and dots when there are few points); non-finite values skipped.
fn line(
    page: &mut String,
    series: &[IntervalPoint],
    time: &TimeAxis,
    range: Range,
    value: fn(&IntervalPoint) -> f64,
    class: &str,
) {
    let points: Vec<(f64, f64)> = series
        .iter()
        .filter(|p| value(p).is_finite())
        .map(|p| {
            (
                time.x(p.start_micros),
                range.place(value(p), PLOT_BOTTOM, PLOT_TOP),
            )
        })
        .collect();
    if points.len() > 1 {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{},{}", coord(*x), coord(*y)))
            .collect();
        put!(
            page,
            "<polyline class=\"line-{class}\" points=\"{}\"/>\n",
            path.join(" ")
        );
    }
    if points.len() <= MAX_DOTS {
        for (x, y) in &points {
            put!(
                page,
                "<circle class=\"dot-{class}\" cx=\"{}\" cy=\"{}\" r=\"2.5\"/>",
                coord(*x),
                coord(*y)
            );
        }
        page.push('\n');
    }
}

/// The time axis of a panel: interval starts (unix microseconds) mapped onto the plot width.
struct TimeAxis {
    min: i64,
    max: i64,
}

/// Tick spacings, seconds: the first giving at most [`MAX_TICKS`] ticks is used.
const TICK_STEPS: [i64; 19] = [
    1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800,
    1_209_600, 2_419_200, 7_862_400,
];
const MAX_TICKS: i128 = 7;
const DAY_MICROS: i128 = 86_400_000_000;

impl TimeAxis {
    fn new(series: &[IntervalPoint]) -> TimeAxis {
        let min = series.iter().map(|p| p.start_micros).min().unwrap_or(0);
        let max = series.iter().map(|p| p.start_micros).max().unwrap_or(0);
        TimeAxis { min, max }
    }

    fn span(&self) -> i128 {
        i128::from(self.max) - i128::from(self.min)
    }

    fn x(&self, micros: i64) -> f64 {
        let span = self.span();
        if span <= 0 {
            return (PLOT_LEFT + PLOT_RIGHT) / 2.0;
        }
        let share = (i128::from(micros) - i128::from(self.min)) as f64 / span as f64;
        PLOT_LEFT + share * (PLOT_RIGHT - PLOT_LEFT)
    }

    /// The tick spacing, microseconds: a round step, or whole days for very long spans.
    fn step(&self) -> i128 {
        let span = self.span();
        TICK_STEPS
            .iter()
            .map(|seconds| i128::from(*seconds) * 1_000_000)
            .find(|step| span / step < MAX_TICKS)
            .unwrap_or_else(|| (span / (MAX_TICKS - 1) / DAY_MICROS + 1) * DAY_MICROS)
    }

    /// Ticks at multiples of the step (aligned to UTC midnight), inside the span.
    fn ticks(&self, step: i128) -> Vec<i64> {
        let (min, max) = (i128::from(self.min), i128::from(self.max));
        let mut ticks = Vec::new();
        let mut tick = min.div_euclid(step) * step;
        if tick < min {
            tick += step;
        }
        while tick <= max && ticks.len() < 2 * MAX_TICKS as usize {
            ticks.extend(i64::try_from(tick).ok());
            tick += step;
        }
        if ticks.is_empty() {
            ticks.push(self.min);
        }
        ticks
    }

    /// Tick marks and labels: the time of day (when steps are shorter than a day) and, under
    /// it, the date on the first tick and wherever the date changes.
    fn draw(&self, page: &mut String) {
        let step = self.step();
        let with_time = step < DAY_MICROS;
        let mut last_date = String::new();
        for tick in self.ticks(step) {
            let x = coord(self.x(tick));
            let date = utc_date(tick);
            put!(
                page,
                "<line class=\"axis\" x1=\"{x}\" y1=\"{PLOT_BOTTOM}\" x2=\"{x}\" y2=\"{}\"/>",
                PLOT_BOTTOM + 5.0
            );
            let mut y = PLOT_BOTTOM + 18.0;
            if with_time {
                let clock = utc_clock(tick, step < 60_000_000);
                put!(
                    page,
                    "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">{clock}</text>"
                );
                y += 15.0;
            }
            if !with_time || date != last_date {
                put!(
                    page,
                    "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">{date}</text>"
                );
            }
            page.push('\n');
            last_date = date;
        }
        put!(
            page,
            "<text class=\"small\" x=\"{PLOT_RIGHT}\" y=\"{}\" text-anchor=\"end\">time (UTC)</text>\n",
            PANEL_HEIGHT - 4.0
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers and times for people; none of them ever prints NaN or inf.

/// An SVG coordinate: one decimal; a non-finite value (which the guards above prevent) is 0.
fn coord(value: f64) -> String {
    if value.is_finite() {
        let text = format!("{value:.1}");
        text.strip_suffix(".0").map_or(text.clone(), str::to_string)
    } else {
        "0".to_string()
    }
}

fn r_text(value: f64) -> String {
    if value.is_finite() {
        text::fmt_r(value)
    } else {
        DASH.to_string()
    }
}

fn p_text(value: f64) -> String {
    if value.is_finite() {
        text::fmt_p(value)
    } else {
        DASH.to_string()
    }
}

/// A value for a legend: about four significant digits, `1.234e9` style when very large or
/// small.
fn fmt_num(value: f64) -> String {
    if !value.is_finite() {
        return DASH.to_string();
    }
    if value == 0.0 {
        return "0".to_string();
    }
    let magnitude = value.abs().log10().floor() as i32;
    if !(-3..7).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let decimals = (3 - magnitude).clamp(0, 6) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// `12,345`.
fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A name cut to `max` characters with "…".
fn shorten(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_string()
    } else {
        let cut: String = name.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn utc(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

/// `2026-01-03` (UTC), or `?` outside chrono's range.
fn utc_date(micros: i64) -> String {
    utc(micros).map_or("?".to_string(), |t| {
        format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day())
    })
}

/// `14:30`, or `14:30:05` with seconds.
fn utc_clock(micros: i64, seconds: bool) -> String {
    utc(micros).map_or("?".to_string(), |t| {
        if seconds {
            format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
        } else {
            format!("{:02}:{:02}", t.hour(), t.minute())
        }
    })
}

/// `2026-01-03 14:30` (UTC).
fn utc_minute(micros: i64) -> String {
    format!("{} {}", utc_date(micros), utc_clock(micros, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{
        Correlation, InputSummary, IntervalCounts, IntervalPoint, Key, ProductReport, Report,
        Stats, TopMetric,
    };
    use statrs::distribution::{ContinuousCDF, StudentsT};

    /// A small deterministic generator (xorshift), so the sample is the same on every run.
    struct Noise(u64);

    impl Noise {
        /// Uniform in [-1, 1).
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    fn empty_report() -> Report {
        Report {
            input: InputSummary::default(),
            max_lag: 3,
            alpha: 0.05,
            metrics: Vec::new(),
            products: Vec::new(),
        }
    }

    fn product(key: Key, correlations: Vec<Correlation>, top: Vec<TopMetric>) -> ProductReport {
        ProductReport {
            product: key,
            counts: IntervalCounts::default(),
            correlations,
            top,
            verdict: "No machine parameter is significantly related to this output.".into(),
        }
    }

    fn defined(metric: Key, lag: usize, r: f64, significant: bool) -> Correlation {
        Correlation {
            metric,
            lag,
            n: 40,
            stats: Some(Stats {
                pearson_r: r,
                spearman_rho: r * 0.9,
                p_value: 0.001,
                p_adjusted: 0.004,
                significant,
            }),
            note: None,
        }
    }

    fn undefined(metric: Key, lag: usize, note: &'static str) -> Correlation {
        Correlation {
            metric,
            lag,
            n: 1,
            stats: None,
            note: Some(note),
        }
    }

    fn point(start_micros: i64, output: f64, metric_mean: f64) -> IntervalPoint {
        IntervalPoint {
            start_micros,
            output,
            metric_mean,
        }
    }

    /// The page has no NaN/inf, no link or source to fetch, and its tags are balanced.
    fn assert_clean(page: &str) {
        for bad in [
            "NaN", "inf", "http://", "https://", "src=", "<script", "url(",
        ] {
            assert!(!page.contains(bad), "page contains {bad:?}");
        }
        for tag in ["svg", "table", "section", "figure", "p", "main"] {
            let open = page.matches(&format!("<{tag}>")).count()
                + page.matches(&format!("<{tag} ")).count();
            let close = page.matches(&format!("</{tag}>")).count();
            assert_eq!(open, close, "<{tag}> opened {open} times, closed {close}");
        }
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<b a="x" c='y'>&amp;</b>"#),
            "&lt;b a=&quot;x&quot; c=&#39;y&#39;&gt;&amp;amp;&lt;/b&gt;"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn keys_and_texts_from_the_data_are_escaped_everywhere() {
        let hostile = "<img src=x onerror='alert(1)'>&\"";
        let metric = Key::Text(hostile.into());
        let mut report = empty_report();
        report.input.sources = vec![format!("workorder: {hostile}")];
        report.metrics = vec![metric.clone()];
        let series = vec![point(0, 1.0, 2.0), point(3_600_000_000, 3.0, 1.0)];
        let mut only = product(
            Key::Text(hostile.into()),
            vec![defined(metric, 0, -0.7, true)],
            vec![TopMetric { row: 0, series }],
        );
        only.verdict = format!("Product {hostile} rises with {hostile}.");
        report.products.push(only);
        let page = render(&report);
        assert!(
            !page.contains("<img"),
            "a raw tag from the data reached the page"
        );
        assert!(
            !page.contains("'alert"),
            "a raw quote from the data reached the page"
        );
        assert!(page.contains("&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;&quot;"));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn a_report_without_products_renders() {
        let page = render(&empty_report());
        assert_clean(&page);
        assert!(page.contains("No product has work orders"));
        assert!(page.contains("no work orders in the data"));
    }

    #[test]
    fn empty_and_single_point_series_render_without_nan() {
        let mut report = empty_report();
        let (a, b) = (Key::Int(1), Key::Int(2));
        report.metrics = vec![a.clone(), b.clone()];
        let correlations = vec![defined(a, 0, 0.5, false), defined(b, 1, 0.4, false)];
        let top = vec![
            TopMetric {
                row: 0,
                series: Vec::new(),
            },
            TopMetric {
                row: 1,
                series: vec![point(1_767_225_600_000_000, 5.0, 7.0)],
            },
        ];
        report
            .products
            .push(product(Key::Int(7), correlations, top));
        let page = render(&report);
        assert_clean(&page);
        assert!(page.contains("No intervals to show."));
        assert!(
            page.contains("constant 5"),
            "a single point's range is one value"
        );
        // The single point is drawn as a dot in the middle, with a dated tick.
        assert!(page.contains("<circle class=\"dot-out\" cx=\"492\""));
        assert!(page.contains(">2026-01-01</text>"));
    }

    #[test]
    fn all_rows_undefined_are_listed_not_charted() {
        let mut report = empty_report();
        let (a, b) = (Key::Int(3), Key::Int(4));
        report.metrics = vec![a.clone(), b.clone()];
        let mut rows = Vec::new();
        for lag in 0..=3 {
            rows.push(undefined(a.clone(), lag, "insufficient data: n < 3"));
            rows.push(undefined(b.clone(), lag, "constant metric"));
        }
        report.products.push(product(Key::Int(1), rows, Vec::new()));
        let page = render(&report);
        assert_clean(&page);
        assert!(!page.contains("<svg"), "nothing to chart");
        assert!(page.contains("4 (constant metric); 3 (insufficient data: n &lt; 3)"));
    }

    #[test]
    fn non_finite_numbers_never_reach_the_page() {
        let mut report = empty_report();
        let a = Key::Int(1);
        report.metrics = vec![a.clone()];
        let mut row = defined(a, 0, f64::NAN, true);
        row.stats = row.stats.map(|s| Stats {
            p_value: f64::INFINITY,
            spearman_rho: f64::NEG_INFINITY,
            ..s
        });
        let series = vec![
            point(0, f64::NAN, 1.0),
            point(60_000_000, 2.0, f64::INFINITY),
            point(120_000_000, 3.0, 4.0),
            point(i64::MAX, 1.0, 1.0),
        ];
        report.products.push(product(
            Key::Int(1),
            vec![row],
            vec![TopMetric { row: 0, series }],
        ));
        report.input.first_micros = Some(i64::MIN);
        report.input.last_micros = Some(i64::MAX);
        let page = render(&report);
        assert_clean(&page);
        // Drawn nonetheless: the finite points as a line, the undefined numbers as dashes.
        assert!(page.contains("<polyline class=\"line-out\""));
        assert!(
            page.contains("<td>—</td><td>—</td>"),
            "r and rho are dashes"
        );
        assert!(
            page.contains("? ? to ? ?"),
            "times out of chrono's range are question marks"
        );
    }

    #[test]
    fn each_metric_is_charted_at_its_best_lag_sorted_by_strength() {
        let mut report = empty_report();
        let (a, b, c) = (Key::Int(1), Key::Int(2), Key::Int(10));
        report.metrics = vec![a.clone(), b.clone(), c.clone()];
        let rows = vec![
            defined(a.clone(), 0, 0.2, false),
            defined(a.clone(), 1, -0.6, true),
            defined(a, 2, 0.6, false),
            defined(b.clone(), 0, 0.3, false),
            undefined(b, 1, "insufficient data: n < 3"),
            defined(c, 0, 0.6, false),
        ];
        report.products.push(product(Key::Int(1), rows, Vec::new()));
        let data = bar_data(&report, &report.products[0]);
        let shown: Vec<String> = data
            .bars
            .iter()
            .map(|bar| format!("{}@{}:{}", bar.metric, bar.lag, bar.r))
            .collect();
        assert_eq!(shown, ["1@1:-0.6", "10@0:0.6", "2@0:0.3"]);
        assert!(data.undefined.is_empty());
        let page = render(&report);
        assert!(page.contains(">-0.600 · lag 1 ★</text>"));
    }

    #[test]
    fn a_series_averaged_into_buckets_says_so() {
        let mut report = empty_report();
        let a = Key::Int(1);
        report.metrics = vec![a.clone()];
        let mut row = defined(a, 0, 0.5, false);
        row.n = 1_000;
        let series = vec![point(0, 1.0, 2.0), point(3_600_000_000, 3.0, 1.0)];
        report.products.push(product(
            Key::Int(1),
            vec![row],
            vec![TopMetric { row: 0, series }],
        ));
        assert!(render(&report).contains("Its 1,000 intervals are averaged into 2 points."));
        report.products[0].correlations[0].n = 2;
        assert!(!render(&report).contains("averaged into"));
    }

    #[test]
    fn rendering_is_deterministic() {
        let report = sample_report();
        let page = render(&report);
        assert_eq!(page, render(&report.clone()));
        assert_clean(&page);
        assert_eq!(page.matches("<section class=\"product\"").count(), 4);
        assert_eq!(page.matches("<figure class=\"panel\">").count(), 9);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(480.0), "480");
        assert_eq!(fmt_num(5.43216), "5.432");
        assert_eq!(fmt_num(-0.0123456), "-0.01235");
        assert_eq!(fmt_num(12_345_678.0), "1.235e7");
        assert_eq!(fmt_num(f64::NAN), DASH);
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(coord(12.04), "12");
        assert_eq!(coord(f64::NAN), "0");
    }

    /// Writes the sample page to `target/report-sample.html` to look at (e.g. screenshot it
    /// with headless chromium): `cargo test --lib report::html -- --ignored`.
    #[test]
    #[ignore = "writes a file for a person to look at"]
    fn write_sample_page() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-sample.html");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, render(&sample_report())).unwrap();
        println!("wrote {}", path.display());
    }

    // -----------------------------------------------------------------------------------------
    // A realistic report: three products, a dozen metrics, a week of intervals.

    const START: i64 = 1_767_420_000_000_000; // 2026-01-03 06:00 UTC

    /// Metric ids and how strongly each follows product 1's output (by lag).
    const COUPLING: [(i64, f64, usize); 10] = [
        (101, 0.85, 1),
        (102, -0.62, 0),
        (103, 0.35, 2),
        (104, 0.18, 0),
        (105, -0.12, 3),
        (106, 0.08, 0),
        (107, 0.05, 1),
        (108, -0.04, 0),
        (109, 0.02, 2),
        (110, 0.0, 0),
    ];

    fn p_of(r: f64, n: usize) -> f64 {
        let df = n as f64 - 2.0;
        let t = r * (df / (1.0 - r * r)).sqrt();
        let dist = StudentsT::new(0.0, 1.0, df).unwrap();
        2.0 * dist.sf(t.abs())
    }

    /// Benjamini–Hochberg over the defined rows, then `significant`.
    fn adjust(rows: &mut [Correlation], alpha: f64) {
        let mut order: Vec<usize> = (0..rows.len())
            .filter(|i| rows[*i].stats.is_some())
            .collect();
        order.sort_by(|a, b| {
            let p = |i: usize| rows[i].stats.unwrap().p_value;
            p(*a).total_cmp(&p(*b))
        });
        let m = order.len() as f64;
        let mut running = 1.0f64;
        for (rank, index) in order.iter().enumerate().rev() {
            let stats = rows[*index].stats.as_mut().unwrap();
            running = running
                .min(stats.p_value * m / (rank as f64 + 1.0))
                .min(1.0);
            stats.p_adjusted = running;
            stats.significant = running <= alpha;
        }
    }

    fn product_rows(noise: &mut Noise, strength: f64, n: usize) -> Vec<Correlation> {
        let mut rows = Vec::new();
        for (metric, coupling, best_lag) in COUPLING {
            for lag in 0..=3usize {
                let fade = 1.0 / (1.0 + (lag as f64 - best_lag as f64).abs() * 1.5);
                let r = (coupling * strength * fade + 0.06 * noise.next()).clamp(-0.99, 0.99);
                rows.push(Correlation {
                    metric: Key::Int(metric),
                    lag,
                    n: n - lag,
                    stats: Some(Stats {
                        pearson_r: r,
                        spearman_rho: (r * 0.93 + 0.02 * noise.next()).clamp(-1.0, 1.0),
                        p_value: p_of(r, n - lag),
                        p_adjusted: 1.0,
                        significant: false,
                    }),
                    note: None,
                });
            }
        }
        for lag in 0..=3 {
            rows.push(undefined(Key::Int(111), lag, "constant metric"));
            rows.push(undefined(Key::Int(112), lag, "insufficient data: n < 3"));
        }
        rows
    }

    /// How a sample product's data looks.
    struct Shape {
        key: i64,
        /// How strongly the metrics follow output (scales [`COUPLING`]).
        strength: f64,
        seed: u64,
        intervals: usize,
        minutes: i64,
        verdict: &'static str,
    }

    /// The interval output (a daily cycle plus noise) and a metric following it (`coupling`,
    /// `lag` intervals earlier).
    fn series(noise: &mut Noise, shape: &Shape, coupling: f64, lag: usize) -> Vec<IntervalPoint> {
        let points = shape.intervals - 4 - lag;
        let output: Vec<f64> = (0..points + lag)
            .map(|j| {
                let day = (j as i64 * shape.minutes) as f64 / 1440.0;
                420.0 + 90.0 * (day * std::f64::consts::TAU).sin() + 35.0 * noise.next()
            })
            .collect();
        (lag..points + lag)
            .map(|j| {
                let signal = (output[j - lag] - 420.0) / 90.0;
                let mean = 72.5 + 4.0 * (coupling * signal + (1.0 - coupling.abs()) * noise.next());
                let start = START + j as i64 * shape.minutes * 60_000_000;
                point(start, output[j], mean)
            })
            .collect()
    }

    /// The top three rows by |r| (ties: the smaller lag, then the metric).
    fn top_rows(rows: &[Correlation]) -> Vec<usize> {
        let mut best: BTreeMap<&Key, usize> = BTreeMap::new();
        for (index, row) in rows.iter().enumerate() {
            let Some(stats) = row.stats else { continue };
            let entry = best.entry(&row.metric).or_insert(index);
            if stats.pearson_r.abs() > rows[*entry].stats.unwrap().pearson_r.abs() {
                *entry = index;
            }
        }
        let mut ranked: Vec<usize> = best.into_values().collect();
        ranked.sort_by(|a, b| {
            let r = |i: usize| rows[i].stats.unwrap().pearson_r.abs();
            r(*b).total_cmp(&r(*a))
        });
        ranked.truncate(3);
        ranked
    }

    fn sample_product(shape: &Shape) -> ProductReport {
        let mut noise = Noise(shape.seed);
        let mut rows = product_rows(&mut noise, shape.strength, shape.intervals - 4);
        adjust(&mut rows, 0.05);
        let top = top_rows(&rows)
            .into_iter()
            .map(|row| {
                let coupling = COUPLING
                    .iter()
                    .find(|c| Key::Int(c.0) == rows[row].metric)
                    .unwrap();
                let lag = rows[row].lag;
                let series = series(&mut noise, shape, coupling.1 * shape.strength, lag);
                TopMetric { row, series }
            })
            .collect();
        ProductReport {
            product: Key::Int(shape.key),
            counts: IntervalCounts {
                records: shape.intervals + 5,
                intervals: shape.intervals,
                negative_steps: 4,
                zero_length: 4,
            },
            correlations: rows,
            top,
            verdict: shape.verdict.to_string(),
        }
    }

    fn few_records_product() -> ProductReport {
        let mut rows = Vec::new();
        for (metric, _, _) in COUPLING {
            for lag in 0..=3 {
                rows.push(undefined(Key::Int(metric), lag, "insufficient data: n < 3"));
            }
        }
        ProductReport {
            product: Key::Int(3),
            counts: IntervalCounts {
                records: 3,
                intervals: 2,
                negative_steps: 0,
                zero_length: 0,
            },
            correlations: rows,
            top: Vec::new(),
            verdict: "No machine parameter is significantly related to product 3's output: it \
                      has only 2 intervals, too few to test (at least 3 are needed)."
                .to_string(),
        }
    }

    fn sample_report() -> Report {
        let shapes = [
            Shape {
                key: 1,
                strength: 1.0,
                seed: 0x9E37_79B9_7F4A_7C15,
                intervals: 198,
                minutes: 50,
                verdict: "Product 1's output rises with metric 101 one interval earlier \
                          (r = +0.85) and falls as metric 102 rises (r = −0.62).",
            },
            Shape {
                key: 2,
                strength: 0.12,
                seed: 0xD1B5_4A32_D192_ED03,
                intervals: 198,
                minutes: 12,
                verdict: "No machine parameter is significantly related to product 2's output \
                          (the strongest, metric 101, has r = +0.16, adjusted p = 0.95).",
            },
            Shape {
                key: 4,
                strength: 1.0,
                seed: 0x2545_F491_4F6C_DD1D,
                intervals: 16,
                minutes: 30,
                verdict: "No machine parameter is significantly related to product 4's output \
                          (the strongest, metric 101 one interval earlier, has r = +0.82 but \
                          adjusted p = 0.09 over only 11 intervals).",
            },
        ];
        let mut products: Vec<ProductReport> = shapes.iter().map(sample_product).collect();
        products.insert(2, few_records_product());
        Report {
            input: InputSummary {
                sources: vec![
                    "workorder: database/workorder (Parquet, 12 committed files)".into(),
                    "metrics: database/metrics (Delta table, version 41)".into(),
                ],
                workorder_records: 409,
                metric_samples: 1_184_220,
                workorder_dropped: 2,
                metric_dropped: 37,
                metric_outside_intervals: 5_310,
                from_micros: None,
                to_micros: Some(START + 7 * 86_400_000_000),
                first_micros: Some(START),
                last_micros: Some(START + 197 * 50 * 60_000_000),
            },
            max_lag: 3,
            alpha: 0.05,
            metrics: (101..=112).map(Key::Int).collect(),
            products,
        }
    }
}
