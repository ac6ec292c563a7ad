//! The Hugging Face export round trips of `cargo xtask test`: a two-step causal-LM run and a
//! two-step masked-LM run exported with `pretrain export-hf`, their outputs written by
//! `pretrain embed`, and `tools/hf/gpt2.py check` / `tools/hf/bert.py check` loading each export
//! with `transformers` (no missing or unexpected keys) and comparing its outputs. PyTorch and `transformers` come from PyPI into `target/hf/venv`; when they
//! cannot be installed the check is skipped, saying why.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use pretrain_setup::run as run_command;

/// What the check installs (the versions the fixtures were made with).
const PACKAGES: &[&str] = &["torch==2.15.0", "transformers==5.24.0"];

/// Token ids of the round trips: two rows, the second right-padded; segment ids for BERT.
const CAUSAL_INPUTS: &str = r#"{"input_ids": [[5, 9, 3, 7, 1, 2], [4, 4, 8, 0, 0, 0]],
    "attention_mask": [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]}"#;
const MASKED_INPUTS: &str = r#"{"input_ids": [[5, 9, 3, 7, 1, 2], [4, 4, 8, 0, 0, 0]],
    "attention_mask": [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]],
    "token_type_ids": [[0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 0, 0]]}"#;

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
    std::fs::create_dir_all(&dir)?;
    // The shipped text recipe on the shipped spam sample (20 texts), 8 per step.
    let masked = dir.join("mlm-sample.toml");
    let recipe = std::fs::read_to_string("recipes/mlm-text.toml")?
        .replace("dataset = \"tweets\"", "dataset = \"spam-sample\"")
        .replacen("batch_size = 64", "batch_size = 8", 1);
    std::fs::write(&masked, recipe)?;
    for (name, recipe, script, inputs) in [
        (
            "gpt2",
            Path::new("clm-moby-dick"),
            "tools/hf/gpt2.py",
            CAUSAL_INPUTS,
        ),
        ("bert", masked.as_path(), "tools/hf/bert.py", MASKED_INPUTS),
    ] {
        let (run_dir, export) = (dir.join(format!("{name}-run")), dir.join(name));
        let pretrain = |args: &[&Path]| {
            let mut command = Command::new(target.join("debug/pretrain"));
            command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
            let line: Vec<String> = args.iter().map(|a| a.display().to_string()).collect();
            println!("$ pretrain {}", line.join(" "));
            run_command(&mut command, "the hf export check failed")
        };
        let arg = Path::new;
        let steps = [arg("--steps"), arg("2"), arg("--quiet"), arg("--out")];
        pretrain(&[&[arg("pretrain"), recipe][..], &steps, &[&run_dir]].concat())?;
        pretrain(&[arg("export-hf"), &run_dir, arg("--out"), &export])?;
        let input = export.join("inputs.json");
        std::fs::write(&input, inputs)?;
        let expected = export.join("expected.json");
        pretrain(&[
            arg("embed"),
            &run_dir,
            arg("--input"),
            &input,
            arg("--out"),
            &expected,
        ])?;
        let mut check = Command::new(&python);
        check.arg(script).arg("check").arg(&export);
        println!("$ python {script} check {}", export.display());
        run_command(&mut check, "transformers disagrees with the export")?;
    }
    Ok(())
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
