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

/// The copies of a kernel that [`widest`] chooses among, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum InstructionSet {
    /// The build's baseline (SSE2 on x86-64).
    Baseline,
    /// AVX2 (256-bit vectors).
    Avx2,
    /// AVX-512F (512-bit vectors).
    Avx512,
}

impl InstructionSet {
    /// The widest set the CPU reports, as [`widest`] picks it.
    pub(super) fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Baseline
    }
}

/// Runs `f` compiled for the widest vector instructions the CPU has: AVX-512, else AVX2, else
/// the build's baseline (SSE2 on x86-64).
///
/// The workspace builds for baseline x86-64, so the loops above vectorize 4 lanes wide unless
/// they run inside a function compiled with more target features: `f`, an `#[inline(always)]`
/// closure (without the attribute LLVM calls it instead, compiled for the baseline), is inlined
/// into such a copy here, chosen at run time as `gemm` chooses its kernels. Every lane computes
/// what the scalar code does and the sums keep their fixed [`LANES`] partials, so results are
/// the same bits on every path (tested here and, kernel by kernel, in `flex::tests`).
#[inline(always)]
pub(super) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(test)]
    let set = tests::forced().unwrap_or_else(InstructionSet::detected);
    #[cfg(not(test))]
    let set = InstructionSet::detected();
    run_on(set, f)
}

/// Runs `f` compiled for `set`.
#[inline(always)]
fn run_on<R>(set: InstructionSet, f: impl FnOnce() -> R) -> R {
    match set {
        // SAFETY: `set` is one the CPU runs (detected, or checked by the tests that force it).
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx512 => unsafe { avx512(f) },
        // SAFETY: as above, for AVX2.
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx2 => unsafe { avx2(f) },
        _ => f(),
    }
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
pub(super) mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// The set [`widest`] is held to while [`on_each_instruction_set`] runs, else [`NOT_FORCED`].
    static FORCED: AtomicU8 = AtomicU8::new(NOT_FORCED);
    const NOT_FORCED: u8 = u8::MAX;
    const SETS: [InstructionSet; 3] = [
        InstructionSet::Baseline,
        InstructionSet::Avx2,
        InstructionSet::Avx512,
    ];

    /// The set a test holds [`widest`] to, if any.
    pub(in crate::fused::flex) fn forced() -> Option<InstructionSet> {
        SETS.get(usize::from(FORCED.load(Ordering::Relaxed)))
            .copied()
    }

    /// The instruction sets this CPU executes, narrowest first. What std detects, and what the
    /// kernel lists in `/proc/cpuinfo`: the test command hides AVX-512 from the process's
    /// `cpuid` (so the suite runs the AVX2 path), and these tests still compare every copy.
    pub(in crate::fused::flex) fn executable() -> Vec<InstructionSet> {
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let listed = |flag: &str| {
            flags
                .lines()
                .find(|l| l.starts_with("flags"))
                .is_some_and(|l| l.split_whitespace().any(|f| f == flag))
        };
        let runs = |set: InstructionSet, flag: &str| {
            let ok = InstructionSet::detected() >= set || listed(flag);
            if !ok {
                eprintln!("{set:?} not checked: this CPU lacks {flag}");
            }
            ok
        };
        let mut sets = vec![InstructionSet::Baseline];
        if cfg!(target_arch = "x86_64") {
            sets.extend(
                [
                    (InstructionSet::Avx2, "avx2"),
                    (InstructionSet::Avx512, "avx512f"),
                ]
                .into_iter()
                .filter(|&(set, flag)| runs(set, flag))
                .map(|(set, _)| set),
            );
        }
        sets
    }

    /// `f` once with [`widest`] held to each set the CPU executes, one test at a time (other
    /// tests running meanwhile get the same bits on any set, which is what these tests check).
    pub(in crate::fused::flex) fn on_each_instruction_set<R>(
        f: impl Fn() -> R,
    ) -> Vec<(InstructionSet, R)> {
        /// Lets [`widest`] choose again when dropped, also when `f` panics.
        struct Release;
        impl Drop for Release {
            fn drop(&mut self) {
                FORCED.store(NOT_FORCED, Ordering::Relaxed);
            }
        }
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let _release = Release;
        executable()
            .into_iter()
            .map(|set| {
                let index = SETS.iter().position(|&s| s == set).expect("a known set");
                FORCED.store(index as u8, Ordering::Relaxed);
                (set, f())
            })
            .collect()
    }

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
    /// one sweep, run on each instruction set the CPU executes.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let xs: Vec<f32> = sweep(-100.0, 100.0).step_by(7).collect();
        let baseline = kernel_bits(&xs);
        for set in executable() {
            let bits = run_on(
                set,
                #[inline(always)]
                || kernel_bits(&xs),
            );
            assert!(bits == baseline, "{set:?} differs from the baseline");
        }
    }

    /// `cargo xtask test` says which instruction sets the process must see
    /// (`PRETRAIN_TEST_CPU=avx2`: AVX-512 hidden by its preload library, or absent): checks
    /// that the dispatch really runs there, so the suite cannot claim a path it did not take.
    #[test]
    fn dispatch_runs_on_the_instruction_set_the_test_command_set() {
        match std::env::var("PRETRAIN_TEST_CPU").as_deref() {
            Ok("avx2") => assert_eq!(
                InstructionSet::detected(),
                InstructionSet::Avx2,
                "PRETRAIN_TEST_CPU=avx2, but the process sees another instruction set"
            ),
            Ok(other) => panic!("PRETRAIN_TEST_CPU={other}: only `avx2` is known"),
            Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("under CI=true the test command sets PRETRAIN_TEST_CPU")
            }
            Err(_) => eprintln!(
                "PRETRAIN_TEST_CPU unset: this run dispatches to {:?} (cargo xtask test runs \
                 the suite on AVX2)",
                InstructionSet::detected()
            ),
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
