//! `cargo xtask <command>`: the project's entry points. `demo`, `data`, `recipes`, `pretrain`,
//! `finetune`, `generate`, `scaling` and `bench` run the `pretrain` command line (library code)
//! in release mode; `test` runs every check CI runs; `fuzz` runs
//! libFuzzer on one fuzz target. This crate stays free of the ML stack so it starts in seconds.

mod avx2_cap;
mod fuzz;
mod hf_check;
mod test;

use std::process::Command;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "pretrain project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The demo: pre-training, then every comparison (release build of `pretrain demo`;
    /// `--help` after it lists its options).
    Demo {
        /// Arguments for `pretrain demo`, e.g. `--quick`, `--backend wgpu`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Obtain the larger data sets (release build of `pretrain data`).
    Data {
        /// Data set names (default: all).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List the recipes (release build of `pretrain recipes`).
    Recipes,
    /// Pre-train a recipe (release build of `pretrain pretrain`; `--help` after it).
    Pretrain {
        /// Recipe name or path, then options such as `--backend wgpu --steps 100 --out DIR`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Evaluate a pre-trained encoder (release build of `pretrain finetune`; `--help` after it).
    Finetune {
        /// Recipe name or path, then `--from DIR` and options such as `--strategy knn`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Continue a prompt with a causal-LM run (release build of `pretrain generate`).
    Generate {
        /// Run directory, then `--prompt "..."` and options such as `--max-tokens 60`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A scaling-law sweep of a causal-LM or MAE recipe (release build of `pretrain scaling`).
    Scaling {
        /// Recipe name or path, then `--sizes 32x1,64x2,... --flops 1e12,1e13` and options
        /// such as `--lrs`, `--seeds`, `--out`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Timed training steps (release build of `pretrain bench`): `step --model M` or
    /// `compare` (against PyTorch on the CPU).
    Bench {
        /// `step --model mae-vit-tiny [--backend B] [--batch N] [--steps N] [--threads N]`
        /// or `compare [--threads N]`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install what the tests need, then fmt, clippy (with the CUDA feature) and all tests.
    Test,
    /// libFuzzer on one fuzz target (`fuzz/`, nightly toolchain), from the seed corpora.
    Fuzz {
        /// The target (`--list` names them).
        target: Option<String>,
        /// How long to run.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// List the targets.
        #[arg(long)]
        list: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Demo { args } => pretrain_cli("demo", &args),
        Task::Data { args } => pretrain_cli("data", &args),
        Task::Recipes => pretrain_cli("recipes", &[]),
        Task::Pretrain { args } => pretrain_cli("pretrain", &args),
        Task::Finetune { args } => pretrain_cli("finetune", &args),
        Task::Generate { args } => pretrain_cli("generate", &args),
        Task::Scaling { args } => pretrain_cli("scaling", &args),
        Task::Bench { args } => pretrain_cli("bench", &args),
        Task::Test => test::run(),
        Task::Fuzz {
            target,
            minutes,
            list,
        } => fuzz::run(target, minutes, list),
    }
}

/// Runs `pretrain <command> <args>` built in release mode. Backend features are forwarded:
/// `--backend wgpu` builds the CLI with the `wgpu` feature.
fn pretrain_cli(command: &str, args: &[String]) -> Result<()> {
    let backend = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1));
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["run", "--quiet", "--release", "-p", "pretrain-cli"]);
    if let Some(feature) = backend.filter(|b| ["ndarray", "wgpu", "cuda"].contains(&b.as_str())) {
        cargo.args(["--features", feature]);
    }
    cargo.args(["--", command]).args(args);
    Ok(pretrain_setup::run(&mut cargo, "see the messages above")?)
}
