//! `pretrain bench step|compare`: argument handling around `pretrain_benches::step`, and the
//! side-by-side run against PyTorch (each measurement in its own process, so peak memory is
//! the step's own).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use pretrain::backend::BackendKind;
use pretrain::data::Named;
use pretrain_benches::step::{
    StepBenchConfig, StepBenchResult, StepModel, bench_step, compare_markdown, set_threads,
};

/// Options of one step benchmark.
#[derive(clap::Args)]
pub struct StepArgs {
    /// mae-vit-tiny, bert-tiny-mlm, simclr-cnn or gpt-mini-clm.
    #[arg(long)]
    model: String,
    /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
    #[arg(long, default_value = "flex")]
    backend: BackendKind,
    /// Batch size (default: 256 images, 32 sequences for BERT and GPT).
    #[arg(long)]
    batch: Option<usize>,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Threads of the CPU backends (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs one benchmark and prints its JSON line.
pub fn step(args: &StepArgs) -> Result<()> {
    if let Some(threads) = args.threads {
        set_threads(threads)?;
    }
    let result = bench_step(&StepBenchConfig {
        model: StepModel::parse(&args.model)?,
        backend: args.backend,
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
    })?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Options of the comparison.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Threads on both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed steps per run.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps per run.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Alternations of the two sides per workload (the best of each side is kept).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Python with torch (default: a virtual environment under --out, made when missing).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// PyTorch version installed into the comparison's virtual environment.
const TORCH: &str = "torch==2.15.0";
const SCRIPT: &str = "tools/bench/torch_step.py";

/// Alternates ours and PyTorch on every model `rounds` times, keeps each side's best round
/// (the machine is shared: the fastest run is the least disturbed), writes `compare.md` and
/// `compare.json` to `out` and prints the table.
pub fn compare(args: &CompareArgs) -> Result<()> {
    if !Path::new(SCRIPT).is_file() {
        bail!("{SCRIPT} not found: run from the repository root");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let python = match &args.python {
        Some(p) => p.clone(),
        None => ensure_torch_venv(&args.out.join("venv"))?,
    };
    let exe = std::env::current_exe().context("locating the pretrain binary")?;
    let common = |cmd: &mut Command| {
        cmd.args(["--threads", &args.threads.to_string()])
            .args(["--steps", &args.steps.to_string()])
            .args(["--warmup", &args.warmup.to_string()]);
    };
    let mut rows: Vec<(StepBenchResult, StepBenchResult)> = Vec::new();
    for &model in StepModel::all() {
        let mut best: Option<(StepBenchResult, StepBenchResult)> = None;
        for round in 0..args.rounds.max(1) {
            eprintln!("[compare] {} round {}", model.name(), round + 1);
            let mut ours = Command::new(&exe);
            ours.args(["bench", "step", "--model", model.name()]);
            common(&mut ours);
            let ours = json_line(&mut ours)?;
            let mut torch = Command::new(&python);
            torch.args([SCRIPT, "--model", model.name()]);
            common(&mut torch);
            let torch = json_line(&mut torch)?;
            best = Some(match best {
                None => (ours, torch),
                Some((o, t)) => (faster(o, ours), faster(t, torch)),
            });
        }
        rows.push(best.expect("at least one round"));
    }
    let table = compare_markdown(&rows, args.threads);
    let md = args.out.join("compare.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    let json = args.out.join("compare.json");
    let pairs: Vec<serde_json::Value> = rows
        .iter()
        .map(|(o, t)| serde_json::json!({ "ours": o, "pytorch": t }))
        .collect();
    std::fs::write(&json, serde_json::to_vec_pretty(&pairs)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!("{table}");
    Ok(())
}

fn faster(a: StepBenchResult, b: StepBenchResult) -> StepBenchResult {
    if b.samples_per_sec > a.samples_per_sec {
        b
    } else {
        a
    }
}

/// Runs `command` and parses the last line of its standard output as a result.
fn json_line(command: &mut Command) -> Result<StepBenchResult> {
    let line = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("running {line}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{line} failed ({}):\n{}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{line} printed {last:?}, not a result"))
}

/// A virtual environment at `dir` with PyTorch (CPU use only), created and filled when
/// missing; returns its Python.
fn ensure_torch_venv(dir: &Path) -> Result<PathBuf> {
    let python = dir.join("bin/python");
    let has_torch = |python: &Path| {
        Command::new(python)
            .args(["-c", "import torch"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.is_file() && has_torch(&python) {
        return Ok(python);
    }
    eprintln!("[compare] installing {TORCH} into {}", dir.display());
    pretrain_setup::ensure_apt_packages(&["python3-venv"])?;
    pretrain_setup::run(
        Command::new("python3").args(["-m", "venv"]).arg(dir),
        "python3 -m venv needs Debian's python3-venv",
    )?;
    pretrain_setup::run(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", TORCH]),
        "pip could not install PyTorch from PyPI",
    )?;
    if !has_torch(&python) {
        bail!(
            "{} cannot import torch after installing it",
            python.display()
        );
    }
    Ok(python)
}
