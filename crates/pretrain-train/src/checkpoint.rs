//! Resumable checkpoints: `checkpoints/step-00000050/` holds the objective's weights
//! (safetensors: encoder, heads, EMA targets, queues, batch-norm statistics), the optimizer
//! state and `state.json` (step, counters, the configuration it belongs to). A checkpoint is
//! written into a hidden temporary folder, every file synced, then renamed into place, and only
//! then does `checkpoints/latest` (itself written atomically) point at it: a crash at any moment
//! leaves the previous checkpoint as the latest, intact. `state.json` records the size and
//! SHA-256 of the other files, so a truncated or altered file is refused by name before any
//! decoder reads it.

use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module, ModuleMapper, Param, ParamId};
use burn::tensor::Tensor;
use pretrain_models::{load_safetensors_bytes, safetensors_bytes};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::write_atomic;
use pretrain_data::error::panic_message;

use crate::error::{Result, TrainError, io_error};
use crate::optimizer::EngineOptimizer;

/// A checkpoint's weights: the objective's module (model, heads, targets) as safetensors.
pub const WEIGHTS: &str = "weights.safetensors";
/// The run directory's record of the configuration it trains (`{"train": .., "objective":
/// {"kind": .., "config": ..}}`), rewritten by every start or resume.
pub const RUN_CONFIG: &str = "config.json";
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
    /// Losses of the latest applied steps, the reference of the loss-spike guard (restored so a
    /// resumed run judges spikes as the uninterrupted one would).
    #[serde(default)]
    pub recent_losses: Vec<f64>,
}

/// Size and SHA-256 of a checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileDigest {
    bytes: u64,
    sha256: String,
}

impl FileDigest {
    fn of(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.len() as u64,
            sha256: format!("{:x}", Sha256::digest(bytes)),
        }
    }
}

/// What `state.json` holds: the state and the digests of the checkpoint's other files.
#[derive(Serialize, Deserialize)]
struct StateFile {
    #[serde(flatten)]
    state: TrainState,
    /// Absent in checkpoints written before digests were recorded: their files are not checked.
    #[serde(default)]
    files: BTreeMap<String, FileDigest>,
}

/// Reads `path`, checking it against its recorded digest (when there is one).
fn read_verified(path: &Path, digest: Option<&FileDigest>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    if let Some(expected) = digest
        && FileDigest::of(&bytes) != *expected
    {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "is damaged: {} bytes whose SHA-256 does not match the {} bytes recorded in {STATE}",
                bytes.len(),
                expected.bytes
            ),
        });
    }
    Ok(bytes)
}

/// Gives every parameter an id from its position in the module tree, so the same architecture
/// gets the same ids in every process and a saved optimizer state (keyed by id) finds its
/// parameters again after a resume.
pub fn positional_ids<B: FusedBackend, M: Module<B>>(module: M) -> M {
    struct Positional(u64);
    impl<B: FusedBackend> ModuleMapper<B> for Positional {
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
pub fn save<B: FusedAutodiffBackend, M: AutodiffModule<B>>(
    run_dir: &Path,
    objective: &M,
    optimizer: &EngineOptimizer<B, M>,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    // A run directory removed while training is not made again, and a write that failed
    // because the folder (or the file being written) went says so: the run stops naming it.
    let removed = || {
        io_error(run_dir)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the run directory, or a checkpoint being written in it, was removed while training",
        ))
    };
    if !run_dir.is_dir() {
        return Err(removed());
    }
    save_into(run_dir, objective, optimizer, state, keep).map_err(|e| {
        // Plain and atomic writes alike: a folder that vanished mid-write (also while its
        // removal is still under way, the run directory not yet gone) is the removal.
        let source = match &e {
            TrainError::Io { source, .. } => Some(source),
            TrainError::Write(write) => Some(&write.source),
            _ => None,
        };
        if source.is_some_and(|s| s.kind() == std::io::ErrorKind::NotFound) || !run_dir.is_dir() {
            removed()
        } else {
            e
        }
    })
}

fn save_into<B: FusedAutodiffBackend, M: AutodiffModule<B>>(
    run_dir: &Path,
    objective: &M,
    optimizer: &EngineOptimizer<B, M>,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    // Not `create_dir_all`: a run directory removed meanwhile must not be made again.
    match std::fs::create_dir(&root) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(io_error(&root)(e));
        }
        _ => {}
    }
    let name = step_dir_name(state.step);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io_error(&tmp))?;
    // A failed write (a full disk) leaves no partial folder taking space.
    if let Err(e) = write_files(&tmp, objective, optimizer, state) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }

    let dir = root.join(&name);
    // A folder of this step left by an earlier attempt (a crash after its rename, before
    // `latest` moved) is moved aside, not deleted, until the new one is in place: a kill at
    // any moment leaves a complete folder under the name or beside it.
    let old = root.join(format!(".{name}.old-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(&dir, &old).map_err(io_error(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io_error(&dir))?;
    sync_file(&root)?;
    write_atomic(&root.join(LATEST), name.as_bytes())?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_error(&old))?;
    }
    prune(&root, keep, &name)?;
    Ok(dir)
}

