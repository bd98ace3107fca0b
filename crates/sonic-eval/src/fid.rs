//! The Frechet Inception Distance as pytorch-fid computes it (`pytorch_fid.fid_score`).
//!
//! The features (pool3 of [`crate::inception::FidInceptionV3`], `[N, 2048]`) of each image set
//! are summarised by their mean and covariance in float64 ([`FeatureStats`]: `np.mean(axis=0)`
//! and `np.cov(rowvar=False)`, i.e. normalised by `N - 1`), and two summaries are compared by
//!
//! ```text
//! FID = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2))
//! ```
//!
//! ([`frechet_distance`]). pytorch-fid takes `Tr(sqrtm(S1 S2))` from scipy's general matrix
//! square root of the (non-symmetric) product; here it is computed from symmetric
//! eigendecompositions instead, which is the same number in exact arithmetic and never
//! fails: with `S1 = U diag(l) U^T`, `B = U diag(sqrt(l))`, the eigenvalues of `S1 S2` are
//! those of the symmetric positive semi-definite `B^T S2 B`, and the trace is the sum of their
//! square roots ([`trace_sqrt_product`]). Eigenvalues that are rounding noise (at most
//! `n * f64::EPSILON` times the largest, as numpy's `matrix_rank` decides) count as zero.
//!
//! With fewer images than feature dimensions the covariances are singular. scipy's `sqrtm`
//! then turns the rounding noise of the product's zero eigenvalues `e` into terms `sqrt(e)`
//! (pytorch-fid's FID of a 5-image set with itself is about -1e-5 instead of 0), and when
//! its result is not finite pytorch-fid retries with `1e-6` added to both diagonals. The
//! computation here gives a finite value for any finite statistics, so that retry has no
//! counterpart; where pytorch-fid's result is finite both agree to its noise (the fixture
//! `tests-data/eval-metrics/fid` checks 1e-3 relative, measured 1e-7).
//!
//! ```
//! use sonic_eval::fid::{FeatureStats, frechet_distance};
//! # fn main() -> Result<(), sonic_eval::EvalError> {
//! let a = FeatureStats::from_features(&[0.0, 1.0, 2.0, 0.0, 1.0, 1.0], 3, 2)?;
//! let b = FeatureStats::from_features(&[1.0, 1.0, 3.0, 0.0, 2.0, 2.0], 3, 2)?;
//! assert!(frechet_distance(&a, &a)?.abs() < 1e-12);
//! assert!(frechet_distance(&a, &b)? > 0.0);
//! # Ok(()) }
//! ```

use crate::error::EvalError;
use burn::tensor::Tensor;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};

type Result<T> = std::result::Result<T, EvalError>;

/// The most feature dimensions accepted: a `d x d` float64 covariance of 8192 dimensions
/// takes 512 MiB, and FID's features have 2048.
pub const MAX_DIMS: usize = 8192;

/// The mean and covariance of a set of feature vectors (float64), as pytorch-fid's
/// `calculate_activation_statistics` makes them.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// The mean of each dimension, `[d]`.
    pub mean: Vec<f64>,
    /// The covariance, `[d, d]` row-major, normalised by `n - 1`.
    pub cov: Vec<f64>,
    /// How many samples the statistics summarise.
    pub n: usize,
}

fn check_dims(what: &str, d: usize) -> Result<()> {
    if d == 0 || d > MAX_DIMS {
        return Err(EvalError::input(
            what,
            format!("{d} feature dimensions (1 to {MAX_DIMS} supported)"),
        ));
    }
    Ok(())
}

fn check_finite(what: &str, values: &[f64], name: &str) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(EvalError::input(
            what,
            format!(
                "{name} holds a non-finite value ({} at index {i})",
                values[i]
            ),
        )),
        None => Ok(()),
    }
}

/// `Yᵀ Y` of `y` `[rows, d]` (row-major) added to `gram` (`d x d`).
fn add_gram(gram: &mut Mat<f64>, y: &[f64], rows: usize, d: usize) {
    let y = MatRef::from_row_major_slice(y, rows, d);
    matmul(
        gram.as_mut(),
        Accum::Add,
        y.transpose(),
        y,
        1.0,
        Par::rayon(0),
    );
}

