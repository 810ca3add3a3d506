//! The self-contained HTML report (inline SVG, no external assets).

use super::model::Report;

/// Renders the whole page.
pub fn render(report: &Report) -> String {
    let _ = report;
    String::from("<!doctype html><title>factorypal report</title>")
}
