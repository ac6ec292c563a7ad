//! The AVX2 view of the CPU the test suite runs under: on a CPU with AVX-512, `avx2_cap.c`
//! (built here into `target/avx2-cap/libavx2cap.so`, loaded with `LD_PRELOAD` into each test
//! binary and each program it starts) hides AVX-512 from the process, so gemm, burn-flex's and
//! burn-ndarray's SIMD and pretrain's kernels run the code an AVX2-only machine runs. Both kinds
//! of machine then test the same path; the AVX-512 copies of pretrain's own kernels are still
//! compared bit for bit with the others by the same-bits tests (which read the CPU's real
//! flags from `/proc/cpuinfo`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The environment that runs tests and examples on the AVX2 path.
#[derive(Default)]
pub struct Avx2View {
    /// For `cargo test`: cargo's runner for test binaries, preloading the library where
    /// AVX-512 must be hidden, and `PRETRAIN_TEST_CPU=avx2`, which a test checks against what
    /// the process really sees.
    pub cargo_test: Vec<(String, String)>,
    /// For programs started directly (the examples): the preload.
    pub programs: Vec<(String, String)>,
}

/// Sets up the AVX2 view of this CPU (nothing to hide where it lacks AVX-512).
pub fn environment(target: &Path) -> Result<Avx2View> {
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx2") {
            println!("xtask test: this CPU lacks AVX2; the suite runs on its baseline path");
            return Ok(Avx2View::default());
        }
        let expect = ("PRETRAIN_TEST_CPU".to_string(), "avx2".to_string());
        if !std::arch::is_x86_feature_detected!("avx512f") {
            println!("xtask test: no AVX-512 on this CPU; the suite runs on its AVX2 path as is");
            return Ok(Avx2View {
                cargo_test: vec![expect],
                programs: Vec::new(),
            });
        }
        let library = build(target)?;
        if let Err(why) = probe(&library) {
            if std::env::var("CI").as_deref() == Ok("true") {
                bail!("AVX-512 cannot be hidden from the tests ({why}); CI must run the AVX2 path");
            }
            println!("xtask test: the suite runs on AVX-512, not AVX2: {why}");
            return Ok(Avx2View::default());
        }
        let library = library
            .to_str()
            .context("target folder path is not UTF-8")?;
        if library.contains(char::is_whitespace) {
            bail!("cargo splits its runner at spaces: move the target folder ({library})");
        }
        println!("xtask test: AVX-512 hidden from the tests ({library}); the suite runs on AVX2");
        Ok(Avx2View {
            cargo_test: vec![
                (
                    "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER".into(),
                    format!("env LD_PRELOAD={library}"),
                ),
                expect,
            ],
            programs: vec![("LD_PRELOAD".into(), library.into())],
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = target;
        Ok(Avx2View::default())
    }
}

/// Compiles `avx2_cap.c` with the system C compiler (the one Rust links with).
fn build(target: &Path) -> Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/avx2_cap.c");
    let dir = std::path::absolute(target.join("avx2-cap"))?;
    std::fs::create_dir_all(&dir)?;
    let library = dir.join("libavx2cap.so");
    let mut cc = Command::new("cc");
    cc.args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&library)
        .arg(&source);
    pretrain_setup::run(&mut cc, "compiling xtask/src/avx2_cap.c failed")?;
    Ok(library)
}

/// Runs `true` with the library preloaded: it exits 97 naming the reason where the kernel or
/// CPU lacks CPUID faulting.
fn probe(library: &Path) -> Result<(), String> {
    let output = Command::new("true")
        .env("LD_PRELOAD", library)
        .output()
        .map_err(|e| format!("cannot run `true`: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}