impl FeatureStats {
    /// The feature dimension `d`.
    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// The statistics of `n` feature vectors of `d` dimensions (`features`: `[n, d]`
    /// row-major): `np.mean(axis=0)` and `np.cov(rowvar=False)` in float64. Fewer than two
    /// samples, a length that is not `n * d`, more than [`MAX_DIMS`] dimensions or a
    /// non-finite value are an [`EvalError::Input`].
    pub fn from_features(features: &[f32], n: usize, d: usize) -> Result<Self> {
        let wide: Vec<f64> = features.iter().map(|&v| f64::from(v)).collect();
        Self::from_features_f64(&wide, n, d)
    }

    /// [`Self::from_features`] for float64 features.
    pub fn from_features_f64(features: &[f64], n: usize, d: usize) -> Result<Self> {
        const WHAT: &str = "FID feature statistics";
        check_dims(WHAT, d)?;
        if n < 2 {
            return Err(EvalError::input(
                WHAT,
                format!("{n} samples (a covariance needs at least 2)"),
            ));
        }
        if n.checked_mul(d) != Some(features.len()) {
            return Err(EvalError::input(
                WHAT,
                format!("{} values are not {n} x {d}", features.len()),
            ));
        }
        check_finite(WHAT, features, "the features")?;
        let mut mean = vec![0f64; d];
        for row in features.chunks_exact(d) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        let centred: Vec<f64> = features
            .chunks_exact(d)
            .flat_map(|row| row.iter().zip(&mean).map(|(v, m)| v - m))
            .collect();
        let mut gram = Mat::<f64>::zeros(d, d);
        add_gram(&mut gram, &centred, n, d);
        let scale = 1.0 / (n - 1) as f64;
        let cov = (0..d * d).map(|k| gram[(k / d, k % d)] * scale).collect();
        Ok(Self { mean, cov, n })
    }

    /// The statistics of a feature tensor `[N, d]` (read back to the host).
    pub fn from_tensor(features: &Tensor<2>) -> Result<Self> {
        let [n, d] = features.dims();
        let values = sonic_core::fixtures::to_host(features)?;
        Self::from_features(&values, n, d)
    }

    /// Checks that the lengths fit `d` and that every value is finite.
    pub fn validate(&self, what: &str) -> Result<()> {
        let d = self.dims();
        check_dims(what, d)?;
        if self.cov.len() != d * d {
            return Err(EvalError::input(
                what,
                format!(
                    "a covariance of {} values for {d} dimensions",
                    self.cov.len()
                ),
            ));
        }
        check_finite(what, &self.mean, "the mean")?;
        check_finite(what, &self.cov, "the covariance")
    }
}

/// Feature statistics gathered batch by batch, without keeping the features: sums of the
/// samples and of their outer products, both taken relative to the first sample (so that
/// features far from zero lose no precision). [`Self::finish`] agrees with
/// [`FeatureStats::from_features`] on the same samples up to float64 rounding.
#[derive(Debug, Clone)]
pub struct StatsAccumulator {
    d: usize,
    n: usize,
    shift: Vec<f64>,
    sum: Vec<f64>,
    gram: Mat<f64>,
}

impl StatsAccumulator {
    /// An empty accumulator for `d` dimensions (at most [`MAX_DIMS`]).
    pub fn new(d: usize) -> Result<Self> {
        check_dims("FID feature statistics", d)?;
        Ok(Self {
            d,
            n: 0,
            shift: Vec::new(),
            sum: vec![0.0; d],
            gram: Mat::zeros(d, d),
        })
    }

    /// How many samples were added.
    pub fn count(&self) -> usize {
        self.n
    }

