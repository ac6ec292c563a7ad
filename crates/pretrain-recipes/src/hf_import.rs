//! `pretrain import-hf DIR --out RUN_DIR`: a Hugging Face checkpoint made into a run
//! directory, as if this workspace had pre-trained it, so `finetune --from RUN_DIR` (and
//! `export-hf`, `embed`, `generate` where the model has them) work on it.
//!
//! The run directory holds a recipe (a built-in or given one, its model replaced by the
//! checkpoint's configuration as preset overrides), the encoder weights and, for text, the
//! checkpoint's tokenizer.

use pretrain::models::FusedAutodiffBackend;
use std::path::Path;

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::burn::tensor::backend::AutodiffBackend;
use pretrain::data::tokenizer::TextTokenizer;
use pretrain::hf::checkpoint::CONFIG_FILE;
use pretrain::models::{ImageEncoder, save_safetensors};
use pretrain::train::Precision;
use serde::Serialize;
use serde_json::Value;

use crate::data::TOKENIZER_FILE;
use crate::error::{RecipeError, Result};
use crate::models::Preset;
use crate::objective::ObjectiveKind;
use crate::pretrain::{RECIPE_FILE, encoder_weights};
use crate::recipe::Recipe;

/// What `import-hf` made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportSummary {
    /// The checkpoint's model, as read (`BERT`, `GPT-2`, `ViT`, `ViT-MAE encoder`).
    pub architecture: String,
    /// The recipe the run directory holds (its model replaced).
    pub recipe: String,
    /// Checkpoint parts not in the run: heads the recipes here do not use (a pooler, a MAE
    /// decoder, a sequence classifier).
    pub not_imported: Vec<String>,
}

/// The built-in recipe a checkpoint's run directory starts from when none is given: the one
/// that pre-trains its kind of model.
pub fn default_recipe(model_type: &str) -> &'static str {
    match model_type {
        "gpt2" => "clm-shakespeare",
        "vit" | "vit_mae" => "mae-fashion-mnist",
        _ => "mlm-text",
    }
}

/// The `model_type` of the checkpoint in `dir`.
pub fn model_type(dir: &Path) -> Result<String> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| RecipeError::io(&path, e))?;
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| RecipeError::io(&path, format!("is not JSON: {e}")))?;
    config
        .get("model_type")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| RecipeError::io(&path, "has no model_type"))
}

/// Makes `out` a run directory of the checkpoint in `dir`, with `recipe`'s data, objective,
/// training and evaluation settings (its objective must pre-train that kind of model). Refuses
/// an `out` that already holds a run.
pub fn run_import_hf(
    dir: &Path,
    out: &Path,
    recipe: &Recipe,
    backend: BackendKind,
) -> Result<ImportSummary> {
    if out.join(RECIPE_FILE).exists() {
        return Err(RecipeError::io(
            out,
            "already holds a run (recipe.toml); import into a new directory",
        ));
    }
    let kind = model_type(dir)?;
    let wanted = match kind.as_str() {
        "bert" => ObjectiveKind::Mlm,
        "gpt2" => ObjectiveKind::Clm,
        "vit" | "vit_mae" => ObjectiveKind::Mae,
        other => {
            return Err(RecipeError::io(
                &dir.join(CONFIG_FILE),
                format!(
                    "model_type {other:?} is not supported: import-hf reads bert, gpt2, vit and \
                     vit_mae checkpoints"
                ),
            ));
        }
    };
    let image = wanted == ObjectiveKind::Mae;
    let fits = match image {
        true => !recipe.objective.kind.is_text(),
        false => recipe.objective.kind == wanted,
    };
    if !fits {
        return Err(RecipeError::option(
            "--recipe",
            format!(
                "{} is a {} recipe; a {kind} checkpoint needs {}",
                recipe.name,
                recipe.objective.kind,
                match image {
                    true => "an image recipe".to_string(),
                    false => format!("a {wanted} recipe"),
                }
            ),
        ));
    }
    let tokenizer = match image {
        true => None,
        false => Some(TextTokenizer::from_hf_dir(dir)?),
    };
    std::fs::create_dir_all(out).map_err(|e| RecipeError::io(out, e))?;
    let job = Import {
        dir,
        out,
        recipe,
        kind: &kind,
        tokenizer: tokenizer.as_ref(),
    };
    let (summary, run_recipe) = pretrain::dispatch_backend!(backend, Precision::F32, job)??;
    if let Some(tokenizer) = &tokenizer {
        tokenizer.save(&out.join(TOKENIZER_FILE))?;
    }
    // The recipe last: a run directory with a recipe is a complete one.
    let path = out.join(RECIPE_FILE);
    std::fs::write(&path, run_recipe.to_toml()).map_err(|e| RecipeError::io(&path, e))?;
    Ok(summary)
}

