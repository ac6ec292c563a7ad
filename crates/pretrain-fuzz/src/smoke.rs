//! The smoke run: every seed, every committed regression input (`fuzz/regressions/<target>/`),
//! then seeded mutations of the seeds, each checked for panics and time.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use pretrain_data::error::panic_message;

use crate::mutate::mutate;
use crate::targets::Target;

/// What a clean smoke run measured.
#[derive(Debug, Clone)]
pub struct SmokeReport {
    /// The target.
    pub target: &'static str,
    /// Inputs run (seeds, regression inputs and mutations).
    pub inputs: usize,
    /// The slowest input's time.
    pub slowest: Duration,
}

/// An input that broke a target.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The target.
    pub target: &'static str,
    /// The input.
    pub input: Vec<u8>,
    /// The panic message, or how long it took.
    pub message: String,
}

/// The committed regression inputs of `target`: crashes found earlier, kept as tests.
pub fn regressions(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| Some((path.clone(), std::fs::read(&path).ok()?)))
        .collect()
}

/// Runs `target` on its seeds, its regression inputs and `mutations` seeded mutations of the
/// seeds; the first input that panics or takes longer than `time_limit` is the error.
pub fn smoke(
    target: &'static Target,
    mutations: usize,
    seed: u64,
    time_limit: Duration,
) -> Result<SmokeReport, Crash> {
    let seeds = (target.seeds)();
    let mut rng = StdRng::seed_from_u64(seed);
    let fixed = seeds
        .iter()
        .cloned()
        .chain(regressions(target.name).into_iter().map(|(_, bytes)| bytes));
    let mutated = (0..mutations).map(|_| {
        let base = &seeds[rng.random_range(0..seeds.len())];
        let other = &seeds[rng.random_range(0..seeds.len())];
        mutate(base, other, &mut rng)
    });
    let mut report = SmokeReport {
        target: target.name,
        inputs: 0,
        slowest: Duration::ZERO,
    };
    for input in fixed.chain(mutated) {
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        let took = started.elapsed();
        let crash = |message: String| Crash {
            target: target.name,
            input: input.clone(),
            message,
        };
        if let Err(panic) = outcome {
            let message = panic_message(panic.as_ref());
            return Err(crash(format!("panicked: {message}")));
        }
        if took > time_limit {
            return Err(crash(format!(
                "took {:.2} s (limit {:.2} s)",
                took.as_secs_f64(),
                time_limit.as_secs_f64()
            )));
        }
        report.inputs += 1;
        report.slowest = report.slowest.max(took);
    }
    Ok(report)
}
