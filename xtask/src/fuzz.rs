//! `cargo xtask fuzz <target> --minutes M`: libFuzzer on one target of `crates/pretrain-fuzz`
//! through the cargo-fuzz package in `fuzz/`, starting from the seed corpora.

use std::process::Command;

use anyhow::{Result, bail};
use pretrain_setup::run as run_command;

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Whether `command` runs and exits 0 (its output hidden).
fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn run(target: Option<String>, minutes: f64, list: bool) -> Result<()> {
    // The seed corpora (and the target names) come from the library itself.
    let mut seeds = cargo();
    seeds.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "pretrain-fuzz",
        "--bin",
        "fuzz-seeds",
        "--",
        "fuzz/corpus",
    ]);
    run_command(&mut seeds, "writing the seed corpora failed")?;
    let mut targets: Vec<String> = std::fs::read_dir("fuzz/corpus")?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    targets.sort();
    if list {
        println!("{}", targets.join("\n"));
        return Ok(());
    }
    let Some(target) = target else {
        bail!("name a target (one of: {})", targets.join(", "));
    };
    if !targets.contains(&target) {
        bail!("no fuzz target {target:?}; valid: {}", targets.join(", "));
    }
    if minutes.is_nan() || minutes <= 0.0 {
        bail!("--minutes must be positive");
    }
    // cargo-fuzz builds with sanitizer flags only a nightly compiler takes.
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        bail!(
            "libFuzzer needs a nightly toolchain (`rustup toolchain install nightly`), and this \
             machine has none; the stable smoke run (`cargo test -p pretrain-fuzz`) is what runs \
             here"
        );
    }
    if !succeeds(cargo().args(["fuzz", "--version"])) {
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        run_command(&mut install, "installing cargo-fuzz from crates.io failed")?;
    }
    let seconds = (minutes * 60.0).round() as u64;
    let mut fuzz = Command::new("rustup");
    fuzz.args([
        "run",
        "nightly",
        "cargo",
        "fuzz",
        "run",
        "--fuzz-dir",
        "fuzz",
    ])
    .arg(&target)
    .arg(format!("fuzz/corpus/{target}"))
    .args([
        "--",
        &format!("-max_total_time={seconds}"),
        "-timeout=1",
        "-rss_limit_mb=2048",
    ]);
    run_command(
        &mut fuzz,
        &format!("libFuzzer stopped on {target}: the crashing input is under fuzz/artifacts/"),
    )?;
    Ok(())
}