/// `config`'s fields as preset overrides: `data_fields` (taken from the data and tokenizer)
/// and unset ones left out.
fn overrides(config: &impl Serialize, data_fields: &[&str]) -> Value {
    let mut value = serde_json::to_value(config).expect("configurations serialize");
    if let Value::Object(fields) = &mut value {
        fields.retain(|name, v| !v.is_null() && !data_fields.contains(&name.as_str()));
    }
    value
}

/// Refuses a tokenizer whose vocabulary is not the model's.
fn check_vocabulary(tokenizer: &TextTokenizer, vocab_size: usize, dir: &Path) -> Result<()> {
    if tokenizer.vocab_size() != vocab_size {
        return Err(RecipeError::io(
            dir,
            format!(
                "its tokenizer has {} tokens but config.json's vocab_size is {vocab_size}: the \
                 run needs the tokenizer the model was trained with",
                tokenizer.vocab_size()
            ),
        ));
    }
    Ok(())
}

struct Import<'a> {
    dir: &'a Path,
    out: &'a Path,
    recipe: &'a Recipe,
    /// The checkpoint's `model_type`.
    kind: &'a str,
    tokenizer: Option<&'a TextTokenizer>,
}

impl BackendTask for Import<'_> {
    /// The summary and the run's recipe.
    type Output = Result<(ImportSummary, Recipe)>;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        type I<B> = <B as AutodiffBackend>::InnerBackend;
        let Import {
            dir,
            out,
            recipe,
            kind,
            tokenizer,
        } = self;
        let weights = encoder_weights(out);
        let mut run = recipe.clone();
        run.description = format!(
            "{} (model imported from {})",
            recipe.description,
            dir.display()
        );
        let max_tokens = |positions: usize| Some(recipe.data.max_tokens().min(positions));
        // Text runs keep the checkpoint's tokenizer: none is trained.
        run.data.tokenizer = None;
        let (architecture, not_imported) = match tokenizer {
            Some(tokenizer) if kind == "gpt2" => {
                let (config, model) = pretrain::hf::gpt2::load::<I<B>>(dir, &device)?;
                check_vocabulary(tokenizer, config.vocab_size, dir)?;
                save_safetensors(&model, &weights)?;
                run.model.preset = Preset::GptSmall;
                run.model.overrides = overrides(&config, &["vocab_size"]);
                run.data.max_tokens = max_tokens(config.block_size);
                ("GPT-2".to_string(), Vec::new())
            }
            Some(tokenizer) => {
                let classifier = pretrain::hf::checkpoint::HfCheckpoint::read(dir)?
                    .tensors
                    .contains_key("classifier.weight");
                let (imported, not_imported) = match classifier {
                    true => {
                        let read = pretrain::hf::bert::load_classifier::<I<B>>(dir, &device)?;
                        (
                            read.bert,
                            vec!["classifier (a sequence-classification head)".into()],
                        )
                    }
                    false => (pretrain::hf::bert::load::<I<B>>(dir, &device)?, Vec::new()),
                };
                let config = &imported.config;
                check_vocabulary(tokenizer, config.vocab_size, dir)?;
                if tokenizer.specials().mask.is_none() {
                    return Err(RecipeError::io(
                        dir,
                        "its tokenizer has no mask token ([MASK] or <mask>): masked language \
                         modeling needs one",
                    ));
                }
                save_safetensors(&imported.model, &weights)?;
                run.model.preset = Preset::BertTiny;
                run.model.overrides = overrides(config, &["vocab_size"]);
                run.data.max_tokens = max_tokens(config.max_position);
                ("BERT".to_string(), not_imported)
            }
            None => {
                let imported = pretrain::hf::vit::load::<I<B>>(dir, &device)?;
                // MAE and SimMIM runs save their ViT itself, the others the encoder enum.
                match recipe.objective.kind.masks_images() {
                    true => save_safetensors(&imported.model, &weights)?,
                    false => save_safetensors(&ImageEncoder::Vit(imported.model), &weights)?,
                }
                run.model.preset = Preset::VitTiny28;
                run.model.overrides = overrides(&imported.config, &[]);
                // How features are pooled is the recipe's choice, not the checkpoint's.
                if let Some(pooling) = recipe.model.overrides.get("pooling") {
                    run.model.overrides["pooling"] = pooling.clone();
                }
                let architecture = match imported.config.position {
                    pretrain::models::PositionEmbedding::SinCos => "ViT-MAE encoder",
                    pretrain::models::PositionEmbedding::Learned => "ViT",
                };
                // The parts left out, by module (`pooler`, `decoder`), not tensor by tensor.
                let mut parts: Vec<String> = imported
                    .not_imported
                    .iter()
                    .filter_map(|name| name.split('.').next().map(str::to_string))
                    .collect();
                parts.dedup();
                (architecture.to_string(), parts)
            }
        };
        Ok((
            ImportSummary {
                architecture,
                recipe: run.name.clone(),
                not_imported,
            },
            run,
        ))
    }
}