/// Writes the weights, optimizer state and `state.json` (with the digests of the other two)
/// into `tmp`, each synced.
fn write_files<B: FusedAutodiffBackend, M: AutodiffModule<B>>(
    tmp: &Path,
    objective: &M,
    optimizer: &EngineOptimizer<B, M>,
    state: &TrainState,
) -> Result<()> {
    let weights = safetensors_bytes(objective, &tmp.join(WEIGHTS))?;
    std::fs::write(tmp.join(WEIGHTS), &weights).map_err(io_error(tmp.join(WEIGHTS)))?;
    let optimizer_bytes = optimizer
        .to_bytes()
        .map_err(|message| TrainError::Checkpoint {
            path: tmp.join(OPTIMIZER),
            message,
        })?;
    std::fs::write(tmp.join(OPTIMIZER), &optimizer_bytes).map_err(io_error(tmp.join(OPTIMIZER)))?;
    let state_file = StateFile {
        state: state.clone(),
        files: BTreeMap::from([
            (WEIGHTS.to_string(), FileDigest::of(&weights)),
            (OPTIMIZER.to_string(), FileDigest::of(&optimizer_bytes)),
        ]),
    };
    let state_json = serde_json::to_vec_pretty(&state_file).expect("state serializes");
    std::fs::write(tmp.join(STATE), state_json).map_err(io_error(tmp.join(STATE)))?;
    for file in [WEIGHTS, OPTIMIZER, STATE] {
        sync_file(&tmp.join(file))?;
    }
    sync_file(tmp)?;
    Ok(())
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

/// The checkpoint `latest` points at, if the run has one. Should `latest` name a folder that is
/// gone (a crash while a folder of the same step was being replaced), the newest complete
/// `step-*` folder stands in for it.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let root = checkpoints_dir(run_dir);
    let pointer = root.join(LATEST);
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(io_error(&pointer))?;
    let dir = root.join(name.trim());
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    let mut complete: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(io_error(&root))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
                && path.join(STATE).is_file()
        })
        .collect();
    complete.sort();
    match complete.pop() {
        Some(newest) => {
            tracing::warn!(
                pointer = %pointer.display(),
                using = %newest.display(),
                "latest names a missing checkpoint; using the newest complete one"
            );
            Ok(Some(newest))
        }
        None => Err(TrainError::Checkpoint {
            path: pointer,
            message: format!(
                "points at {}, which does not exist, and no other checkpoint is complete",
                dir.display()
            ),
        }),
    }
}

/// Loads the checkpoint in `dir` into `objective` and `optimizer`, refusing one written for
/// objective configuration (`config`) or whose files are damaged.
pub fn load<B: FusedAutodiffBackend, M: AutodiffModule<B>>(
    dir: &Path,
    objective: M,
    optimizer: EngineOptimizer<B, M>,
    config: &serde_json::Value,
    device: &B::Device,
) -> Result<(M, EngineOptimizer<B, M>, TrainState)> {
    let state_path = dir.join(STATE);
    let bytes = std::fs::read(&state_path).map_err(io_error(&state_path))?;
    let StateFile { state, files } =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
            path: state_path.clone(),
            message: format!("unreadable: {e}"),
        })?;
    if let Some(d) = first_difference(&state.objective_config, config) {
        let difference = format!("{}: checkpoint {} vs now {}", d.path, d.saved, d.now);
        return Err(TrainError::Checkpoint {
            path: state_path,
            message: format!(
                "was written by a run with another configuration ({difference}); resume with the \
                 same configuration or start a new run directory"
            ),
        });
    }
    let weights_path = dir.join(WEIGHTS);
    let weights = read_verified(&weights_path, files.get(WEIGHTS))?;
    let objective = positional_ids(load_safetensors_bytes(objective, weights, &weights_path)?);
    let optimizer_path = dir.join(OPTIMIZER);
    let bytes = read_verified(&optimizer_path, files.get(OPTIMIZER))?;
    let unreadable = |message: String| TrainError::Checkpoint {
        path: optimizer_path.clone(),
        message: format!("optimizer state unreadable ({message})"),
    };
    // burn's recorder panics on some malformed inputs (digests catch damage to files written
    // by this engine; this catches hand-made or pre-digest ones): the panic becomes an error.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        optimizer.load_bytes(bytes, device)
    }));
    let optimizer = match loaded {
        Ok(result) => result.map_err(unreadable)?,
        Err(panic) => return Err(unreadable(panic_message(panic.as_ref()))),
    };
    Ok((objective, optimizer, state))
}

/// Where two JSON values first differ: the dotted path and each side's value (`absent` where
/// a key is missing), for the caller to word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonDifference {
    /// Dotted path, e.g. `objective.temperature`.
    pub path: String,
    /// The value on the saved (first) side.
    pub saved: String,
    /// The value on the current (second) side.
    pub now: String,
}

/// The first path, in key order, at which `saved` and `now` differ.
pub fn first_difference(
    saved: &serde_json::Value,
    now: &serde_json::Value,
) -> Option<JsonDifference> {
    difference_at(saved, now, "")
}

fn difference_at(
    saved: &serde_json::Value,
    now: &serde_json::Value,
    at: &str,
) -> Option<JsonDifference> {
    use serde_json::Value;
    let differ = |path: &str, saved: Option<&Value>, now: Option<&Value>| {
        let show = |v: Option<&Value>| v.map_or("absent".into(), Value::to_string);
        Some(JsonDifference {
            path: path.to_string(),
            saved: show(saved),
            now: show(now),
        })
    };
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
                    (Some(x), Some(y)) => difference_at(x, y, &path),
                    (x, y) => differ(&path, x, y),
                }
            })
        }
        (a, b) if a != b => differ(at, Some(a), Some(b)),
        _ => None,
    }
}
