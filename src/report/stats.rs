//! The statistics of one correlation: Pearson's r, Spearman's rho, the two-sided p of r, and
//! the Benjamini–Hochberg adjustment. Plain `f64` arithmetic in the textbook two-pass form
//! (means first, then sums of deviations), so the results agree with numpy/scipy to the last
//! few ulps; the Student's t tail comes from `statrs`.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Why a correlation has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undefined {
    /// Fewer than three pairs: no degrees of freedom left for a p-value.
    TooFew,
    /// The output does not vary over the pairs.
    ConstantOutput,
    /// The metric mean does not vary over the pairs.
    ConstantMetric,
    /// A value is beyond what `f64` holds (an interval mean of values near ±1.8e308).
    NonFinite,
}

impl Undefined {
    pub fn note(self) -> &'static str {
        match self {
            Undefined::TooFew => "insufficient data: n < 3",
            Undefined::ConstantOutput => "insufficient data: constant output",
            Undefined::ConstantMetric => "insufficient data: constant metric",
            Undefined::NonFinite => "insufficient data: values too large to average",
        }
    }
}

/// r, rho and the p of r for one set of pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correlated {
    pub pearson_r: f64,
    pub spearman_rho: f64,
    pub p_value: f64,
}

/// Correlates `x` with `y` (same length).
pub fn correlate(x: &[f64], y: &[f64]) -> Result<Correlated, Undefined> {
    debug_assert_eq!(x.len(), y.len());
    if x.len() < 3 {
        return Err(Undefined::TooFew);
    }
    if !x.iter().chain(y).all(|v| v.is_finite()) {
        return Err(Undefined::NonFinite);
    }
    let pearson_r = pearson(x, y)?;
    if !pearson_r.is_finite() {
        return Err(Undefined::NonFinite);
    }
    let spearman_rho = pearson(&ranks(x), &ranks(y))?;
    Ok(Correlated {
        pearson_r,
        spearman_rho,
        p_value: p_value(pearson_r, x.len()),
    })
}

/// Pearson's r, clamped to [−1, 1] (rounding can step past it by an ulp).
///
/// Each side is first divided by a power of two near its largest magnitude: exact, so the
/// rounding is that of the plain formula, but sums of squares of values near `f64::MAX`
/// cannot overflow.
fn pearson(x: &[f64], y: &[f64]) -> Result<f64, Undefined> {
    let n = x.len() as f64;
    let (scale_x, scale_y) = (power_of_two_scale(x), power_of_two_scale(y));
    let mean_x = refined_mean(x, scale_x, n);
    let mean_y = refined_mean(y, scale_y, n);
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a / scale_x - mean_x, b / scale_y - mean_y);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    if sxx == 0.0 {
        return Err(Undefined::ConstantOutput);
    }
    if syy == 0.0 {
        return Err(Undefined::ConstantMetric);
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// The mean of `values / scale`, corrected once by the mean of the residuals: on values that
/// sit on a large offset (a counter at 1e12) a plain sum's rounding would otherwise leak into
/// every deviation and cost r digits.
fn refined_mean(values: &[f64], scale: f64, n: f64) -> f64 {
    let mean = values.iter().map(|v| v / scale).sum::<f64>() / n;
    mean + values.iter().map(|v| v / scale - mean).sum::<f64>() / n
}

/// The power of two at or below the largest |value| (1 for all zeros).
fn power_of_two_scale(values: &[f64]) -> f64 {
    let largest = values.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    if largest == 0.0 || !largest.is_finite() {
        return 1.0;
    }
    2.0_f64.powi(largest.log2().floor() as i32)
}

/// Ranks from 1, ties given the mean of the ranks they span (scipy's `rankdata` "average").
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Ranks start+1 ..= end share their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Two-sided p of r over `n` pairs: `t = r·√((n−2)/(1−r²))` against Student's t with n − 2
/// degrees of freedom. |r| = 1 gives 0.
pub fn p_value(r: f64, n: usize) -> f64 {
    let df = (n - 2) as f64;
    let rest = (1.0 - r) * (1.0 + r);
    if rest <= 0.0 {
        return 0.0;
    }
    let t = r.abs() * (df / rest).sqrt();
    let dist = StudentsT::new(0.0, 1.0, df).expect("n >= 3 gives a positive df");
    (2.0 * dist.sf(t)).min(1.0)
}

/// Benjamini–Hochberg adjusted p-values, in the order given: the step-up
/// `min over j ≥ i of (m / j) · p(j)` over the ascending p(j), capped at 1.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        // p · (m / rank), in scipy's order of rounding.
        running = running.min(p[i] * (m as f64 / (rank + 1) as f64));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
    }

    #[test]
    fn too_few_and_constant_are_undefined() {
        assert_eq!(correlate(&[1.0, 2.0], &[3.0, 4.0]), Err(Undefined::TooFew));
        assert_eq!(
            correlate(&[1.0, 1.0, 1.0], &[3.0, 4.0, 5.0]),
            Err(Undefined::ConstantOutput)
        );
        assert_eq!(
            correlate(&[1.0, 2.0, 3.0], &[3.0, 3.0, 3.0]),
            Err(Undefined::ConstantMetric)
        );
    }

    #[test]
    fn perfect_correlation_has_p_near_zero() {
        let c = correlate(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.0]).unwrap();
        assert!((c.pearson_r - 1.0).abs() < 1e-15, "{c:?}");
        assert!((c.spearman_rho - 1.0).abs() < 1e-15, "{c:?}");
        assert!(c.p_value < 1e-12, "{c:?}");
        assert_eq!(p_value(1.0, 4), 0.0);
        assert_eq!(p_value(-1.0, 4), 0.0);
    }

    #[test]
    fn non_finite_inputs_are_undefined_not_a_panic() {
        let inf = f64::INFINITY;
        assert_eq!(
            correlate(&[1.0, 2.0, 3.0], &[1.0, inf, 2.0]),
            Err(Undefined::NonFinite)
        );
        assert_eq!(
            correlate(&[f64::NAN, 2.0, 3.0], &[1.0, 3.0, 2.0]),
            Err(Undefined::NonFinite)
        );
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let c = correlate(&[1e307, 1.5e308, -1e308], &[1.0, 2.0, -3.0]).unwrap();
        assert!(c.pearson_r.is_finite() && c.pearson_r > 0.9, "{c:?}");
    }

    #[test]
    fn bh_is_monotone_and_capped() {
        let adjusted = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.9]);
        // m = 4: sorted 0.01, 0.03, 0.04, 0.9 → 0.04, 0.0533…, 0.0533…, 0.9.
        assert_eq!(adjusted[0], 0.04);
        assert!((adjusted[1] - 0.04 * 4.0 / 3.0).abs() < 1e-15);
        assert_eq!(adjusted[1], adjusted[2]);
        assert_eq!(adjusted[3], 0.9);
    }
}
