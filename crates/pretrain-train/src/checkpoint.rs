//! Resumable checkpoints: `checkpoints/step-00000050/` holds the objective's weights
//! (safetensors: encoder, heads, EMA targets, queues, batch-norm statistics), the optimizer
//! state and `state.json` (step, counters, the configuration it belongs to). A checkpoint is
//! written into a hidden temporary folder, every file synced, then renamed into place, and only
//! then does `checkpoints/latest` (itself written atomically) point at it: a crash at any moment
//! leaves the previous checkpoint as the latest, intact.

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module, ModuleMapper, Param, ParamId};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use pretrain_models::{load_safetensors, save_safetensors};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::{Result, TrainError, io_error};
use crate::optimizer::EngineOptimizer;

const WEIGHTS: &str = "weights.safetensors";
const OPTIMIZER: &str = "optimizer.bin";
const STATE: &str = "state.json";
const LATEST: &str = "latest";

/// Where a run stands, saved with each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: usize,
    /// Steps skipped by the non-finite guard so far.
    pub skipped_steps: usize,
    /// The objective and model configuration; a resume must match it.
    pub objective_config: serde_json::Value,
    /// Dynamic loss scale (f16 runs).
    #[serde(default)]
    pub loss_scaler: Option<crate::precision::LossScaler>,
}

/// Gives every parameter an id from its position in the module tree, so the same architecture
/// gets the same ids in every process and a saved optimizer state (keyed by id) finds its
/// parameters again after a resume.
pub fn positional_ids<B: Backend, M: Module<B>>(module: M) -> M {
    struct Positional(u64);
    impl<B: Backend> ModuleMapper<B> for Positional {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (_, value, mapper) = param.consume();
            self.0 += 1;
            Param::from_mapped_value(ParamId::from(self.0), value, mapper)
        }
    }
    module.map(&mut Positional(0))
}

/// The checkpoints folder of a run directory.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn step_dir_name(step: usize) -> String {
    format!("step-{step:08}")
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_error(path))
}

/// Writes a checkpoint of `objective`, `optimizer` and `state`, points `latest` at it and
/// deletes all but the newest `keep` checkpoints. Returns its folder.
pub fn save<B: AutodiffBackend, M: AutodiffModule<B>>(
    run_dir: &Path,
    objective: &M,
    optimizer: &EngineOptimizer<B, M>,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&root).map_err(io_error(&root))?;
    let name = step_dir_name(state.step);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io_error(&tmp))?;

    save_safetensors(objective, &tmp.join(WEIGHTS))?;
    let optimizer_bytes = optimizer
        .to_bytes()
        .map_err(|message| TrainError::Checkpoint {
            path: tmp.join(OPTIMIZER),
            message,
        })?;
    std::fs::write(tmp.join(OPTIMIZER), optimizer_bytes).map_err(io_error(tmp.join(OPTIMIZER)))?;
    let state_json = serde_json::to_vec_pretty(state).expect("state serializes");
    std::fs::write(tmp.join(STATE), state_json).map_err(io_error(tmp.join(STATE)))?;
    for file in [WEIGHTS, OPTIMIZER, STATE] {
        sync_file(&tmp.join(file))?;
    }
    sync_file(&tmp)?;

    let dir = root.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io_error(&dir))?;
    sync_file(&root)?;
    write_atomic(&root.join(LATEST), name.as_bytes())?;
    prune(&root, keep, &name)?;
    Ok(dir)
}

/// Deletes checkpoints beyond the newest `keep` (never `current`) and leftovers of writes a
/// crash interrupted.
fn prune(root: &Path, keep: usize, current: &str) -> Result<()> {
    let mut steps = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_error(root))? {
        let entry = entry.map_err(io_error(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".step-") && !name.ends_with(&format!("-{}", std::process::id())) {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name.starts_with("step-") {
            steps.push(name);
        }
    }
    steps.sort();
    let excess = steps.len().saturating_sub(keep.max(1));
    for name in steps.into_iter().take(excess).filter(|n| n != current) {
        let path = root.join(name);
        std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
    }
    Ok(())
}

/// The checkpoint `latest` points at, if the run has one.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let root = checkpoints_dir(run_dir);
    let pointer = root.join(LATEST);
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(io_error(&pointer))?;
    let dir = root.join(name.trim());
    if !dir.is_dir() {
        return Err(TrainError::Checkpoint {
            path: pointer,
            message: format!("points at {}, which does not exist", dir.display()),
        });
    }
    Ok(Some(dir))
}

/// Loads the checkpoint in `dir` into `objective` and `optimizer`, refusing one written for
/// objective configuration (`config`) or whose files are damaged.
pub fn load<B: AutodiffBackend, M: AutodiffModule<B>>(
    dir: &Path,
    objective: M,
    optimizer: EngineOptimizer<B, M>,
    config: &serde_json::Value,
    device: &B::Device,
) -> Result<(M, EngineOptimizer<B, M>, TrainState)> {
    let state_path = dir.join(STATE);
    let bytes = std::fs::read(&state_path).map_err(io_error(&state_path))?;
    let state: TrainState = serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
        path: state_path.clone(),
        message: format!("unreadable: {e}"),
    })?;
    if let Some(difference) = first_difference(&state.objective_config, config, "") {
        return Err(TrainError::Checkpoint {
            path: state_path,
            message: format!(
                "was written by a run with another configuration ({difference}); resume with the \
                 same configuration or start a new run directory"
            ),
        });
    }
    let objective = positional_ids(load_safetensors(objective, &dir.join(WEIGHTS))?);
    let optimizer_path = dir.join(OPTIMIZER);
    let bytes = std::fs::read(&optimizer_path).map_err(io_error(&optimizer_path))?;
    let optimizer =
        optimizer
            .load_bytes(bytes, device)
            .map_err(|message| TrainError::Checkpoint {
                path: optimizer_path,
                message: format!("optimizer state unreadable ({message})"),
            })?;
    Ok((objective, optimizer, state))
}

/// The first path at which two JSON values differ, e.g. `objective.temperature: 0.1 vs 0.2`.
fn first_difference(
    saved: &serde_json::Value,
    now: &serde_json::Value,
    at: &str,
) -> Option<String> {
    use serde_json::Value;
    match (saved, now) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => first_difference(x, y, &path),
                    (x, y) => Some(format!("{path}: {x:?} vs {y:?}")),
                }
            })
        }
        (a, b) if a != b => Some(format!("{at}: checkpoint {a} vs now {b}")),
        _ => None,
    }
}
