//! `pretrain recipes|pretrain|finetune`: argument handling around `pretrain-recipes`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use pretrain::backend::BackendKind;
use pretrain_demo::DemoConfig;
use pretrain_recipes::few_shot::FEW_SHOT_FILE;
use pretrain_recipes::{FinetuneOptions, ObjectiveKind, PretrainOptions, Recipe, recipe_of_run};

/// Data-parallel options of `pretrain pretrain`.
#[derive(Debug, Clone, clap::Args)]
pub struct ParallelArgs {
    /// Data-parallel worker processes on this machine (started and watched by this command,
    /// with an orchestrator on loopback); the recipe's batch size is split among them.
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..), conflicts_with = "node_rank")]
    pub workers: Option<u64>,
    /// Compute threads per worker (default: cores / workers).
    #[arg(long, requires = "workers")]
    pub threads_per_worker: Option<usize>,
    /// This host's rank in a multi-host run, 0..nodes (rank 0 writes the run directory).
    #[arg(long, requires_all = ["nodes", "orchestrator", "node_address"])]
    pub node_rank: Option<usize>,
    /// Hosts in the multi-host run.
    #[arg(long, requires = "node_rank")]
    pub nodes: Option<usize>,
    /// The orchestrator's address, ws://HOST:PORT (`pretrain orchestrator --port PORT`).
    #[arg(long, requires = "node_rank")]
    pub orchestrator: Option<String>,
    /// This host's address as the others reach it, ws://HOST:PORT (the port serves tensors).
    #[arg(long, requires = "node_rank")]
    pub node_address: Option<String>,
    /// Seconds a worker waits for the others in one all-reduce before it stops the run (a
    /// peer died or cannot be reached); must cover rank 0 writing a checkpoint.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub collective_timeout: u64,
}

/// `--workers N`: this same command line, minus `--workers`, as N worker processes.
fn launch_workers(workers: usize, threads: Option<usize>) -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let mut worker_args = Vec::new();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--workers" || text == "--threads-per-worker" {
            args.next();
        } else if !(text.starts_with("--workers=") || text.starts_with("--threads-per-worker=")) {
            worker_args.push(arg);
        }
    }
    // Ctrl-C reaches the workers (they stop after the same step, with a checkpoint); this
    // process must outlive them to stop the orchestrator, so it only notes the signal.
    pretrain::train::stop_on_ctrl_c().context("installing the Ctrl-C handler")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let launch = pretrain::train::launch::LocalWorkers {
        workers,
        program: std::env::current_exe().context("locating this program")?,
        worker_args,
        orchestrator_args: vec!["orchestrator".into()],
        threads_per_worker: threads.unwrap_or((cores / workers).max(1)),
    };
    Ok(launch.run()?)
}

