//! Data-parallel training on Flex with worker threads (burn-collective's local all-reduce):
//! 2 workers x half the global batch match 1 worker on the whole batch (a denoising
//! autoencoder, and the contrastive objectives over the gathered global batch), checkpoints
//! resume across worker counts, and workers that start apart are refused.

use std::path::Path;
use std::sync::Mutex;

use burn::backend::{Autodiff, Flex};
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use pretrain_data::augment::{AugmentedDataset, MultiView, Normalize, Pipeline};
use pretrain_data::batch::{MultiViewBatch, ViewsBatcher};
use pretrain_data::samples;
use pretrain_models::init::init_seeded;
use pretrain_models::{
    AutoencoderConfig, ImageEncoderConfig, MlpAutoencoderConfig, MlpHeadConfig, VitConfig,
};
use pretrain_objectives::{
    BarlowTwins, BarlowTwinsConfig, Denoising, DenoisingConfig, MoCo, MoCoConfig,
    ReconstructionLoss, SimClr, SimClrConfig, VicReg, VicRegConfig,
};
use pretrain_train::{
    DataParallel, OptimizerConfig, Pretrainer, RunOptions, TrainConfig, TrainObjective,
    TrainOutcome,
};

type Ad = Autodiff<Flex>;

/// burn-collective's local server is one per process and backend: one test at a time.
static COLLECTIVE: Mutex<()> = Mutex::new(());

fn dae_config() -> AutoencoderConfig {
    AutoencoderConfig::Mlp(MlpAutoencoderConfig::new(784, vec![32], 8))
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 32,
        checkpoint_every: 2,
        ..Default::default()
    }
}

/// A seeded objective over two-view batches, with the views it trains on.
trait TwoViewObjective: TrainObjective<Ad, Batch = MultiViewBatch<Ad>> + Send + 'static {
    fn build() -> Self;
    /// SimCLR's augmented pairs, unless the objective needs others.
    fn views() -> MultiView {
        MultiView::two_views(Pipeline::simclr(28, Normalize::fashion_mnist()))
    }
}

impl TwoViewObjective for Denoising<Ad> {
    fn build() -> Self {
        init_seeded(&Default::default(), 7, || {
            DenoisingConfig::new(dae_config())
                .with_loss(ReconstructionLoss::Mse)
                .init(&Default::default())
                .unwrap()
        })
    }
    fn views() -> MultiView {
        DenoisingConfig::new(dae_config()).views(Pipeline::default())
    }
}

/// A ViT (layer norm only: batch norm stays per worker) and a projector without batch norm.
fn vit() -> ImageEncoderConfig {
    ImageEncoderConfig::Vit(VitConfig::new(28, 7, 1, 16, 1, 2))
}

fn projector() -> MlpHeadConfig {
    MlpHeadConfig::new(16, vec![16], 8).with_batch_norm(false)
}

impl TwoViewObjective for SimClr<Ad> {
    fn build() -> Self {
        init_seeded(&Default::default(), 7, || {
            SimClrConfig::new(vit(), projector())
                .init(&Default::default())
                .unwrap()
        })
    }
}

impl TwoViewObjective for VicReg<Ad> {
    fn build() -> Self {
        init_seeded(&Default::default(), 7, || {
            VicRegConfig::new(vit(), projector())
                .init(&Default::default())
                .unwrap()
        })
    }
}

impl TwoViewObjective for BarlowTwins<Ad> {
    fn build() -> Self {
        init_seeded(&Default::default(), 7, || {
            BarlowTwinsConfig::new(vit(), projector())
                .init(&Default::default())
                .unwrap()
        })
    }
}

impl TwoViewObjective for MoCo<Ad> {
    fn build() -> Self {
        init_seeded(&Default::default(), 7, || {
            MoCoConfig::new(vit(), projector())
                .with_queue_size(128)
                .init(&Default::default())
                .unwrap()
        })
    }
}

/// One worker's run (`parallel: None` for a single-worker run) in `dir`.
fn run<O: TwoViewObjective>(
    config: &TrainConfig,
    dir: &Path,
    parallel: Option<DataParallel>,
    resume: bool,
    stop_after: Option<usize>,
) -> TrainOutcome<O> {
    let images = InMemDataset::new(samples::fashion_mnist().unwrap());
    let data = AugmentedDataset::new(images, O::views(), 11).unwrap();
    Pretrainer::new(O::build(), data, ViewsBatcher)
        .config(config)
        .objective_config(&serde_json::json!({"objective": "test"}))
        .run_dir(dir)
        .options(RunOptions {
            quiet: true,
            resume,
            stop_after,
            parallel,
            ..Default::default()
        })
        .run(&Default::default())
        .unwrap()
}

