//! Every fuzz target on the stable toolchain: seeds, committed regression inputs and seeded
//! mutations must not panic, must finish in time, and must not allocate far beyond their size.
//! `PRETRAIN_FUZZ_MUTATIONS` sets the mutations per target (default 3,000). A breaking input is
//! written to `target/fuzz-crashes/<target>-<n>` for a regression test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pretrain_fuzz::{TARGETS, Target, smoke};

/// Counts live bytes and their peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes an input may make the process hold beyond what it held before: a fixed allowance for
/// the models and tokenizers the targets build, plus a multiple of the input.
fn allowance(input_len: usize) -> usize {
    256 * 1024 * 1024 + 64 * input_len
}

/// A target wrapped to check the allocation bound of each input.
fn bounded(target: &'static Target) -> &'static Target {
    thread_local! {
        static INNER: std::cell::Cell<Option<&'static Target>> = const { std::cell::Cell::new(None) };
    }
    fn run(data: &[u8]) {
        let inner = INNER.with(|t| t.get()).expect("set before the run");
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        (inner.run)(data);
        let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        assert!(
            grew <= allowance(data.len()),
            "allocated {grew} bytes for an input of {} bytes",
            data.len()
        );
    }
    INNER.with(|t| t.set(Some(target)));
    Box::leak(Box::new(Target {
        name: target.name,
        what: target.what,
        run,
        seeds: target.seeds,
    }))
}

#[test]
fn every_target_survives_its_seeds_regressions_and_mutations() {
    let mutations: usize = std::env::var("PRETRAIN_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    // Generous for a debug build on a shared 2-core machine; libFuzzer runs (release) use 1 s.
    let limit = Duration::from_secs(10);
    // Targets panic inside libraries that the smoke run catches and reports by message; the
    // default hook would print each with a backtrace, burying the one line that matters in CI.
    std::panic::set_hook(Box::new(|_| {}));
    let crashes_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-crashes");
    for (i, target) in TARGETS.iter().enumerate() {
        match smoke(bounded(target), mutations, 20261202 + i as u64, limit) {
            Ok(report) => eprintln!(
                "{}: {} inputs, slowest {:.0} ms",
                report.target,
                report.inputs,
                report.slowest.as_secs_f64() * 1e3
            ),
            Err(crash) => {
                // The default hook again, so that this panic prints.
                drop(std::panic::take_hook());
                std::fs::create_dir_all(&crashes_dir).unwrap();
                let path = crashes_dir.join(format!("{}-{}", crash.target, crash.input.len()));
                std::fs::write(&path, &crash.input).unwrap();
                panic!(
                    "fuzz target {} {} on the input saved to {}",
                    crash.target,
                    crash.message,
                    path.display()
                );
            }
        }
    }
}