#[allow(clippy::too_many_arguments)]
pub fn pretrain(
    name: Option<&str>,
    kind: BackendKind,
    steps: Option<usize>,
    epochs: Option<usize>,
    seed: Option<u64>,
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    init_from: Option<PathBuf>,
    quiet: bool,
    parallel: &ParallelArgs,
) -> Result<()> {
    if let Some(workers) = parallel.workers {
        return launch_workers(workers as usize, parallel.threads_per_worker);
    }
    let parallel = match (
        parallel.node_rank,
        parallel.nodes,
        &parallel.orchestrator,
        &parallel.node_address,
    ) {
        (Some(rank), Some(nodes), Some(orchestrator), Some(address)) => Some(
            pretrain::train::DataParallel::node(rank, nodes, orchestrator, address)?
                .with_timeout(std::time::Duration::from_secs(parallel.collective_timeout)),
        ),
        _ => None,
    };
    let leader = parallel.as_ref().is_none_or(|p| p.is_leader());
    // A named recipe on a resume is compared with the saved one by `run_pretrain` (its steps
    // are the saved run's unless --steps says otherwise).
    let mut recipe = match (&resume, name) {
        (Some(dir), Some(name)) => {
            let mut asked = Recipe::load(name)?;
            asked.train.steps = recipe_of_run(dir)?.train.steps;
            asked
        }
        (Some(dir), None) => recipe_of_run(dir)?,
        (None, Some(name)) => Recipe::load(name)?,
        (None, None) => bail!("give a recipe (a built-in name or a file), or --resume RUN_DIR"),
    };
    if let Some(seed) = seed {
        recipe.seed = seed;
    }
    if let Some(steps) = steps {
        recipe.train.steps = steps;
    }
    if init_from.is_some() {
        recipe.model.init_from = init_from;
    }
    let out = resume
        .clone()
        .or(out)
        .unwrap_or_else(|| PathBuf::from("target/runs").join(&recipe.name));
    let options = PretrainOptions {
        out,
        resume: resume.is_some(),
        quiet,
        stop: Some(pretrain::train::stop_on_ctrl_c().context("installing the Ctrl-C handler")?),
        epochs,
        stop_after: None,
        parallel,
    };
    let summary = pretrain_recipes::run_pretrain(&recipe, kind, &options)?;
    if !leader {
        return Ok(());
    }
    println!(
        "{}: {} steps on {} in {:.1} s, loss {:.4} -> {:.4}{}; run directory {}",
        summary.recipe,
        summary.steps_done,
        summary.backend,
        summary.seconds,
        summary.loss_start_end.0,
        summary.loss_start_end.1,
        if summary.finished {
            ""
        } else {
            " (stopped; --resume continues)"
        },
        summary.run_dir.display()
    );
    if let Some(held) = &summary.heldout {
        let baselines: Vec<String> = held
            .baselines
            .iter()
            .map(|(name, bpb)| format!("{name} {bpb:.3}"))
            .collect();
        println!(
            "held-out bits per byte ({} tokens): model {:.3}; {}",
            held.tokens,
            held.model_bits_per_byte,
            baselines.join(", ")
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn finetune(
    name: &str,
    from: Option<PathBuf>,
    kind: BackendKind,
    strategies: &[String],
    labels_per_class: &[usize],
    seeds: Option<usize>,
    out: Option<PathBuf>,
    quiet: bool,
) -> Result<()> {
    let recipe = match &from {
        Some(dir) => recipe_of_run(dir)?,
        None => Recipe::load(name)?,
    };
    let out = out.unwrap_or_else(|| match &from {
        Some(dir) => dir.join("finetune"),
        None => PathBuf::from("target/finetune").join(&recipe.name),
    });
    // A causal LM with a [few_shot] section is prompted, unless strategies are asked for.
    if let Some(dir) = &from
        && recipe.objective.kind == ObjectiveKind::Clm
        && recipe.few_shot.is_some()
        && strategies.is_empty()
    {
        let report = pretrain_recipes::few_shot::run_few_shot(dir, kind, &out)?;
        println!(
            "few-shot prompting on {} ({} test texts, majority class {:.1}%)",
            report.dataset,
            report.queries,
            100.0 * report.majority
        );
        println!("{:>6} {:>12}  accuracy (%)", "shots", "text tokens");
        for row in &report.rows {
            println!("{:>6} {:>12}  {}", row.shots, row.text_tokens, row.cell());
        }
        println!("Report written to {}", out.join(FEW_SHOT_FILE).display());
        return Ok(());
    }
    let mut evaluate = recipe.evaluate.clone();
    if !strategies.is_empty() {
        evaluate.strategies = pretrain_recipes::finetune::parse_strategies(strategies)?;
    }
    if !labels_per_class.is_empty() {
        evaluate.all_labels = labels_per_class.contains(&0);
        evaluate.labels_per_class = labels_per_class
            .iter()
            .copied()
            .filter(|&k| k > 0)
            .collect();
    }
    if let Some(seeds) = seeds {
        evaluate.seeds = seeds;
    }
    let options = FinetuneOptions {
        from,
        out: out.clone(),
        quiet,
    };
    let reports = pretrain_recipes::run_finetune(&recipe, &evaluate, kind, &options)?;
    println!(
        "{:<14} {:>8} {:>10} {:>8} {:>12}",
        "strategy", "labels", "accuracy", "std", "trainable"
    );
    for r in &reports {
        let labels = r
            .labels_per_class
            .map_or("all".to_string(), |k| k.to_string());
        println!(
            "{:<14} {:>8} {:>9.2}% {:>7.2} {:>11.1}%",
            r.strategy,
            labels,
            100.0 * r.accuracy_mean,
            100.0 * r.accuracy_std,
            100.0 * r.trainable_share
        );
    }
    println!("Reports written to {}", out.display());
    Ok(())
}

pub fn demo(
    backend: BackendKind,
    quick: bool,
    recipes: Vec<String>,
    seeds: Option<usize>,
    out: PathBuf,
    quiet: bool,
) -> Result<()> {
    if !quick {
        // The data sets the recipes name that are obtained rather than shipped.
        let mut needed: Vec<String> = Vec::new();
        for name in &recipes {
            let recipe = Recipe::load(name)?;
            let few_shot = recipe.few_shot.and_then(|f| f.dataset);
            for dataset in recipe.data.dataset.into_iter().chain(few_shot) {
                let name = dataset.to_string();
                if dataset.is_obtained() && !needed.contains(&name) {
                    needed.push(name);
                }
            }
        }
        if !needed.is_empty() {
            crate::data::obtain(&needed)?;
        }
    }
    let config = DemoConfig {
        backend,
        quick,
        recipes,
        seeds: seeds.unwrap_or(if quick { 1 } else { 3 }),
        out: out.clone(),
        quiet,
    };
    let report = pretrain_demo::run_demo(&config)?;
    println!("{}", pretrain_demo::markdown(&report));
    println!("Report written to {}", out.join("report.json").display());
    if !pretrain_demo::passed(&report) && !quick {
        bail!(
            "required bars not cleared: {} (report in {})",
            pretrain_demo::failed_bars(&report).join("; "),
            out.display()
        );
    }
    Ok(())
}