    /// Adds `rows` feature vectors (`features`: `[rows, d]` row-major).
    pub fn push(&mut self, features: &[f32], rows: usize) -> Result<()> {
        const WHAT: &str = "FID feature statistics";
        let d = self.d;
        if rows.checked_mul(d) != Some(features.len()) {
            return Err(EvalError::input(
                WHAT,
                format!("{} values are not {rows} x {d}", features.len()),
            ));
        }
        let wide: Vec<f64> = features.iter().map(|&v| f64::from(v)).collect();
        check_finite(WHAT, &wide, "the features")?;
        if rows == 0 {
            return Ok(());
        }
        if self.shift.is_empty() {
            self.shift = wide[..d].to_vec();
        }
        let shifted: Vec<f64> = wide
            .chunks_exact(d)
            .flat_map(|row| row.iter().zip(&self.shift).map(|(v, s)| v - s))
            .collect();
        for row in shifted.chunks_exact(d) {
            for (s, &v) in self.sum.iter_mut().zip(row) {
                *s += v;
            }
        }
        add_gram(&mut self.gram, &shifted, rows, d);
        self.n += rows;
        Ok(())
    }

    /// Adds the rows of a feature tensor `[rows, d]` (read back to the host).
    pub fn push_tensor(&mut self, features: &Tensor<2>) -> Result<()> {
        let [rows, _] = features.dims();
        self.push(&sonic_core::fixtures::to_host(features)?, rows)
    }

    /// The statistics of every sample added (at least two).
    pub fn finish(&self) -> Result<FeatureStats> {
        let (n, d) = (self.n, self.d);
        if n < 2 {
            return Err(EvalError::input(
                "FID feature statistics",
                format!("{n} samples (a covariance needs at least 2)"),
            ));
        }
        let m: Vec<f64> = self.sum.iter().map(|s| s / n as f64).collect();
        let mean = self.shift.iter().zip(&m).map(|(s, m)| s + m).collect();
        let scale = 1.0 / (n - 1) as f64;
        let cov = (0..d * d)
            .map(|k| {
                let (i, j) = (k / d, k % d);
                (self.gram[(i, j)] - n as f64 * m[i] * m[j]) * scale
            })
            .collect();
        Ok(FeatureStats { mean, cov, n })
    }
}

/// `(S + Sᵀ) / 2` of a row-major `d x d` matrix, as a faer matrix.
fn symmetric(s: &[f64], d: usize) -> Mat<f64> {
    Mat::from_fn(d, d, |i, j| 0.5 * (s[i * d + j] + s[j * d + i]))
}

/// The threshold below which eigenvalues of a matrix of order `n` whose largest
/// eigenvalue magnitude is `max` are rounding noise (numpy's `matrix_rank` rule).
fn noise_floor(n: usize, max: f64) -> f64 {
    n as f64 * f64::EPSILON * max
}

