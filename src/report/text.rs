//! The words and number formats the Markdown and HTML reports share, so both say the same.

use super::model::Report;

/// The method, in a paragraph a plant manager can follow.
pub fn method(report: &Report) -> String {
    let lags = if report.max_lag == 0 {
        "Only same-interval relations are tested (lag 0).".to_string()
    } else {
        format!(
            "Each parameter is also tested 1 to {} intervals earlier than the output (lag 1–{}), \
             since a setting may act later; it is shown at the lag where its relation is \
             strongest, and the adjustment counts every lag tested.",
            report.max_lag, report.max_lag
        )
    };
    format!(
        "For each product, the work orders are put in time order and the output of each interval \
         between two consecutive work orders is the increase of the production counter (an \
         interval where the counter went down, a reset or a correction, is left out). For each \
         machine parameter (metric id), its samples inside the interval are averaged. Pearson's r \
         measures how closely the interval output and the parameter's interval average move \
         together (−1 to 1), Spearman's rho the same on ranks (robust to outliers), and p is the \
         chance of an r this far from 0 if the two were unrelated (Student's t). Because many \
         parameters are tested at once, p is adjusted (Benjamini–Hochberg) and a parameter counts \
         as significant only when its adjusted p is at most {}. {} The p-values treat intervals \
         as independent: when output and a parameter both drift slowly, p can look smaller than \
         it is. Correlation is not causation: a parameter can move with output because both \
         follow a third cause.",
        fmt_p(report.alpha),
        lags
    )
}

/// r or rho for people: three decimals, with the sign.
pub fn fmt_r(value: f64) -> String {
    format!("{value:+.3}")
}

/// A p-value for people: `0.034`, `< 1e-300`, `4.1e-12`.
pub fn fmt_p(value: f64) -> String {
    if value == 0.0 {
        "< 1e-300".to_string()
    } else if value >= 0.001 {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{value:.1e}")
    }
}

/// Unix microseconds as a UTC date and time, `2026-01-03 14:05`.
pub fn fmt_time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map_or_else(
        || micros.to_string(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_read_well() {
        assert_eq!(fmt_p(0.05), "0.05");
        assert_eq!(fmt_p(0.0344), "0.034");
        assert_eq!(fmt_p(1.0), "1");
        assert_eq!(fmt_p(4.12e-12), "4.1e-12");
        assert_eq!(fmt_p(0.0), "< 1e-300");
        assert_eq!(fmt_r(-0.98765), "-0.988");
    }
}
