//! `pretrain generate <run-dir>`: text from a causal-LM run's decoder and tokenizer.

use pretrain::models::{FusedAutodiffBackend, FusedBackend};
use std::path::{Path, PathBuf};

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::data::tokenizer::TextTokenizer;
use pretrain::models::{Gpt, GptConfig, SamplingConfig, generate, load_safetensors};
use pretrain::train::Precision;

use crate::data::TOKENIZER_FILE;
use crate::error::{RecipeError, Result};
use crate::models::{self, DataInputs, ModelConfig, TextInputs};
use crate::objective::ObjectiveKind;
use crate::pretrain::encoder_weights;
use crate::recipe::Recipe;
use crate::recipe_of_run;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// The causal-LM run directory.
    pub run_dir: PathBuf,
    /// The text to continue.
    pub prompt: String,
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// Sampling settings (seeded).
    pub sampling: SamplingConfig,
    /// Stop once the generated text contains one of these (it ends before the stop string).
    pub stop: Vec<String>,
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The text after the prompt (up to a stop string).
    pub text: String,
    /// Tokens sampled.
    pub tokens: usize,
    /// Seconds spent generating (model loading excluded).
    pub seconds: f64,
}

/// A causal-LM run directory opened: its recipe, tokenizer and the decoder's configuration;
/// [`DecoderRun::load`] reads the weights. `generate` and few-shot prompting start here.
pub struct DecoderRun {
    /// The recipe the run was trained with.
    pub recipe: Recipe,
    /// The run's tokenizer.
    pub tokenizer: TextTokenizer,
    /// The decoder's configuration.
    pub config: GptConfig,
    weights: PathBuf,
}

impl DecoderRun {
    /// Opens `run_dir`, refusing (for `command`'s messages) a run that is not a finished causal
    /// language model.
    pub fn open(run_dir: &Path, command: &'static str) -> Result<Self> {
        let recipe = recipe_of_run(run_dir)?;
        if recipe.objective.kind != ObjectiveKind::Clm {
            return Err(RecipeError::option(
                command,
                format!(
                    "{} is a {} run, not a causal language model (objective clm)",
                    run_dir.display(),
                    recipe.objective.kind
                ),
            ));
        }
        let (tokenizer, model, weights) = text_model(run_dir, &recipe)?;
        let ModelConfig::Decoder(config) = model else {
            return Err(RecipeError::field(
                "model.preset",
                "a causal-LM run has a GPT preset",
            ));
        };
        Ok(Self {
            recipe,
            tokenizer,
            config,
            weights,
        })
    }

    /// The trained decoder. A tokenizer of another vocabulary than the weights' fails here,
    /// naming the shapes.
    pub fn load<B: FusedBackend>(&self, device: &B::Device) -> Result<Gpt<B>> {
        let model = self.config.init::<B>(device)?;
        load_safetensors(model, &self.weights).map_err(|e| {
            RecipeError::io(
                &self.weights,
                format!(
                    "{e} (is the run's {TOKENIZER_FILE}, with {} tokens, the one it was \
                     trained with?)",
                    self.tokenizer.vocab_size()
                ),
            )
        })
    }
}

/// The tokenizer, model configuration and weights file of the finished text run in `run_dir`
/// trained with `recipe` (a run that has not finished is refused).
pub(crate) fn text_model(
    run_dir: &Path,
    recipe: &Recipe,
) -> Result<(TextTokenizer, ModelConfig, PathBuf)> {
    let tokenizer = TextTokenizer::from_file(&run_dir.join(TOKENIZER_FILE))?;
    let weights = encoder_weights(run_dir);
    if !weights.is_file() {
        return Err(RecipeError::io(
            &weights,
            "missing: the run has not finished (resume it with --resume)",
        ));
    }
    let inputs = TextInputs {
        vocab_size: tokenizer.vocab_size(),
        max_tokens: recipe.data.max_tokens(),
    };
    let model = models::resolve(&recipe.model, DataInputs::Text(inputs))?;
    Ok((tokenizer, model, weights))
}

/// Generates from the run in `options.run_dir`, calling `on_text` with each new piece of text
/// as it is decoded. Generation ends at the end-of-text token, a stop string or `max_tokens`.
pub fn run_generate(
    options: &GenerateOptions,
    backend: BackendKind,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generated> {
    // An empty stop string is found before any text: the generation would end at once.
    if options.stop.iter().any(String::is_empty) {
        return Err(RecipeError::option(
            "--stop",
            "is empty (an empty stop string ends the generation before it starts)",
        ));
    }
    let run = DecoderRun::open(&options.run_dir, "generate")?;
    let job = Job {
        run: &run,
        options,
        on_text,
    };
    pretrain::dispatch_backend!(backend, Precision::F32, job)?
}

struct Job<'a> {
    run: &'a DecoderRun,
    options: &'a GenerateOptions,
    on_text: &'a mut dyn FnMut(&str),
}

impl BackendTask for Job<'_> {
    type Output = Result<Generated>;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let Job {
            run,
            options,
            on_text,
        } = self;
        let model = run.load::<B::InnerBackend>(&device)?;
        let tokenizer = &run.tokenizer;
        let mut prompt = tokenizer.encode_plain_batch(&[options.prompt.as_str()])?;
        let prompt = prompt.pop().unwrap_or_default();
        if prompt.is_empty() {
            return Err(RecipeError::option("--prompt", "is empty"));
        }
        let end_of_text = tokenizer.specials().sep;
        let mut tokens = Vec::new();
        // What was printed, and what the tokens so far decode to (up to a stop string).
        let mut text = String::new();
        let mut visible = String::new();
        let mut failure = None;
        let started = std::time::Instant::now();
        let sampled = generate(
            &model,
            &prompt,
            options.max_tokens,
            &options.sampling,
            &mut |token| {
                if Some(token) == end_of_text {
                    return false;
                }
                tokens.push(token);
                let decoded = match tokenizer.decode(&tokens) {
                    Ok(decoded) => decoded,
                    Err(e) => {
                        failure = Some(e);
                        return false;
                    }
                };
                let stop_at = options
                    .stop
                    .iter()
                    .filter_map(|s| decoded.find(s.as_str()))
                    .min();
                visible = decoded[..stop_at.unwrap_or(decoded.len())].to_string();
                // Byte-level pieces may end inside a character: print whole characters only.
                if let Some(new) = visible.strip_prefix(text.as_str())
                    && !new.contains('\u{FFFD}')
                {
                    on_text(new);
                    text = visible.clone();
                }
                stop_at.is_none()
            },
        )
        .map_err(|e| RecipeError::option("generate", e.to_string()))?;
        let seconds = started.elapsed().as_secs_f64();
        if let Some(e) = failure {
            return Err(e.into());
        }
        if let Some(rest) = visible.strip_prefix(text.as_str()) {
            on_text(rest);
        }
        Ok(Generated {
            text: visible,
            tokens: sampled.len(),
            seconds,
        })
    }
}
