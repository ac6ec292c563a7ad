//! The engine on real shipped data (Fashion-MNIST sample), Flex backend: exact resume,
//! clipping against an exploding learning rate, accumulation, crash-safe checkpoints, clear
//! errors for damaged or foreign checkpoints, and the run directory's contents.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataset::InMemDataset;
use burn::module::Module;
use pretrain_data::ImageItem;
use pretrain_data::augment::{AugmentedDataset, MultiView, Normalize, Pipeline};
use pretrain_data::batch::ViewsBatcher;
use pretrain_data::samples;
use pretrain_models::init::init_seeded;
use pretrain_models::{
    AutoencoderConfig, ImageEncoderConfig, MlpAutoencoderConfig, SmallCnnConfig,
};
use pretrain_objectives::{
    ByolConfig, Denoising, DenoisingConfig, MomentumSchedule, Objective, ReconstructionLoss,
};

use crate::checkpoint::{self, positional_ids};
use crate::{LrSchedule, OptimizerConfig, Pretrainer, RunOptions, TrainConfig, TrainError};

use crate::testing::TestAutodiff as Ad;
type Views = AugmentedDataset<InMemDataset<ImageItem>>;

fn views(pipeline: Pipeline, corrupt: bool) -> Views {
    let images = InMemDataset::new(samples::fashion_mnist().unwrap());
    let views = if corrupt {
        DenoisingConfig::new(dae_config()).views(pipeline)
    } else {
        MultiView::two_views(pipeline)
    };
    AugmentedDataset::new(images, views, 11).unwrap()
}

fn dae_config() -> AutoencoderConfig {
    AutoencoderConfig::Mlp(MlpAutoencoderConfig::new(784, vec![32], 8))
}

/// A seeded, fully initialized objective, so two runs can start from identical copies.
fn seeded<M: Module<Ad>>(build: impl FnOnce() -> M) -> M {
    init_seeded(&Default::default(), 7, build)
}

fn dae() -> Denoising<Ad> {
    seeded(|| {
        DenoisingConfig::new(dae_config())
            .with_loss(ReconstructionLoss::Mse)
            .init(&Default::default())
            .unwrap()
    })
}

/// The objective and state of `dir`'s latest complete checkpoint, loaded into a fresh [`dae`]
/// with `config`'s optimizer; fails the test when there is none or it does not load.
fn load_latest_dae(dir: &Path, config: &TrainConfig) -> (Denoising<Ad>, checkpoint::TrainState) {
    let latest = checkpoint::latest(dir)
        .unwrap()
        .expect("a complete checkpoint");
    let optimizer = config.optimizer.build::<Ad, Denoising<Ad>>(None);
    let json = serde_json::json!({"objective": "dae"});
    let (objective, _, state) =
        checkpoint::load(&latest, dae(), optimizer, &json, &Default::default()).unwrap();
    (objective, state)
}

fn quiet() -> RunOptions {
    RunOptions {
        quiet: true,
        ..Default::default()
    }
}

fn run_dae(
    objective: Denoising<Ad>,
    config: &TrainConfig,
    dir: &Path,
    options: &RunOptions,
) -> crate::Result<crate::TrainOutcome<Denoising<Ad>>> {
    Pretrainer::new(objective, views(Pipeline::default(), true), ViewsBatcher)
        .config(config)
        .objective_config(&serde_json::json!({"objective": "dae"}))
        .run_dir(dir)
        .options(options.clone())
        .run(&Default::default())
}