/// `workers` worker threads of one run; returns each worker's outcome, rank order.
fn run_parallel<O: TwoViewObjective>(
    workers: usize,
    config: &TrainConfig,
    dir: &Path,
    resume: bool,
    stop_after: Option<usize>,
) -> Vec<TrainOutcome<O>> {
    let outcomes = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|rank| {
                scope.spawn(move || {
                    let parallel = DataParallel::threads(rank, workers).unwrap();
                    run::<O>(config, dir, Some(parallel), resume, stop_after)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    burn::collective::reset_collective::<Flex>();
    outcomes
}

/// 2 workers on half batches against 1 worker on the whole batch: losses and every weight
/// within 1e-5, and the two workers' weights bitwise equal.
fn check_equivalence<O: TwoViewObjective>(what: &str, config: &TrainConfig) {
    let _serial = COLLECTIVE.lock().unwrap_or_else(|p| p.into_inner());
    let single_dir = tempfile::tempdir().unwrap();
    let single = run::<O>(config, single_dir.path(), None, false, None);
    let dir = tempfile::tempdir().unwrap();
    let workers = run_parallel::<O>(2, config, dir.path(), false, None);
    for (rank, outcome) in workers.iter().enumerate() {
        assert_eq!(outcome.steps_done, 6);
        let loss_gap = relative_gap_f64(&single.losses, &outcome.losses);
        assert!(
            loss_gap < 1e-5,
            "{what} rank {rank}: losses differ by {loss_gap:e}"
        );
        let gap = relative_gap(&weights(&single.objective), &weights(&outcome.objective));
        assert!(gap < 1e-5, "{what} rank {rank}: weights differ by {gap:e}");
    }
    assert_eq!(
        weights(&workers[0].objective),
        weights(&workers[1].objective),
        "{what}"
    );
    // Rank 0 alone wrote the run directory, with the files a single run writes.
    for file in ["config.json", "metrics.jsonl", "encoder.safetensors"] {
        assert!(dir.path().join(file).exists(), "{what}: {file} missing");
    }
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

/// The largest difference relative to the largest magnitude.
fn relative_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn relative_gap_f64(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1e-12))
        .fold(0.0, f64::max)
}

#[test]
fn two_workers_on_half_batches_match_one_worker_on_the_whole_batch() {
    check_equivalence::<Denoising<Ad>>("denoising autoencoder", &config(6));
}

#[test]
fn contrastive_losses_see_the_global_batch() {
    // Negatives (SimCLR) and batch statistics (VICReg, Barlow Twins) over all workers' rows.
    // SGD, not Adam: attention's key biases get a gradient of zero up to rounding (softmax
    // ignores a shift shared by all keys), which Adam would scale up to full-size steps whose
    // sign depends on the order of additions.
    let config = TrainConfig {
        optimizer: OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        },
        lr: 0.05,
        ..config(6)
    };
    check_equivalence::<SimClr<Ad>>("SimCLR", &config);
    check_equivalence::<VicReg<Ad>>("VICReg", &config);
    check_equivalence::<BarlowTwins<Ad>>("Barlow Twins", &config);
    // MoCo: per-query losses, and a queue every worker fills with every worker's keys.
    check_equivalence::<MoCo<Ad>>("MoCo", &config);
}

#[test]
fn checkpoints_resume_across_worker_counts() {
    let _serial = COLLECTIVE.lock().unwrap_or_else(|p| p.into_inner());
    let config = config(6);
    let reference = run::<Denoising<Ad>>(
        &config,
        tempfile::tempdir().unwrap().path(),
        None,
        false,
        None,
    );
    // 2 workers to step 4, then 1 worker to the end.
    let dir = tempfile::tempdir().unwrap();
    run_parallel::<Denoising<Ad>>(2, &config, dir.path(), false, Some(4));
    let resumed = run::<Denoising<Ad>>(&config, dir.path(), None, true, None);
    let gap = relative_gap(&weights(&reference.objective), &weights(&resumed.objective));
    assert!(gap < 1e-5, "2 -> 1 workers: weights differ by {gap:e}");
    // 1 worker to step 4, then 2 workers to the end.
    let dir = tempfile::tempdir().unwrap();
    run::<Denoising<Ad>>(&config, dir.path(), None, false, Some(4));
    let resumed = run_parallel::<Denoising<Ad>>(2, &config, dir.path(), true, None);
    let gap = relative_gap(
        &weights(&reference.objective),
        &weights(&resumed[0].objective),
    );
    assert!(gap < 1e-5, "1 -> 2 workers: weights differ by {gap:e}");
}

#[test]
fn a_batch_that_does_not_split_evenly_is_refused() {
    let config = TrainConfig {
        batch_size: 33,
        ..config(2)
    };
    let dir = tempfile::tempdir().unwrap();
    let images = InMemDataset::new(samples::fashion_mnist().unwrap());
    let data = AugmentedDataset::new(images, Denoising::<Ad>::views(), 11).unwrap();
    let error = Pretrainer::new(Denoising::<Ad>::build(), data, ViewsBatcher)
        .config(&config)
        .run_dir(dir.path())
        .options(RunOptions {
            parallel: Some(DataParallel::threads(0, 2).unwrap()),
            ..Default::default()
        })
        .run(&Default::default())
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("batch_size 33 does not split evenly over 2"),
        "{error}"
    );
}

