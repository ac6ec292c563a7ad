//! The Hugging Face export round trip of `cargo xtask test`: a two-step causal-LM run exported
//! with `pretrain export-hf`, its outputs written by `pretrain embed`, and `tools/hf/gpt2.py
//! check` loading the export with `transformers` (no missing or unexpected keys) and comparing
//! its outputs. PyTorch and `transformers` come from PyPI into `target/hf/venv`; when they
//! cannot be installed the check is skipped, saying why.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use pretrain_setup::run as run_command;

/// What the check installs (the versions the fixtures were made with).
const PACKAGES: &[&str] = &["torch==2.15.0", "transformers==5.24.0"];

pub fn run(target: &Path, env: &[(String, PathBuf)]) -> Result<()> {
    let python = match python_with_transformers(target) {
        Ok(python) => python,
        Err(e) => {
            println!("hf export check skipped: {e:#}");
            return Ok(());
        }
    };
    let dir = target.join("hf-check");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let (run_dir, export) = (dir.join("run"), dir.join("gpt2"));
    let pretrain = |args: &[&Path]| {
        let mut command = Command::new(target.join("debug/pretrain"));
        command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        println!(
            "$ pretrain {}",
            args.iter()
                .map(|a| a.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        run_command(&mut command, "the hf export check failed")
    };
    let arg = Path::new;
    pretrain(&[
        arg("pretrain"),
        arg("clm-moby-dick"),
        arg("--steps"),
        arg("2"),
        arg("--quiet"),
        arg("--out"),
        &run_dir,
    ])?;
    pretrain(&[arg("export-hf"), &run_dir, arg("--out"), &export])?;
    // Two rows, the second right-padded.
    let inputs = export.join("inputs.json");
    std::fs::write(
        &inputs,
        r#"{"input_ids": [[5, 9, 3, 7, 1, 2], [4, 4, 8, 0, 0, 0]],
            "attention_mask": [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]}"#,
    )?;
    pretrain(&[
        arg("embed"),
        &run_dir,
        arg("--input"),
        &inputs,
        arg("--out"),
        &export.join("expected.json"),
    ])?;
    let mut check = Command::new(&python);
    check.arg("tools/hf/gpt2.py").arg("check").arg(&export);
    println!("$ python tools/hf/gpt2.py check {}", export.display());
    Ok(run_command(
        &mut check,
        "transformers disagrees with the export",
    )?)
}

/// A Python that imports `transformers` and `torch`: `target/hf/venv`'s, installed there
/// first when missing.
fn python_with_transformers(target: &Path) -> Result<PathBuf> {
    let venv = target.join("hf/venv");
    let python = venv.join("bin/python");
    let imports = |python: &Path| {
        Command::new(python)
            .args(["-c", "import torch, transformers"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if imports(&python) {
        return Ok(python);
    }
    println!(
        "installing {} into {} (once)",
        PACKAGES.join(" "),
        venv.display()
    );
    run_command(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv failed (is python3-venv installed?)",
    )?;
    run_command(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(PACKAGES),
        "pip could not install them from PyPI",
    )?;
    anyhow::ensure!(
        imports(&python),
        "{} cannot import torch and transformers",
        python.display()
    );
    Ok(python)
}
