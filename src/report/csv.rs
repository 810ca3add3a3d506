//! `correlations.csv`: every product × metric × lag, with full-precision numbers.

use std::fmt::Write as _;

use super::model::{Key, Report};

/// The header; the first eight columns are the contract.
pub const HEADER: &str =
    "product,metric,lag,n,pearson_r,spearman_rho,p_value,p_adjusted,significant,note";

/// Renders the CSV. Floats are written in Rust's shortest round-trip form (`{:?}`: exponent
/// notation for the very small, `1e-150` rather than 150 zeros), so a reader parsing them gets
/// the exact `f64` back; undefined values are empty.
pub fn render(report: &Report) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for product in &report.products {
        for row in &product.correlations {
            let numbers = match row.stats {
                Some(s) => format!(
                    "{:?},{:?},{:?},{:?},{}",
                    s.pearson_r, s.spearman_rho, s.p_value, s.p_adjusted, s.significant
                ),
                None => ",,,,".to_string(),
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{}",
                field(&product.product),
                field(&row.metric),
                row.lag,
                row.n,
                numbers,
                quote(row.note.unwrap_or(""))
            );
        }
    }
    out
}

fn field(key: &Key) -> String {
    quote(&key.to_string())
}

/// RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled.
fn quote(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_when_needed() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