#[test]
fn workers_that_start_from_different_weights_are_refused() {
    let _serial = COLLECTIVE.lock().unwrap_or_else(|p| p.into_inner());
    let config = config(2);
    let dir = tempfile::tempdir().unwrap();
    let errors: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let (config, dir) = (&config, dir.path());
                scope.spawn(move || {
                    // Rank 1 seeds its initialization differently.
                    let objective = init_seeded(&Default::default(), 7 + rank as u64, || {
                        DenoisingConfig::new(dae_config())
                            .init::<Ad>(&Default::default())
                            .unwrap()
                    });
                    let images = InMemDataset::new(samples::fashion_mnist().unwrap());
                    let data = AugmentedDataset::new(images, Denoising::<Ad>::views(), 11).unwrap();
                    Pretrainer::new(objective, data, ViewsBatcher)
                        .config(config)
                        .run_dir(dir)
                        .options(RunOptions {
                            quiet: true,
                            parallel: Some(DataParallel::threads(rank, 2).unwrap()),
                            ..Default::default()
                        })
                        .run(&Default::default())
                        .unwrap_err()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    burn::collective::reset_collective::<Flex>();
    for (rank, error) in errors.iter().enumerate() {
        assert!(
            error.contains(&format!("data-parallel worker {rank}"))
                && error.contains("start from different weights"),
            "{error}"
        );
    }
}

#[test]
fn batch_norm_stays_per_worker() {
    let _serial = COLLECTIVE.lock().unwrap_or_else(|p| p.into_inner());
    let config = config(3);
    let dir = tempfile::tempdir().unwrap();
    // The projector with batch norm, as the recipes have it.
    let build = || {
        init_seeded(&Default::default(), 7, || {
            SimClrConfig::new(vit(), MlpHeadConfig::new(16, vec![16], 8))
                .init::<Ad>(&Default::default())
                .unwrap()
        })
    };
    let outcomes: Vec<TrainOutcome<SimClr<Ad>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let (config, dir, build) = (&config, dir.path(), &build);
                scope.spawn(move || {
                    let images = InMemDataset::new(samples::fashion_mnist().unwrap());
                    let data = AugmentedDataset::new(images, SimClr::<Ad>::views(), 11).unwrap();
                    Pretrainer::new(build(), data, ViewsBatcher)
                        .config(config)
                        .run_dir(dir)
                        .options(RunOptions {
                            quiet: true,
                            parallel: Some(DataParallel::threads(rank, 2).unwrap()),
                            ..Default::default()
                        })
                        .run(&Default::default())
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    burn::collective::reset_collective::<Flex>();
    // The trained weights agree (gradients are averaged), but each worker's batch-norm
    // statistics are its own slice's. (`weights` visits the running statistics too, so the
    // parts are compared: the encoder, and the projector's linear layers.)
    let trained = |o: &TrainOutcome<SimClr<Ad>>| {
        let branch = &o.objective.branch;
        [weights(&branch.encoder), weights(&branch.projector.layers)].concat()
    };
    assert_eq!(trained(&outcomes[0]), trained(&outcomes[1]));
    let running_mean = |o: &TrainOutcome<SimClr<Ad>>| -> Vec<f32> {
        o.objective.branch.projector.norms[0]
            .running_mean
            .value()
            .into_data()
            .to_vec()
            .unwrap()
    };
    assert_ne!(running_mean(&outcomes[0]), running_mean(&outcomes[1]));
}
