//! Saving and loading weights as safetensors, named after the module tree
//! (`blocks.0.attn.query.weight`), so checkpoints move between backends and ecosystems.

use crate::fused::FusedBackend;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::cast::ToElement;
use burn_store::{ModuleSnapshot, SafetensorsStore};

use crate::error::{ModelError, Result};
use crate::path::PathStack;

fn checkpoint_error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Folds pending batch-norm running-statistic updates into their values.
///
/// burn keeps a running statistic's newest update per thread until it is synchronized, and
/// visitors and mappers see the value without it; recording a clone synchronizes the shared
/// state. Call before reading or rewriting running statistics (saving, EMA updates).
pub fn sync_running_stats<B: FusedBackend, M: Module<B>>(model: &M) {
    drop(model.clone().into_record());
}

/// Writes every parameter of `model` to `path` (safetensors), atomically: a temporary file
/// beside it is renamed over `path` once complete.
pub fn save_safetensors<B: FusedBackend, M: Module<B>>(model: &M, path: &Path) -> Result<()> {
    save(model, path, None)
}

/// The safetensors bytes [`save_safetensors`] would write to `path` (named in messages), for a
/// caller that writes (and checksums) them itself.
pub fn safetensors_bytes<B: FusedBackend, M: Module<B>>(model: &M, path: &Path) -> Result<Vec<u8>> {
    sync_running_stats(model);
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| checkpoint_error(path, e.to_string()))?;
    store
        .get_bytes()
        .map_err(|e| checkpoint_error(path, e.to_string()))
}

/// [`save_safetensors`] restricted to the tensors whose path satisfies `keep` (`keep(path,
/// container_path)`), e.g. only the LoRA updates and head of a fine-tuned model.
pub fn save_safetensors_where<B: FusedBackend, M: Module<B>>(
    model: &M,
    path: &Path,
    keep: fn(&str, &str) -> bool,
) -> Result<()> {
    save(model, path, Some(keep))
}

fn save<B: FusedBackend, M: Module<B>>(
    model: &M,
    path: &Path,
    keep: Option<fn(&str, &str) -> bool>,
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    sync_running_stats(model);
    let mut store = SafetensorsStore::from_file(&tmp);
    if let Some(keep) = keep {
        store = store.with_predicate(keep);
    }
    model
        .save_into(&mut store)
        .map_err(|e| checkpoint_error(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| checkpoint_error(path, e.to_string()))
}

/// Loads `path` into `model`, requiring an exact match: every parameter present with its
/// shape, and no tensor left over. The error names the file and the first mismatches.
pub fn load_safetensors<B: FusedBackend, M: Module<B>>(model: M, path: &Path) -> Result<M> {
    load(model, path, None)
}

/// Loads the tensors of `model` whose path satisfies `keep` from `path` (written by
/// [`save_safetensors_where`]); every such tensor must be in the file, and nothing else.
pub fn load_safetensors_where<B: FusedBackend, M: Module<B>>(
    model: M,
    path: &Path,
    keep: fn(&str, &str) -> bool,
) -> Result<M> {
    load(model, path, Some(keep))
}

/// [`load_safetensors`] from the bytes of a safetensors file already read (and checked) by
/// the caller; `path` names it in messages.
pub fn load_safetensors_bytes<B: FusedBackend, M: Module<B>>(
    model: M,
    bytes: Vec<u8>,
    path: &Path,
) -> Result<M> {
    check_float_tensors(&bytes, path)?;
    load_from(model, SafetensorsStore::from_bytes(Some(bytes)), path, None)
}

fn load<B: FusedBackend, M: Module<B>>(
    model: M,
    path: &Path,
    keep: Option<fn(&str, &str) -> bool>,
) -> Result<M> {
    if !path.is_file() {
        return Err(checkpoint_error(path, "no such file"));
    }
    let bytes = std::fs::read(path).map_err(|e| checkpoint_error(path, e.to_string()))?;
    check_float_tensors(&bytes, path)?;
    load_from(model, SafetensorsStore::from_bytes(Some(bytes)), path, keep)
}

/// Refuses a file holding a tensor that is not floating point: every parameter of these
/// models is a float, and burn 0.21 panics while applying an integer or boolean tensor to one
/// (and the unwinding then freed a tensor twice under AddressSanitizer; found by fuzzing
/// adapter files).
fn check_float_tensors(bytes: &[u8], path: &Path) -> Result<()> {
    use safetensors::Dtype;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| checkpoint_error(path, format!("is not a safetensors file ({e})")))?;
    let mut other: Vec<(String, Dtype)> = metadata
        .tensors()
        .into_iter()
        .filter(|(_, info)| {
            !matches!(
                info.dtype,
                Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64
            )
        })
        .map(|(name, info)| (name, info.dtype))
        .collect();
    other.sort_by(|a, b| a.0.cmp(&b.0));
    match other.first() {
        None => Ok(()),
        Some((name, dtype)) => Err(checkpoint_error(
            path,
            format!(
                "tensor {name} holds {dtype:?} values; the model's parameters are floating point"
            ),
        )),
    }
}

