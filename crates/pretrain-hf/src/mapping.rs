//! Filling a freshly built model from a checkpoint's tensors through an architecture's name
//! table: every tensor the model has must be found with its shape (or belong to a head the
//! checkpoint's architecture lacks, left at its initialization and reported), and every tensor
//! of the checkpoint must be used.

use pretrain_models::FusedBackend;
use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use pretrain_models::store;

use crate::checkpoint::{self, HfTensor};
use crate::error::{HfError, Result};

/// How a name table marks one of this workspace's tensors that no checkpoint has (a LoRA
/// update, an adapter).
pub(crate) const PRETRAIN_ONLY: &str = "(pretrain-only) ";

/// The refusal to export `name`, a fine-tuning addition `architecture` has no place for
/// (`weights` names the file being written).
pub(crate) fn fine_tuning_addition(weights: &Path, name: &str, architecture: &str) -> HfError {
    HfError::tensor(
        weights,
        name,
        format!(
            "is a fine-tuning addition {architecture} has no place for: merge LoRA into the \
             weights or remove the adapters before exporting"
        ),
    )
}

/// Where one of the model's tensors is in the checkpoint.
pub(crate) struct Source {
    /// The checkpoint's name.
    pub name: String,
    /// Stored transposed there (PyTorch's `nn.Linear` is `[out, in]`, burn's `[in, out]`).
    pub transposed: bool,
    /// The head it belongs to, when a checkpoint may lack that head (then it stays initialized).
    pub optional_head: Option<&'static str>,
}

/// `tensors` named as the bare model names them: `prefix` (where a task class such as
/// `BertForMaskedLM` keeps the base model, `bert.`) removed; other names kept.
pub(crate) fn without_prefix(
    tensors: BTreeMap<String, HfTensor>,
    prefix: &str,
) -> impl Iterator<Item = (String, HfTensor)> {
    tensors
        .into_iter()
        .map(move |(name, t)| match name.strip_prefix(prefix) {
            Some(body) => (body.to_string(), t),
            None => (name, t),
        })
}

/// Refuses, before the model is built, a config whose model is far larger than its weights:
/// `required` parameters (those no checkpoint of the architecture may lack) above four times
/// the values the `tensors` hold plus a million. A config.json of a few bytes must not make the
/// import allocate a model its weights file could never fill; a model near the weights' size
/// is built, and the tensors that differ are then named one by one.
pub(crate) fn check_fits(
    required: u128,
    tensors: &BTreeMap<String, HfTensor>,
    weights: &Path,
    architecture: &str,
) -> Result<()> {
    let held: u128 = tensors.values().map(|t| t.values.len() as u128).sum();
    if required > 4 * held + (1 << 20) {
        return Err(HfError::file(
            weights,
            format!(
                "config.json describes a {architecture} of at least {required} parameters, but \
                 the weights hold {held} values"
            ),
        ));
    }
    Ok(())
}

/// The model's tensors by its own names.
pub(crate) fn model_tensors<B: FusedBackend, M: Module<B>>(
    model: &M,
    path: &Path,
) -> Result<BTreeMap<String, HfTensor>> {
    checkpoint::from_bytes(&store::safetensors_bytes(model, path)?, path)
}

/// `model` with its tensors taken from `tensors` (by `source`, which maps each of the model's
/// names), and the heads left at their initialization because the checkpoint has none of
/// their tensors. `weights` and `architecture` name the file and the model in messages.
pub(crate) fn load_mapped<B: FusedBackend, M: Module<B>>(
    model: M,
    mut tensors: BTreeMap<String, HfTensor>,
    source: impl Fn(&str) -> Source,
    weights: &Path,
    architecture: &str,
) -> Result<(M, Vec<&'static str>)> {
    let expected = model_tensors(&model, weights)?;
    // A head counts as present when any of its tensors is.
    let mut initialized: Vec<&'static str> = Vec::new();
    for name in expected.keys() {
        let src = source(name);
        if let Some(head) = src.optional_head
            && !initialized.contains(&head)
            && !expected
                .keys()
                .map(|n| source(n))
                .any(|s| s.optional_head == Some(head) && tensors.contains_key(&s.name))
        {
            initialized.push(head);
        }
    }
    let mut found = BTreeMap::new();
    for (name, want) in expected {
        let src = source(&name);
        if src.optional_head.is_some_and(|h| initialized.contains(&h)) {
            continue;
        }
        let tensor = tensors.remove(&src.name).ok_or_else(|| {
            HfError::tensor(
                weights,
                &src.name,
                format!(
                    "missing: the config describes a {architecture} that has it (shape {:?})",
                    want.shape
                ),
            )
        })?;
        let tensor = match src.transposed {
            true => tensor.transposed().unwrap_or(tensor),
            false => tensor,
        };
        if tensor.shape != want.shape {
            return Err(HfError::tensor(
                weights,
                &src.name,
                format!(
                    "has shape {:?}, but config.json describes {:?}{}",
                    tensor.shape,
                    want.shape,
                    if src.transposed { " (transposed)" } else { "" }
                ),
            ));
        }
        found.insert(name, tensor);
    }
    if let Some(name) = tensors.keys().next() {
        return Err(HfError::tensor(
            weights,
            name,
            format!("unexpected: not part of a {architecture} this import builds"),
        ));
    }
    // Tensors of the heads left initialized keep their values.
    let keep = model_tensors(&model, weights)?;
    for (name, tensor) in keep {
        found.entry(name).or_insert(tensor);
    }
    let bytes = checkpoint::to_bytes(&found, None, weights)?;
    let model = store::load_safetensors_bytes(model, bytes, weights)?;
    Ok((model, initialized))
}
