//! Branch-free f32 `exp`, `tanh` and `erf` that the compiler vectorizes inside slice loops.
//!
//! The standard library's (and the `libm` crate's) are scalar calls that no loop around them
//! can vectorize: `__expm1f`, `__tanhf` and `__expf` took 29% of GPT-mini's training step
//! (`perf record`, benches/NOTES.md 2026-12-03). No maintained crate offers vectorizable f32
//! transcendentals for stable Rust without fixing the instruction set at compile time, so these
//! are written here: Cody-Waite range reduction and Cephes' `expf` polynomial, `tanh` from
//! `exp`, and a rational `erf`. Accuracy (tested below over dense sweeps): `exp` within 3e-7 relative on
//! [-87, 88] (0 below), `tanh` within 3e-7 and `erf` within 5e-7 absolute.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two, so `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding and subtracting it rounds an f32 of magnitude below 2^22 to an integer
/// (SSE2 has no rounding instruction the compiler could use for `round`).
const ROUND: f32 = 12_582_912.0;
/// Below this `exp` underflows to 0; above `EXP_MAX` it saturates at `exp(EXP_MAX)`.
const EXP_MIN: f32 = -87.336_55;
const EXP_MAX: f32 = 88.0;

/// `e^x`.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let clamped = x.clamp(EXP_MIN, EXP_MAX);
    let n = (clamped * LOG2_E + ROUND) - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from its exponent bits; n lies in [-126, 127].
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < EXP_MIN { 0.0 } else { y * scale }
}

/// `tanh(x)` as `(e^2x - 1) / (e^2x + 1)`, `x` clamped to +-9 (where tanh is 1 in f32).
#[inline(always)]
pub(super) fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x.clamp(-9.0, 9.0));
    (e - 1.0) / (e + 1.0)
}

/// The error function as `x P(x^2) / Q(x^2)` on `x` clamped to +-4 (where erf is +-1 in f32),
/// the rational approximation Eigen uses for f32 (`generic_fast_erf_float`).
#[inline(always)]
pub(super) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// Accumulators of the vectorized sums: independent lanes the compiler keeps in one register
/// (a single f32 accumulator must add in order and does not vectorize).
const LANES: usize = 16;

/// The sum of `values`, in [`LANES`] interleaved partial sums.
#[inline(always)]
pub(super) fn sum(values: &[f32]) -> f32 {
    sum_of(values, |v| v)
}

/// The sum of `f(v)` over `values`, in [`LANES`] interleaved partial sums.
#[inline(always)]
pub(super) fn sum_of(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for chunk in values.chunks(LANES) {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum()
}

/// `values[i] *= factors[i]` (the shorter length).
#[inline(always)]
pub(super) fn scale_by(values: &mut [f32], factors: &[f32]) {
    values.iter_mut().zip(factors).for_each(|(v, f)| *v *= f);
}

/// The largest of `values` (`-inf` when empty), in [`LANES`] interleaved partial maxima.
#[inline(always)]
pub(super) fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for chunk in values.chunks(LANES) {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    lanes.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// The dot product of `a` and `b` (the shorter length), in [`LANES`] interleaved partial sums.
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for (a, b) in a.chunks(LANES).zip(b.chunks(LANES)) {
        for ((lane, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
            *lane += a * b;
        }
    }
    lanes.iter().sum()
}

/// Runs `f` compiled for the widest vector instructions the CPU has: AVX-512, else AVX2, else
/// the build's baseline (SSE2 on x86-64).
///
/// The workspace builds for baseline x86-64, so the loops above vectorize 4 lanes wide unless
/// they run inside a function compiled with more target features: `f`, an `#[inline(always)]`
/// closure (without the attribute LLVM calls it instead, compiled for the baseline), is inlined
/// into such a copy here, chosen at run time as `gemm` chooses its kernels. Every lane computes
/// what the scalar code does and the sums keep their fixed [`LANES`] partials, so results are
/// the same bits on every path.
#[inline(always)]
pub(super) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the instructions `avx512` is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above, for `avx2`.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// `f` compiled with AVX-512 (for [`widest`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `f` compiled with AVX2 (for [`widest`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2,000,001 points evenly over `[lo, hi]`.
    fn sweep(lo: f32, hi: f32) -> impl Iterator<Item = f32> {
        let n = 2_000_000;
        (0..=n).map(move |i| lo + (hi - lo) * (i as f32 / n as f32))
    }

    #[test]
    fn exp_is_within_3e7_relative_and_underflows_to_zero() {
        for x in sweep(-87.0, 88.0) {
            let (ours, exact) = (f64::from(exp(x)), f64::from(x).exp());
            assert!(
                ((ours - exact) / exact).abs() < 3e-7,
                "exp({x}) = {ours}, not {exact}"
            );
        }
        assert_eq!(exp(-1.0e4), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(100.0).is_finite());
    }

    /// The kernels of this module over `xs`, as bits: the element-wise functions of each value,
    /// then the reductions.
    #[inline(always)]
    fn kernel_bits(xs: &[f32]) -> Vec<u32> {
        let mut bits: Vec<u32> = xs
            .iter()
            .flat_map(|&x| [exp(x), tanh(x), erf(x)])
            .map(f32::to_bits)
            .collect();
        let reductions = [sum(xs), sum_of(xs, exp), max(xs), dot(xs, &xs[1..])];
        bits.extend(reductions.map(f32::to_bits));
        bits
    }

    /// Every copy [`widest`] can choose computes the baseline's bits: the same kernels over
    /// one sweep, run baseline, AVX2 and AVX-512 where the CPU has them.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let xs: Vec<f32> = sweep(-100.0, 100.0).step_by(7).collect();
        let baseline = kernel_bits(&xs);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                let bits = unsafe {
                    avx2(
                        #[inline(always)]
                        || kernel_bits(&xs),
                    )
                };
                assert!(bits == baseline, "AVX2 differs");
            } else {
                eprintln!("AVX2 path not checked: this CPU lacks AVX2");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512.
                let bits = unsafe {
                    avx512(
                        #[inline(always)]
                        || kernel_bits(&xs),
                    )
                };
                assert!(bits == baseline, "AVX-512 differs");
            } else {
                eprintln!("AVX-512 path not checked: this CPU lacks AVX-512");
            }
        }
    }

    #[test]
    fn tanh_is_within_3e7_and_erf_within_5e7_absolute() {
        for x in sweep(-12.0, 12.0) {
            let exact = f64::from(x).tanh();
            assert!(
                (f64::from(tanh(x)) - exact).abs() < 3e-7,
                "tanh({x}) = {}, not {exact}",
                tanh(x)
            );
            let exact = burn_flex::ops::unary::erf_f64(f64::from(x));
            assert!(
                (f64::from(erf(x)) - exact).abs() < 5e-7,
                "erf({x}) = {}, not {exact}",
                erf(x)
            );
        }
    }
}