fn load_from<B: FusedBackend, M: Module<B>>(
    mut model: M,
    store: SafetensorsStore,
    path: &Path,
    keep: Option<fn(&str, &str) -> bool>,
) -> Result<M> {
    let mut store = store.validate(true).allow_partial(true);
    if let Some(keep) = keep {
        store = store.with_predicate(keep);
    }
    let result = model.load_from(&mut store).map_err(|e| {
        checkpoint_error(
            path,
            format!("does not match the model (another architecture or config?): {e}"),
        )
    })?;
    let wanted = |p: &str, container: &str| keep.is_none_or(|keep| keep(p, container));
    let mut problems: Vec<String> = result
        .errors
        .iter()
        .take(3)
        .map(|e| format!("{e:?}"))
        .collect();
    let missing: Vec<&String> = result
        .missing
        .iter()
        .filter(|(p, c)| wanted(p, c))
        .map(|(p, _)| p)
        .collect();
    problems.extend(
        missing
            .iter()
            .take(3)
            .map(|p| format!("missing tensor {p}")),
    );
    problems.extend(
        result
            .unused
            .iter()
            .take(3)
            .map(|p| format!("unexpected tensor {p}")),
    );
    if !problems.is_empty() {
        let total = result.errors.len() + missing.len() + result.unused.len();
        return Err(checkpoint_error(
            path,
            format!(
                "does not match the model ({total} problems; is it another architecture or config?): {}",
                problems.join("; ")
            ),
        ));
    }
    if let Some(name) = first_non_finite(&model) {
        return Err(checkpoint_error(
            path,
            format!("tensor {name} holds NaN or infinite values; refusing to load it"),
        ));
    }
    Ok(model)
}

/// The path of the first parameter of `model` holding a NaN or an infinity, if any: such a
/// file is damaged or comes from a diverged run, and training on it would only spread NaNs.
pub fn first_non_finite<B: FusedBackend, M: Module<B>>(model: &M) -> Option<String> {
    struct Finder {
        path: PathStack,
        found: Option<String>,
    }
    impl<B: FusedBackend> ModuleVisitor<B> for Finder {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.found.is_some() {
                return;
            }
            if !param.val().is_finite().all().into_scalar().to_bool() {
                self.found = Some(self.path.path());
            }
        }
    }
    let mut finder = Finder {
        path: PathStack::default(),
        found: None,
    };
    model.visit(&mut finder);
    finder.found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::host_random;
    use crate::init::init_seeded;
    use crate::vit::VitConfig;
    use burn::tensor::{Distribution, Tensor};

    use crate::testing::TestBackend as B;

    #[test]
    fn round_trip_gives_equal_outputs_and_mismatches_are_named() {
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vit.safetensors");
        let config = VitConfig::new(8, 4, 1, 16, 2, 2);
        let model = init_seeded(&dev, 1001, || config.init::<B>(&dev).unwrap());
        save_safetensors(&model, &path).unwrap();
        let fresh = init_seeded(&dev, 1002, || config.init::<B>(&dev).unwrap());
        let images = host_random::<B, 4>([2, 1, 8, 8], Distribution::Default, 1, &dev);
        let loaded = load_safetensors(fresh, &path).unwrap();
        let diff: f32 = (loaded.forward_features(images.clone()) - model.forward_features(images))
            .abs()
            .max()
            .into_scalar();
        assert_eq!(diff, 0.0);

        let other = init_seeded(&dev, 1003, || {
            VitConfig::new(8, 4, 1, 16, 3, 2).init::<B>(&dev).unwrap()
        });
        let err = load_safetensors(other, &path).unwrap_err().to_string();
        assert!(
            err.contains("vit.safetensors") && err.contains("missing tensor blocks.2"),
            "{err}"
        );
        let wider = init_seeded(&dev, 1004, || {
            VitConfig::new(8, 4, 1, 32, 2, 2).init::<B>(&dev).unwrap()
        });
        let err = load_safetensors(wider, &path).unwrap_err().to_string();
        assert!(err.contains("Shape"), "{err}");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load_safetensors(config.init::<B>(&dev).unwrap(), &path).is_err());
    }

    #[test]
    fn weights_holding_nan_are_refused_naming_the_tensor() {
        struct Poison;
        impl burn::module::ModuleMapper<B> for Poison {
            fn map_float<const D: usize>(
                &mut self,
                param: Param<Tensor<B, D>>,
            ) -> Param<Tensor<B, D>> {
                param.map(|t| t.div_scalar(0.0))
            }
        }
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nan.safetensors");
        let config = VitConfig::new(8, 4, 1, 16, 2, 2);
        let model = init_seeded(&dev, 1005, || config.init::<B>(&dev).unwrap());
        save_safetensors(&model, &path).unwrap();
        assert!(load_safetensors(config.init::<B>(&dev).unwrap(), &path).is_ok());
        save_safetensors(&model.map(&mut Poison), &path).unwrap();
        let err = load_safetensors(config.init::<B>(&dev).unwrap(), &path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nan.safetensors") && err.contains("NaN") && err.contains('.'),
            "{err}"
        );
    }

    #[test]
    fn integer_tensors_are_refused_naming_them_before_burn_sees_them() {
        use safetensors::tensor::{Dtype, TensorView};
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ints.safetensors");
        let config = VitConfig::new(8, 4, 1, 16, 2, 2);
        save_safetensors(&config.init::<B>(&dev).unwrap(), &path).unwrap();
        // The same file with one parameter's dtype turned into I32 (same byte size).
        let bytes = std::fs::read(&path).unwrap();
        let loaded = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let views: Vec<(String, TensorView)> = loaded
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let dtype = if name == "cls_token" {
                    Dtype::I32
                } else {
                    view.dtype()
                };
                let view = TensorView::new(dtype, view.shape().to_vec(), view.data()).unwrap();
                (name, view)
            })
            .collect();
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let err = load_safetensors(config.init::<B>(&dev).unwrap(), &path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ints.safetensors") && err.contains("cls_token") && err.contains("I32"),
            "{err}"
        );
    }
}
