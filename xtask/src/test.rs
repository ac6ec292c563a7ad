//! `cargo xtask test`: everything CI checks, installing missing system packages first.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use pretrain_setup::{ensure_apt_packages, run as run_command};

/// Debian packages the tests need: a software Vulkan driver for the wgpu tests.
const APT_PACKAGES: &[&str] = &["mesa-vulkan-drivers", "libvulkan1"];

/// Features every check is built with: wgpu runs its tests on Mesa's software Vulkan, NdArray
/// is compared with Flex, and CUDA must compile.
const CHECK_FEATURES: &str = "pretrain/wgpu,pretrain/cuda,pretrain/ndarray";
const TEST_FEATURES: &str = "pretrain/wgpu,pretrain/ndarray";

pub fn run() -> Result<()> {
    ensure_apt_packages(APT_PACKAGES)?;
    let env = xdg_runtime_dir()?;
    cargo(&env, &["fmt", "--all", "--", "--check"])?;
    let clippy = [
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        CHECK_FEATURES,
    ];
    // Clippy type-checks every target with the CUDA feature on, so no separate `cargo check`.
    cargo(&env, &[&clippy[..], &["--", "-D", "warnings"]].concat())?;
    // The suite runs on the AVX2 path on every machine (see `avx2_cap.rs`).
    let avx2 = crate::avx2_cap::environment(&target_dir())?;
    let with = |extra: &[(String, String)]| {
        let mut all = env.clone();
        all.extend(extra.iter().map(|(k, v)| (k.clone(), PathBuf::from(v))));
        all
    };
    cargo(
        &with(&avx2.cargo_test),
        &["test", "--workspace", "--features", TEST_FEATURES],
    )?;
    run_examples(&with(&avx2.programs))?;
    crate::hf_check::run(&target_dir(), &env)?;
    println!("xtask test: all checks passed");
    Ok(())
}

/// The examples with tiny settings: `cargo test` has built them (same features, so nothing is
/// rebuilt); their binaries run from the target folder.
const EXAMPLES: &[(&str, &[&str])] = &[
    ("data_pipeline", &[]),
    ("pretrain_mae", &["3", "target/examples/pretrain_mae"]),
    ("finetune_lora", &["3", "target/examples/finetune_lora"]),
    (
        "finetune_hf_bert",
        &[
            "target/examples/hf-bert/checkpoint",
            "10",
            "target/examples/finetune_hf_bert",
        ],
    ),
    (
        "embeddings",
        &[
            "target/examples/pretrain_mae/encoder.safetensors",
            "target/examples/embeddings.csv",
        ],
    ),
];

fn run_examples(env: &[(String, PathBuf)]) -> Result<()> {
    let target = target_dir();
    bert_checkpoint(&target, env)?;
    for (name, args) in EXAMPLES {
        println!("$ examples/{name} {}", args.join(" "));
        let mut command = Command::new(target.join("debug/examples").join(name));
        command.args(*args).envs(env.iter().map(|(k, v)| (k, v)));
        run_command(&mut command, &format!("example {name} failed"))?;
    }
    Ok(())
}

/// The Hugging Face BERT checkpoint `finetune_hf_bert` reads: the masked-LM recipe 30 steps on
/// the shipped e-mails, exported with `pretrain export-hf`.
fn bert_checkpoint(target: &Path, env: &[(String, PathBuf)]) -> Result<()> {
    let dir = Path::new("target/examples/hf-bert");
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let recipe = crate::hf_check::sample_recipe(dir, "mlm-text", crate::hf_check::MLM_SAMPLE)?;
    let (run, checkpoint) = (dir.join("run"), dir.join("checkpoint"));
    let arg = Path::new;
    let pretrain = |args: &[&Path]| crate::hf_check::pretrain_cli(target, env, args);
    pretrain(&[
        arg("pretrain"),
        &recipe,
        arg("--steps"),
        arg("30"),
        arg("--quiet"),
        arg("--out"),
        &run,
    ])?;
    pretrain(&[arg("export-hf"), &run, arg("--out"), &checkpoint])
}

/// Cargo's target folder.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

/// Mesa's Vulkan driver complains on every device creation when `XDG_RUNTIME_DIR` is unset (as
/// in CI): returns the variable to give the children, a private folder under `target/`.
fn xdg_runtime_dir() -> Result<Vec<(String, PathBuf)>> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return Ok(Vec::new());
    }
    let dir = std::path::absolute("target/xdg-runtime")?;
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(vec![("XDG_RUNTIME_DIR".into(), dir)])
}

fn cargo(env: &[(String, PathBuf)], args: &[&str]) -> Result<()> {
    println!("$ cargo {}", args.join(" "));
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    Ok(run_command(&mut command, "see the messages above")?)
}