/// A finished denoising run of `steps` steps (batches of 16, a checkpoint every
/// `checkpoint_every`) in a fresh directory, with its configuration.
fn finished_dae_run(steps: usize, checkpoint_every: usize) -> (TrainConfig, tempfile::TempDir) {
    let config = TrainConfig {
        steps,
        batch_size: 16,
        checkpoint_every,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    run_dae(dae(), &config, dir.path(), &quiet()).unwrap();
    (config, dir)
}

fn weights<M: Module<Ad>>(m: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl burn::module::ModuleVisitor<Ad> for Collect {
        fn visit_float<const D: usize>(
            &mut self,
            p: &burn::module::Param<burn::tensor::Tensor<Ad, D>>,
        ) {
            self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

#[test]
fn resumed_run_matches_the_uninterrupted_run_bitwise() {
    // BYOL: batch norm statistics, an EMA target, Adam moments and the cosine schedules must
    // all be restored for the curves to match.
    let config_json = serde_json::json!({"objective": "byol-test"});
    // Built anew for each run: clones would share batch-norm statistics.
    let byol = || {
        seeded(|| {
            let encoder = ImageEncoderConfig::SmallCnn(SmallCnnConfig::new(1, vec![4, 8]));
            ByolConfig::byol(encoder, 16, 8)
                .with_momentum(MomentumSchedule::new().with_base(0.9))
                .init::<Ad>(&Default::default())
                .unwrap()
        })
    };
    let config = TrainConfig {
        steps: 12,
        batch_size: 16,
        checkpoint_every: 3,
        schedule: LrSchedule::WarmupCosine {
            warmup_steps: 2,
            min_lr_ratio: 0.0,
        },
        ..Default::default()
    };
    let data = || views(Pipeline::simclr(28, Normalize::fashion_mnist()), false);
    let run = |dir: &Path, options: &RunOptions, objective| {
        Pretrainer::new(objective, data(), ViewsBatcher)
            .config(&config)
            .objective_config(&config_json)
            .run_dir(dir)
            .options(options.clone())
            .run(&Default::default())
            .unwrap()
    };
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = run(whole_dir.path(), &quiet(), byol());
    assert!(whole.finished);

    let split_dir = tempfile::tempdir().unwrap();
    let first = run(
        split_dir.path(),
        &RunOptions {
            stop_after: Some(5),
            ..quiet()
        },
        byol(),
    );
    assert!(!first.finished);
    assert_eq!(first.steps_done, 5);
    // A fresh objective: everything must come from the checkpoint.
    let fresh = {
        let encoder = ImageEncoderConfig::SmallCnn(SmallCnnConfig::new(1, vec![4, 8]));
        ByolConfig::byol(encoder, 16, 8)
            .with_momentum(MomentumSchedule::new().with_base(0.9))
            .init::<Ad>(&Default::default())
            .unwrap()
    };
    let second = run(
        split_dir.path(),
        &RunOptions {
            resume: true,
            ..quiet()
        },
        fresh,
    );
    assert!(second.finished);
    let resumed: Vec<f64> = first.losses.iter().chain(&second.losses).copied().collect();
    assert_eq!(resumed, whole.losses, "loss curves differ");
    assert_eq!(weights(&second.objective), weights(&whole.objective));

    let lines = std::fs::read_to_string(split_dir.path().join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<u64>>());
}

#[test]
fn clipping_keeps_an_exploding_learning_rate_finite_and_the_guard_stops_the_unclipped_run() {
    let config = TrainConfig {
        steps: 40,
        batch_size: 16,
        lr: 20.0,
        schedule: LrSchedule::Constant { warmup_steps: 0 },
        optimizer: OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        },
        max_bad_steps: 3,
        checkpoint_every: 1,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = run_dae(dae(), &config, dir.path(), &quiet()).unwrap_err();
    let TrainError::Diverged {
        bad_steps,
        last_checkpoint,
        ..
    } = &err
    else {
        panic!("expected divergence, got {err}");
    };
    assert_eq!(*bad_steps, 3);
    assert!(err.to_string().contains("gradient clipping"), "{err}");
    // The last good checkpoint is named and still loads.
    let last = last_checkpoint.as_ref().expect("a checkpoint is named");
    assert!(
        err.to_string().contains(&last.display().to_string()),
        "{err}"
    );
    let optimizer = config.optimizer.build::<Ad, Denoising<Ad>>(None);
    checkpoint::load(
        last,
        positional_ids(dae()),
        optimizer,
        &serde_json::json!({"objective": "dae"}),
        &Default::default(),
    )
    .unwrap();

    // Diverging before the first checkpoint says so rather than naming none.
    let early = TrainConfig {
        checkpoint_every: 1000,
        ..config.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let err = run_dae(dae(), &early, dir.path(), &quiet()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            TrainError::Diverged {
                last_checkpoint: None,
                ..
            }
        ) && message.contains("before its first checkpoint")
            && !message.contains("None"),
        "{message}"
    );

    let clipped = TrainConfig {
        clip_grad_norm: Some(1.0),
        ..config
    };
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_dae(dae(), &clipped, dir.path(), &quiet()).unwrap();
    assert!(
        outcome.losses.iter().all(|l| l.is_finite()),
        "{:?}",
        outcome.losses
    );
    assert_eq!(outcome.skipped_steps, 0);
}

#[test]
fn four_micro_batches_of_8_match_one_batch_of_32() {
    let sgd = OptimizerConfig::Sgd {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 1e-4,
    };
    let base = TrainConfig {
        steps: 5,
        lr: 0.05,
        optimizer: sgd,
        ..Default::default()
    };
    let big = TrainConfig {
        batch_size: 32,
        ..base.clone()
    };
    let small = TrainConfig {
        batch_size: 8,
        accumulation: 4,
        ..base
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = run_dae(dae(), &big, a.path(), &quiet()).unwrap();
    let four = run_dae(dae(), &small, b.path(), &quiet()).unwrap();
    for (x, y) in one.losses.iter().zip(&four.losses) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    let worst = weights(&one.objective)
        .iter()
        .zip(weights(&four.objective))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "weights differ by {worst}");
}

#[test]
fn run_directory_holds_config_metrics_checkpoints_and_encoder() {
    let config = TrainConfig {
        steps: 6,
        batch_size: 16,
        checkpoint_every: 2,
        keep_checkpoints: 2,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_dae(dae(), &config, dir.path(), &quiet()).unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["train"]["steps"], 6);
    assert_eq!(saved["objective"]["objective"], "dae");
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    for field in [
        "step",
        "epoch",
        "loss",
        "lr",
        "grad_norm",
        "samples_per_sec",
        "embedding_std",
    ] {
        assert!(last[field].is_number(), "{field} missing from {last}");
    }
    assert_eq!(lines.lines().count(), 6);
    let mut kept: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, ["latest", "step-00000004", "step-00000006"]);
    let encoder = pretrain_models::load_safetensors(
        dae_config().init::<Ad>(&Default::default()).unwrap(),
        &dir.path().join("encoder.safetensors"),
    )
    .unwrap();
    assert_eq!(weights(&encoder), weights(outcome.objective.encoder()));
}

#[test]
fn damaged_or_foreign_checkpoints_are_refused_by_name() {
    let (config, dir) = finished_dae_run(2, 500);
    let latest = checkpoint::latest(dir.path()).unwrap().unwrap();
    let optimizer = || config.optimizer.build::<Ad, Denoising<Ad>>(None);
    let json = serde_json::json!({"objective": "dae"});

    // Another configuration.
    let other = serde_json::json!({"objective": "dae", "latent": 16});
    let err = checkpoint::load(&latest, dae(), optimizer(), &other, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("state.json") && err.contains("latent"),
        "{err}"
    );

    // Another architecture under the same configuration name.
    let wider = DenoisingConfig::new(AutoencoderConfig::Mlp(MlpAutoencoderConfig::new(
        784,
        vec![64],
        8,
    )))
    .init::<Ad>(&Default::default())
    .unwrap();
    let err = checkpoint::load(
        &latest,
        wider,
        config.optimizer.build::<Ad, Denoising<Ad>>(None),
        &json,
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("weights.safetensors") && err.contains("does not match"),
        "{err}"
    );

    // A truncated weights file.
    let weights_file = latest.join("weights.safetensors");
    let bytes = std::fs::read(&weights_file).unwrap();
    std::fs::write(&weights_file, &bytes[..bytes.len() / 2]).unwrap();
    let err = checkpoint::load(&latest, dae(), optimizer(), &json, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("weights.safetensors"), "{err}");
    std::fs::write(&weights_file, &bytes).unwrap();

    // An empty or truncated optimizer state: refused by its digest, no panic in the recorder.
    let file = latest.join("optimizer.bin");
    let bytes = std::fs::read(&file).unwrap();
    for damaged in [Vec::new(), bytes[..bytes.len() / 3].to_vec()] {
        std::fs::write(&file, &damaged).unwrap();
        let err = checkpoint::load(&latest, dae(), optimizer(), &json, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("optimizer.bin") && err.contains("damaged"),
            "{err}"
        );
    }
}

#[test]
fn a_kill_during_checkpoint_writes_leaves_the_previous_checkpoint_loadable() {
    const CHILD: &str = "PRETRAIN_CHECKPOINT_WRITER_DIR";
    let json = serde_json::json!({"objective": "dae"});
    let config = TrainConfig::default();
    if let Ok(dir) = std::env::var(CHILD) {
        // Child: write checkpoints of a changing model back to back until killed.
        let mut objective = positional_ids(dae());
        let optimizer = config.optimizer.build::<Ad, Denoising<Ad>>(None);
        for step in 1.. {
            let state = checkpoint::TrainState {
                step,
                skipped_steps: 0,
                objective_config: json.clone(),
                loss_scaler: None,
                recent_losses: Vec::new(),
            };
            checkpoint::save(Path::new(&dir), &objective, &optimizer, &state, 2).unwrap();
            objective = objective.map(&mut Shift);
        }
        unreachable!();
    }
    let dir = tempfile::tempdir().unwrap();
    for round in 0..4u64 {
        let mut child = spawn_child(
            "a_kill_during_checkpoint_writes_leaves_the_previous_checkpoint_loadable",
            CHILD,
            dir.path(),
        );
        std::thread::sleep(std::time::Duration::from_millis(700 + 170 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (_, state) = load_latest_dae(dir.path(), &config);
        assert!(state.step >= 1);
    }
}

/// This test binary running only the test `name` of this module, with `env` set to `dir`
/// (the test's child-process branch), its output discarded.
fn spawn_child(name: &str, env: &str, dir: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("engine_tests::{name}"), "--nocapture"])
        .env(env, dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Moves every parameter a little, so successive checkpoints differ.
struct Shift;

impl burn::module::ModuleMapper<Ad> for Shift {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::tensor::Tensor<Ad, D>>,
    ) -> burn::module::Param<burn::tensor::Tensor<Ad, D>> {
        param.map(|t| t.add_scalar(1e-3))
    }
}

#[test]
fn a_stop_signal_ends_the_run_with_a_checkpoint() {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let config = TrainConfig {
        steps: 50,
        batch_size: 16,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        stop: Some(stop),
        ..quiet()
    };
    let outcome = run_dae(dae(), &config, dir.path(), &options).unwrap();
    assert!(!outcome.finished);
    assert_eq!(outcome.steps_done, 1);
    assert!(outcome.checkpoint.unwrap().ends_with("step-00000001"));
    let bad = TrainConfig { lr: -1.0, ..config };
    let err = run_dae(dae(), &bad, dir.path(), &quiet())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr"), "{err}");
}

#[test]
fn ctrl_c_stops_a_run_with_a_checkpoint() {
    const CHILD: &str = "PRETRAIN_CTRL_C_RUN_DIR";
    let config = TrainConfig {
        steps: 100_000,
        batch_size: 16,
        checkpoint_every: 100_000,
        ..Default::default()
    };
    if let Ok(dir) = std::env::var(CHILD) {
        let options = RunOptions {
            stop: Some(crate::stop_on_ctrl_c().unwrap()),
            ..quiet()
        };
        let outcome = run_dae(dae(), &config, Path::new(&dir), &options).unwrap();
        assert!(!outcome.finished);
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child("ctrl_c_stops_a_run_with_a_checkpoint", CHILD, dir.path());
    // Wait until training runs (metrics appear), then interrupt.
    let metrics = dir.path().join("metrics.jsonl");
    let started = std::time::Instant::now();
    while std::fs::metadata(&metrics).map_or(true, |m| m.len() == 0) {
        assert!(
            started.elapsed().as_secs() < 60,
            "the child never started training"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "child exited with {status}");
    let (_, state) = load_latest_dae(dir.path(), &config);
    assert!(state.step >= 1 && state.step < config.steps);
}

#[test]
fn resuming_a_finished_run_is_refused_and_leaves_its_files_alone() {
    let (config, dir) = finished_dae_run(2, 500);
    let encoder = dir.path().join("encoder.safetensors");
    let before = std::fs::metadata(&encoder).unwrap().modified().unwrap();
    let metrics = std::fs::read(dir.path().join("metrics.jsonl")).unwrap();
    let resume = RunOptions {
        resume: true,
        ..quiet()
    };
    for steps in [1, 2] {
        let asked = TrainConfig {
            steps,
            ..config.clone()
        };
        let err = run_dae(dae(), &asked, dir.path(), &resume).unwrap_err();
        assert!(
            matches!(err, TrainError::AlreadyDone { done: 2, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("already completed 2 steps"),
            "{err}"
        );
    }
    assert_eq!(
        std::fs::metadata(&encoder).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(dir.path().join("metrics.jsonl")).unwrap(),
        metrics
    );
}

#[test]
fn resume_keeps_undecodable_metrics_lines_and_drops_a_torn_last_line() {
    let config = TrainConfig {
        steps: 4,
        batch_size: 16,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let stop = RunOptions {
        stop_after: Some(2),
        ..quiet()
    };
    run_dae(dae(), &config, dir.path(), &stop).unwrap();
    let path = dir.path().join("metrics.jsonl");
    let original = std::fs::read(&path).unwrap();
    let first_end = original.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut damaged = original[..first_end].to_vec();
    damaged.extend_from_slice(b"\xff\xfe not json\n");
    damaged.extend_from_slice(&original[first_end..]);
    damaged.extend_from_slice(br#"{"step": 3, "lo"#);
    std::fs::write(&path, &damaged).unwrap();
    let resume = RunOptions {
        resume: true,
        ..quiet()
    };
    run_dae(dae(), &config, dir.path(), &resume).unwrap();
    let after = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = after
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 5, "{}", String::from_utf8_lossy(&after));
    assert_eq!(lines[1], b"\xff\xfe not json");
    let steps: Vec<u64> = lines
        .iter()
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
}

#[test]
fn latest_falls_back_to_the_newest_complete_checkpoint_when_its_folder_is_gone() {
    let (_, dir) = finished_dae_run(4, 2);
    let root = checkpoint::checkpoints_dir(dir.path());
    std::fs::remove_dir_all(root.join("step-00000004")).unwrap();
    let latest = checkpoint::latest(dir.path()).unwrap().unwrap();
    assert!(latest.ends_with("step-00000002"), "{}", latest.display());
    std::fs::remove_dir_all(root.join("step-00000002")).unwrap();
    let err = checkpoint::latest(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("latest") && err.contains("no other checkpoint"),
        "{err}"
    );
}

#[test]
fn runs_killed_at_twenty_seeded_moments_resume_to_the_uninterrupted_weights() {
    const CHILD: &str = "PRETRAIN_KILLED_RUN_DIR";
    let config = TrainConfig {
        steps: 12,
        batch_size: 16,
        checkpoint_every: 2,
        ..Default::default()
    };
    if let Ok(dir) = std::env::var(CHILD) {
        // Child: the run from its start, until killed.
        run_dae(dae(), &config, Path::new(&dir), &quiet()).unwrap();
        std::process::exit(0);
    }
    let reference_dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let reference = run_dae(dae(), &config, reference_dir.path(), &quiet()).unwrap();
    let run_time = started.elapsed();
    let expected = weights(&reference.objective);
    let mut killed_mid_run = 0;
    for moment in 0..20u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_child(
            "runs_killed_at_twenty_seeded_moments_resume_to_the_uninterrupted_weights",
            CHILD,
            dir.path(),
        );
        // The run has started once its config is written; the kill lands anywhere in the
        // next `run_time` (steps, metrics appends, checkpoint writes), at a seeded moment.
        let config_file = dir.path().join("config.json");
        let waited = std::time::Instant::now();
        while !config_file.exists() {
            assert!(waited.elapsed().as_secs() < 60, "the child never started");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let fraction: f64 = rand::RngExt::random(&mut pretrain_data::rng::item_rng(21, 0, moment));
        std::thread::sleep(run_time.mul_f64(fraction));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        killed_mid_run += usize::from(!status.success());
        let resume = RunOptions {
            resume: true,
            ..quiet()
        };
        let finished = match run_dae(dae(), &config, dir.path(), &resume) {
            Ok(outcome) => outcome.objective,
            // Killed after its last checkpoint: the finished run's weights are in it.
            Err(TrainError::AlreadyDone { .. }) => load_latest_dae(dir.path(), &config).0,
            Err(e) => panic!("moment {moment}: the resume failed: {e}"),
        };
        assert!(
            weights(&finished) == expected,
            "moment {moment}: resumed weights differ from the uninterrupted run's"
        );
        let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        let steps: Vec<u64> = metrics
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, (1..=12).collect::<Vec<u64>>(), "moment {moment}");
    }
    // Most moments fall inside the run (a child slower than the reference can only help).
    assert!(
        killed_mid_run >= 10,
        "only {killed_mid_run} of 20 kills landed mid-run"
    );
}

#[test]
fn a_run_whose_directory_is_removed_stops_naming_it() {
    let config = TrainConfig {
        steps: 2_000,
        batch_size: 16,
        checkpoint_every: 2,
        ..Default::default()
    };
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("run");
    let metrics = dir.join("metrics.jsonl");
    let remover = {
        let (dir, metrics) = (dir.clone(), metrics.clone());
        std::thread::spawn(move || {
            // Once three steps are recorded, the run directory goes (again, should the run
            // be writing a file into it at that moment).
            while std::fs::read_to_string(&metrics).map_or(true, |m| m.lines().count() < 3) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            while dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        })
    };
    let outcome = run_dae(dae(), &config, &dir, &quiet());
    remover.join().unwrap();
    let Err(err) = outcome else {
        panic!("the run finished although its directory was removed");
    };
    let message = err.to_string();
    assert!(
        message.contains(&dir.display().to_string()) && message.contains("removed"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert!(!dir.exists(), "the run directory was made again");
}

/// A tmpfs of `bytes` mounted on a fresh folder, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts it, or says why it cannot (not root, no mount permission).
    fn mount(bytes: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Self { dir })
    }
}

impl SmallDisk {
    /// Remounts it with `options` (`ro`, `rw`).
    fn remount(&self, options: &str) -> Result<(), String> {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.dir.path())
            .status()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("mount -o remount,{options} failed: {status}"))
    }
}

/// A [`SmallDisk`], or `None` after printing why `test` is skipped; under `CI=true` a disk that
/// cannot be mounted fails the test instead (CI runs as root, where mount works).
fn small_disk_or_skip(bytes: usize, test: &str) -> Option<SmallDisk> {
    match SmallDisk::mount(bytes) {
        Ok(disk) => Some(disk),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test} needs a tmpfs under CI=true: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {test} needs a tmpfs ({why})");
            None
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_stops_the_run_naming_the_file_and_the_last_checkpoint_loads() {
    let config = TrainConfig {
        steps: 100,
        batch_size: 16,
        checkpoint_every: 1,
        keep_checkpoints: 2,
        ..Default::default()
    };
    // One checkpoint's size, from a run on the normal disk.
    let (_, sized) = finished_dae_run(1, 1);
    let checkpoint = checkpoint::latest(sized.path()).unwrap().unwrap();
    let one: u64 = std::fs::read_dir(&checkpoint)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // Room for the two kept checkpoints and a little more, not for the third being written.
    let Some(disk) = small_disk_or_skip(one as usize * 5 / 2, "the disk-full test") else {
        return;
    };
    let dir = disk.dir.path().join("run");
    let err = run_dae(dae(), &config, &dir, &quiet()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&dir.display().to_string()) && message.contains("No space left"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    // No partial checkpoint folder is left: only complete steps and the `latest` pointer.
    let left: Vec<String> = std::fs::read_dir(checkpoint::checkpoints_dir(&dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter()
            .all(|name| name == "latest" || name.starts_with("step-")),
        "{left:?}"
    );
    let (_, state) = load_latest_dae(&dir, &config);
    assert!(state.step >= 1, "{}", state.step);
}

#[test]
fn a_read_only_run_directory_stops_the_run_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let (config, dir) = finished_dae_run(2, 1);
    let set_mode = |mode: u32| {
        for path in [
            dir.path().to_path_buf(),
            checkpoint::checkpoints_dir(dir.path()),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    let more = TrainConfig {
        steps: 4,
        ..config.clone()
    };
    let resume = RunOptions {
        resume: true,
        ..quiet()
    };
    set_mode(0o555);
    if std::fs::write(dir.path().join("probe"), b"").is_err() {
        let message = run_dae(dae(), &more, dir.path(), &resume)
            .unwrap_err()
            .to_string();
        set_mode(0o755);
        assert!(
            message.contains(&dir.path().display().to_string()) && message.contains("denied"),
            "{message}"
        );
        load_latest_dae(dir.path(), &config);
        return;
    }
    // Root ignores permissions: the run sits on a tmpfs remounted read-only instead.
    set_mode(0o755);
    let Some(disk) = small_disk_or_skip(64 << 20, "the read-only test (as root)") else {
        return;
    };
    let run_dir = disk.dir.path().join("run");
    run_dae(dae(), &config, &run_dir, &quiet()).unwrap();
    disk.remount("ro").unwrap();
    let message = run_dae(dae(), &more, &run_dir, &resume)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&run_dir.display().to_string()) && message.contains("Read-only"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    load_latest_dae(&run_dir, &config);
}