/// `Tr(sqrtm(S1 S2))` of two covariances (`d x d`, row-major, symmetric positive
/// semi-definite up to rounding): the sum of the square roots of the eigenvalues of
/// `B^T S2 B`, `B = U diag(sqrt(l))` over the eigenpairs `(l, U)` of `S1` above the noise
/// floor; eigenvalues of `B^T S2 B` at or below its noise floor count as zero.
pub fn trace_sqrt_product(s1: &[f64], s2: &[f64], d: usize) -> Result<f64> {
    const WHAT: &str = "Frechet distance";
    check_dims(WHAT, d)?;
    if s1.len() != d * d || s2.len() != d * d {
        return Err(EvalError::input(
            WHAT,
            format!(
                "covariances of {} and {} values for {d} dimensions",
                s1.len(),
                s2.len()
            ),
        ));
    }
    let no_convergence = |_| EvalError::input(WHAT, "the eigendecomposition did not converge");
    let evd = symmetric(s1, d)
        .self_adjoint_eigen(Side::Lower)
        .map_err(no_convergence)?;
    let l = evd.S().column_vector();
    let l_max = (0..d).map(|i| l[i].abs()).fold(0.0, f64::max);
    let floor = noise_floor(d, l_max);
    let kept: Vec<usize> = (0..d).filter(|&i| l[i] > floor).collect();
    let k = kept.len();
    if k == 0 {
        return Ok(0.0);
    }
    let u = evd.U();
    let b = Mat::from_fn(d, k, |i, j| u[(i, kept[j])] * l[kept[j]].sqrt());
    let s2 = symmetric(s2, d);
    let mut s2b = Mat::<f64>::zeros(d, k);
    matmul(
        s2b.as_mut(),
        Accum::Replace,
        s2.as_ref(),
        b.as_ref(),
        1.0,
        Par::rayon(0),
    );
    let mut m = Mat::<f64>::zeros(k, k);
    matmul(
        m.as_mut(),
        Accum::Replace,
        b.transpose(),
        s2b.as_ref(),
        1.0,
        Par::rayon(0),
    );
    let m = Mat::from_fn(k, k, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let lambda = m
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(no_convergence)?;
    let lambda_max = lambda.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let floor = noise_floor(k, lambda_max);
    Ok(lambda
        .iter()
        .filter(|&&v| v > floor)
        .map(|v| v.sqrt())
        .sum())
}

/// The Frechet distance between two Gaussians given by feature statistics:
/// `|mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2))` (pytorch-fid's
/// `calculate_frechet_distance`; see the module documentation for how the square root is
/// taken). Statistics of different dimensions, malformed or non-finite ones are an
/// [`EvalError::Input`].
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    const WHAT: &str = "Frechet distance";
    a.validate(WHAT)?;
    b.validate(WHAT)?;
    let d = a.dims();
    if b.dims() != d {
        return Err(EvalError::input(
            WHAT,
            format!("statistics of {d} and {} dimensions", b.dims()),
        ));
    }
    let diff: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let tr_covmean = trace_sqrt_product(&a.cov, &b.cov, d)?;
    Ok(diff + trace(&a.cov) + trace(&b.cov) - 2.0 * tr_covmean)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(seed: u64, n: usize) -> Vec<f32> {
        sonic_core::formula::uniform(seed, "fid-test", n)
    }

    #[test]
    fn statistics_match_numpy() {
        // np.mean / np.cov(rowvar=False) of [[0, 1], [2, 0], [1, 1]].
        let s = FeatureStats::from_features(&[0.0, 1.0, 2.0, 0.0, 1.0, 1.0], 3, 2).unwrap();
        assert_eq!(s.mean, vec![1.0, 2.0 / 3.0]);
        let expect = [1.0, -0.5, -0.5, 1.0 / 3.0];
        for (a, b) in s.cov.iter().zip(expect) {
            assert!((a - b).abs() < 1e-15, "{:?}", s.cov);
        }
    }

    #[test]
    fn diagonal_covariances_have_a_closed_form() {
        // S1 = diag(a), S2 = diag(b): Tr sqrtm(S1 S2) = sum sqrt(a_i b_i).
        let (a, b) = ([4.0, 1.0, 0.25, 0.0], [1.0, 9.0, 4.0, 3.0]);
        let diag = |v: &[f64]| {
            let mut m = vec![0.0; 16];
            for (i, x) in v.iter().enumerate() {
                m[i * 4 + i] = *x;
            }
            m
        };
        let t = trace_sqrt_product(&diag(&a), &diag(&b), 4).unwrap();
        assert!((t - (2.0 + 3.0 + 1.0)).abs() < 1e-12, "{t}");
        let sa = FeatureStats {
            mean: vec![1.0, 0.0, 0.0, 0.0],
            cov: diag(&a),
            n: 10,
        };
        let sb = FeatureStats {
            mean: vec![0.0; 4],
            cov: diag(&b),
            n: 10,
        };
        let fid = frechet_distance(&sa, &sb).unwrap();
        let expect = 1.0 + 5.25 + 17.0 - 2.0 * 6.0;
        assert!((fid - expect).abs() < 1e-12, "{fid}");
    }

    #[test]
    fn singular_self_distance_is_zero() {
        // 5 samples of 300 dimensions: covariances of rank 4.
        let f = values(3, 5 * 300);
        let s = FeatureStats::from_features(&f, 5, 300).unwrap();
        let fid = frechet_distance(&s, &s).unwrap();
        assert!(fid.abs() < 1e-10, "{fid}");
        let g = values(4, 7 * 300);
        let t = FeatureStats::from_features(&g, 7, 300).unwrap();
        let ab = frechet_distance(&s, &t).unwrap();
        let ba = frechet_distance(&t, &s).unwrap();
        assert!(ab > 0.0 && ((ab - ba) / ab).abs() < 1e-10, "{ab} {ba}");
    }

    #[test]
    fn accumulator_agrees_with_the_two_pass_statistics() {
        let f: Vec<f32> = values(5, 9 * 6).iter().map(|v| v + 100.0).collect();
        let whole = FeatureStats::from_features(&f, 9, 6).unwrap();
        let mut acc = StatsAccumulator::new(6).unwrap();
        acc.push(&f[..4 * 6], 4).unwrap();
        acc.push(&[], 0).unwrap();
        acc.push(&f[4 * 6..], 5).unwrap();
        let inc = acc.finish().unwrap();
        assert_eq!(inc.n, 9);
        for (a, b) in inc.mean.iter().zip(&whole.mean) {
            assert!((a - b).abs() < 1e-12);
        }
        for (a, b) in inc.cov.iter().zip(&whole.cov) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    /// Full-rank statistics at FID's size (`cargo test -p sonic-eval --lib full_rank --
    /// --ignored --nocapture`: about 3 s per distance on 2 cores). The reference value is
    /// pytorch-fid's `calculate_frechet_distance` on the same features
    /// (`formula.uniform(seed, "fid-test", n * d)` in tools/fixtures/formula.py).
    #[test]
    #[ignore = "timing of 2048-dimensional full-rank statistics"]
    fn full_rank_2048_takes_seconds() {
        let (n, d) = (2300, 2048);
        let a = FeatureStats::from_features(&values(6, n * d), n, d).unwrap();
        let b = FeatureStats::from_features(&values(7, n * d), n, d).unwrap();
        let start = std::time::Instant::now();
        let ab = frechet_distance(&a, &b).unwrap();
        let aa = frechet_distance(&a, &a).unwrap();
        println!("{ab} {aa}: {:.2} s", start.elapsed().as_secs_f64() / 2.0);
        assert!(((ab - 304.866_275_177_592_1) / ab).abs() < 1e-9, "{ab}");
        assert!(aa.abs() < 1e-9, "{aa}");
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let one = FeatureStats::from_features(&[1.0, 2.0], 1, 2);
        assert!(matches!(one, Err(EvalError::Input { .. })));
        let short = FeatureStats::from_features(&[1.0, 2.0, 3.0], 2, 2);
        assert!(matches!(short, Err(EvalError::Input { .. })));
        let nan = FeatureStats::from_features(&[1.0, f32::NAN, 3.0, 4.0], 2, 2);
        assert!(matches!(nan, Err(EvalError::Input { .. })));
        let huge = FeatureStats::from_features(&[], 0, MAX_DIMS + 1);
        assert!(matches!(huge, Err(EvalError::Input { .. })));
        let a = FeatureStats::from_features(&[1.0, 2.0, 3.0, 5.0], 2, 2).unwrap();
        let b = FeatureStats::from_features(&[1.0, 2.0, 3.0, 5.0, 1.0, 1.0], 2, 3).unwrap();
        assert!(matches!(
            frechet_distance(&a, &b),
            Err(EvalError::Input { .. })
        ));
        let mut inf = a.clone();
        inf.cov[1] = f64::INFINITY;
        assert!(matches!(
            frechet_distance(&a, &inf),
            Err(EvalError::Input { .. })
        ));
        assert!(StatsAccumulator::new(0).is_err());
        let mut acc = StatsAccumulator::new(2).unwrap();
        acc.push(&[1.0, 2.0], 1).unwrap();
        assert!(acc.finish().is_err());
        assert!(acc.push(&[1.0], 1).is_err());
    }
}
