//! Zero- and few-shot classification by prompting a causal language model (GPT-3's evaluation):
//! each test text is preceded by `k` labeled training examples written with a template, and the
//! predicted class is the one whose verbalizer (" positive", " negative", ...) the model finds
//! most likely after the prompt. Nothing is trained.
//!
//! The context is the model's block size: when `k + 1` texts do not fit, every text (examples
//! and query alike) is cut to the same number of leading tokens, so a row of the report says how
//! much of each text the model saw.

use pretrain_models::FusedBackend;
use std::time::Instant;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use pretrain_data::TextItem;
use pretrain_data::rng::item_rng;
use pretrain_data::tokenizer::TextTokenizer;
use pretrain_models::Gpt;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};
use crate::evaluate::LabeledTask;
use crate::report::mean_std;

/// Settings of a few-shot evaluation.
#[derive(Config, Debug, PartialEq)]
pub struct FewShotConfig {
    /// The words that name the classes, in class order, as they follow the template's
    /// `{label}` (byte-level BPE keeps a leading space with the word: " positive").
    pub verbalizers: Vec<String>,
    /// One example of the prompt: `{text}` is replaced by the text and `{label}` by its
    /// verbalizer; the query is written up to `{label}`.
    #[config(default = "String::from(\"{text}\\nLabel:{label}\\n\")")]
    pub template: String,
    /// In-context examples before each query, one report row per value.
    #[config(default = "vec![0, 1, 4, 8]")]
    pub shots: Vec<usize>,
    /// Seeds of the examples drawn for each query (a row with k = 0 draws nothing and runs once).
    #[config(default = "vec![0, 1, 2]")]
    pub seeds: Vec<u64>,
    /// Test texts scored, at most (a seeded sample when the test split has more).
    #[config(default = 300)]
    pub max_queries: usize,
    /// Sequences per forward pass.
    #[config(default = 32)]
    pub batch_size: usize,
    /// Compare the classes by log-likelihood per UTF-8 byte of their verbalizer rather than in
    /// total, so a longer word is not penalized for its length (lm-evaluation-harness's
    /// `acc_norm`).
    #[config(default = true)]
    pub normalize_by_length: bool,
}

/// The accuracy at one number of in-context examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FewShotRow {
    /// In-context examples per query.
    pub shots: usize,
    /// Tokens of each text (examples and query) the context held at most (0 when the
    /// examples do not fit).
    pub text_tokens: usize,
    /// Accuracy per seed, in the order of [`FewShotConfig::seeds`] (one value for k = 0, none
    /// when the examples do not fit).
    pub accuracies: Vec<f64>,
    /// Mean accuracy over the seeds.
    pub accuracy_mean: Option<f64>,
    /// Sample standard deviation over the seeds (0 for one).
    pub accuracy_std: Option<f64>,
    /// Why the row was not scored: `k` examples with their template and verbalizers leave
    /// no room for text in the model's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub does_not_fit: Option<String>,
}

impl FewShotRow {
    /// The accuracy as `"mean ± std"` in percent, or why the row was not scored.
    pub fn cell(&self) -> String {
        match (self.accuracy_mean, self.accuracy_std, &self.does_not_fit) {
            (Some(mean), Some(std), _) => format!("{:.1} ± {:.1}", 100.0 * mean, 100.0 * std),
            (_, _, Some(why)) => format!("not scored: {why}"),
            _ => "-".into(),
        }
    }
}

/// A few-shot evaluation (serde JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FewShotReport {
    /// Data set name.
    pub dataset: String,
    /// The template and verbalizers used.
    pub template: String,
    /// Verbalizer of each class.
    pub verbalizers: Vec<String>,
    /// Test texts scored.
    pub queries: usize,
    /// Share of the queries in their most frequent class (what always guessing it scores).
    pub majority: f64,
    /// One row per number of shots.
    pub rows: Vec<FewShotRow>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The template split around its placeholders: `before {text} between {label} after`.
struct Template {
    before: Vec<u32>,
    between: Vec<u32>,
    after: Vec<u32>,
}

impl Template {
    fn parse(template: &str, tokenizer: &TextTokenizer) -> Result<Self> {
        let bad = |message: &str| FinetuneError::Config {
            field: "template",
            message: format!("{template:?} {message}"),
        };
        let (before, rest) = template
            .split_once("{text}")
            .ok_or_else(|| bad("has no {text}"))?;
        let (between, after) = rest
            .split_once("{label}")
            .ok_or_else(|| bad("has no {label} after {text}"))?;
        if [before, between, after]
            .iter()
            .any(|piece| piece.contains("{text}") || piece.contains("{label}"))
        {
            return Err(bad("must hold {text} and {label} once each"));
        }
        let [before, between, after] = encode(tokenizer, &[before, between, after])?
            .try_into()
            .expect("three pieces");
        Ok(Self {
            before,
            between,
            after,
        })
    }
}

fn encode(tokenizer: &TextTokenizer, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
    tokenizer
        .encode_plain_batch(texts)
        .map_err(|e| FinetuneError::Inputs(e.to_string()))
}

/// One scored sequence: the prompt then one class's verbalizer.
struct Candidate {
    tokens: Vec<u32>,
    /// Where the verbalizer starts in `tokens`.
    start: usize,
}

/// Scores `task`'s test texts by prompting `model` with `k` of its training texts for each `k`
/// of `config.shots` (module docs). The same queries are scored in every row.
pub fn evaluate_few_shot<B: FusedBackend>(
    model: &Gpt<B>,
    tokenizer: &TextTokenizer,
    task: &LabeledTask<TextItem>,
    config: &FewShotConfig,
) -> Result<FewShotReport> {
    let started = Instant::now();
    let config_err = |field, message: String| FinetuneError::Config { field, message };
    if config.verbalizers.len() != task.num_classes {
        return Err(config_err(
            "verbalizers",
            format!(
                "{} given for the {} classes of {}",
                config.verbalizers.len(),
                task.num_classes,
                task.name
            ),
        ));
    }
    if config.seeds.is_empty() || config.batch_size == 0 || config.max_queries == 0 {
        return Err(config_err(
            "seeds, batch_size, max_queries",
            "each needs at least one".into(),
        ));
    }
    let template = Template::parse(&config.template, tokenizer)?;
    let verbal_refs: Vec<&str> = config.verbalizers.iter().map(String::as_str).collect();
    let verbalizers = encode(tokenizer, &verbal_refs)?;
    if let Some(i) = verbalizers.iter().position(Vec::is_empty) {
        return Err(config_err(
            "verbalizers",
            format!("{:?} encodes to no token", config.verbalizers[i]),
        ));
    }
    let labeled = |items: &[TextItem], split: &str| -> Result<Vec<usize>> {
        items
            .iter()
            .map(|item| {
                item.label.ok_or_else(|| {
                    FinetuneError::Labels(format!("an unlabeled text in the {split} split"))
                })
            })
            .collect()
    };
    let train_labels = labeled(&task.train, "training")?;
    let mut queries: Vec<usize> = (0..task.test.len()).collect();
    queries.shuffle(&mut item_rng(0, 0, 0));
    queries.truncate(config.max_queries);
    let query_labels = labeled(&task.test, "test")?;
    let query_labels: Vec<usize> = queries.iter().map(|&q| query_labels[q]).collect();
    if query_labels.is_empty() {
        return Err(FinetuneError::Labels(format!(
            "{} has no test text",
            task.name
        )));
    }
    let query_tokens = encode(tokenizer, &text_refs(&task.test, &queries))?;
    let all_train: Vec<usize> = (0..task.train.len()).collect();
    let train_tokens = encode(tokenizer, &text_refs(&task.train, &all_train))?;

    let longest_verbalizer = verbalizers.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows = Vec::with_capacity(config.shots.len());
    for &k in &config.shots {
        if k > task.train.len() {
            return Err(config_err(
                "shots",
                format!(
                    "{k} examples, but {} has {} training texts",
                    task.name,
                    task.train.len()
                ),
            ));
        }
        // What every example and the query take besides their texts.
        let per_example = template.before.len()
            + template.between.len()
            + longest_verbalizer
            + template.after.len();
        let fixed = (k + 1) * (template.before.len() + template.between.len())
            + k * (longest_verbalizer + template.after.len())
            + longest_verbalizer;
        let text_tokens = model.block_size().saturating_sub(fixed) / (k + 1);
        if text_tokens == 0 {
            rows.push(FewShotRow {
                shots: k,
                text_tokens,
                accuracies: Vec::new(),
                accuracy_mean: None,
                accuracy_std: None,
                does_not_fit: Some(format!(
                    "{k} examples do not fit in the model's context of {} tokens (each takes \
                     {per_example} besides its text)",
                    model.block_size()
                )),
            });
            continue;
        }
        let cut = |ids: &[u32]| ids[..ids.len().min(text_tokens)].to_vec();
        let seeds: &[u64] = if k == 0 {
            &config.seeds[..1]
        } else {
            &config.seeds
        };
        let mut accuracies = Vec::with_capacity(seeds.len());
        for &seed in seeds {
            let mut candidates = Vec::with_capacity(queries.len() * verbalizers.len());
            for (q, query) in query_tokens.iter().enumerate() {
                let mut prompt = Vec::new();
                let mut rng = item_rng(seed, k as u64, q as u64);
                for &e in all_train.sample(&mut rng, k) {
                    prompt.extend(&template.before);
                    prompt.extend(cut(&train_tokens[e]));
                    prompt.extend(&template.between);
                    prompt.extend(&verbalizers[train_labels[e]]);
                    prompt.extend(&template.after);
                }
                prompt.extend(&template.before);
                prompt.extend(cut(query));
                prompt.extend(&template.between);
                for verbalizer in &verbalizers {
                    let mut tokens = prompt.clone();
                    tokens.extend(verbalizer);
                    candidates.push(Candidate {
                        tokens,
                        start: prompt.len(),
                    });
                }
            }
            let mut scores = score(model, &candidates, config.batch_size);
            if config.normalize_by_length {
                for (i, s) in scores.iter_mut().enumerate() {
                    *s /= config.verbalizers[i % verbalizers.len()].len().max(1) as f64;
                }
            }
            let correct = scores
                .chunks(verbalizers.len())
                .zip(&query_labels)
                .filter(|(classes, label)| argmax(classes) == **label)
                .count();
            accuracies.push(correct as f64 / query_labels.len() as f64);
        }
        let (accuracy_mean, accuracy_std) = mean_std(&accuracies);
        rows.push(FewShotRow {
            shots: k,
            text_tokens,
            accuracies,
            accuracy_mean: Some(accuracy_mean),
            accuracy_std: Some(accuracy_std),
            does_not_fit: None,
        });
    }
    let mut counts = vec![0usize; task.num_classes];
    query_labels.iter().for_each(|&l| counts[l] += 1);
    Ok(FewShotReport {
        dataset: task.name.clone(),
        template: config.template.clone(),
        verbalizers: config.verbalizers.clone(),
        queries: query_labels.len(),
        majority: *counts.iter().max().unwrap_or(&0) as f64 / query_labels.len() as f64,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The texts of `items` at `ids`.
fn text_refs<'a>(items: &'a [TextItem], ids: &[usize]) -> Vec<&'a str> {
    ids.iter().map(|&i| items[i].text.as_str()).collect()
}

/// The first index of the largest value.
fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Log-likelihood (nats) of each candidate's verbalizer tokens given the tokens before them.
fn score<B: FusedBackend>(model: &Gpt<B>, candidates: &[Candidate], batch_size: usize) -> Vec<f64> {
    let device = model.devices()[0].clone();
    let mut scores = Vec::with_capacity(candidates.len());
    for batch in candidates.chunks(batch_size) {
        let n = batch.len();
        let seq = batch.iter().map(|c| c.tokens.len()).max().unwrap_or(1) - 1;
        // Inputs are every token but the last; position t predicts token t + 1. Padding goes
        // at the end, which a causal model's earlier positions never see.
        let mut inputs = vec![0i64; n * seq];
        let mut targets = vec![0i64; n * seq];
        let mut weights = vec![0f32; n * seq];
        for (row, c) in batch.iter().enumerate() {
            for t in 0..c.tokens.len() - 1 {
                inputs[row * seq + t] = i64::from(c.tokens[t]);
                targets[row * seq + t] = i64::from(c.tokens[t + 1]);
                weights[row * seq + t] = f32::from(u8::from(t + 1 >= c.start));
            }
        }
        let int =
            |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [n, seq]), &device);
        let log_probs = log_softmax(model.forward(int(inputs)), 2); // [n, seq, vocab]
        let picked = log_probs.gather(2, int(targets).unsqueeze_dim(2)); // [n, seq, 1]
        let weights = Tensor::<B, 2>::from_data(TensorData::new(weights, [n, seq]), &device);
        let sums = (picked.squeeze_dim::<2>(2) * weights).sum_dim(1); // [n, 1]
        let sums = sums.into_data().convert::<f32>();
        scores.extend(
            sums.as_slice::<f32>()
                .expect("f32 data")
                .iter()
                .map(|&s| f64::from(s)),
        );
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretrain_data::tokenizer::TokenizerTrainConfig;
    use pretrain_models::GptConfig;

    use crate::testing::{TestBackend as B, seeded};

    fn tokenizer(texts: &[String]) -> TextTokenizer {
        TextTokenizer::train(texts, &TokenizerTrainConfig::default()).unwrap()
    }

    fn task() -> LabeledTask<TextItem> {
        let item = |text: &str, label| TextItem {
            text: text.into(),
            label: Some(label),
        };
        let mut train = Vec::new();
        let mut test = Vec::new();
        for i in 0..20 {
            train.push(item(&format!("good fine day {i}"), 1));
            train.push(item(&format!("bad awful night {i}"), 0));
            if i < 5 {
                test.push(item(&format!("fine good {i}"), 1));
                test.push(item(&format!("awful bad {i}"), 0));
            }
        }
        LabeledTask {
            name: "toy".into(),
            train,
            test,
            num_classes: 2,
        }
    }

    fn setup() -> (Gpt<B>, TextTokenizer, LabeledTask<TextItem>, FewShotConfig) {
        let task = task();
        let corpus: Vec<String> = task.train.iter().map(|t| t.text.clone()).collect();
        let tokenizer = tokenizer(&corpus);
        let _guard = seeded(61);
        let model = GptConfig::new(tokenizer.vocab_size(), 48, 2, 2, 32)
            .init::<B>(&Default::default())
            .unwrap();
        let config = FewShotConfig::new(vec![" negative".into(), " positive".into()])
            .with_shots(vec![0, 1, 4])
            .with_seeds(vec![3, 4]);
        (model, tokenizer, task, config)
    }

    #[test]
    fn scores_are_the_log_likelihood_of_the_verbalizer_tokens() {
        let (model, tokenizer, _, _) = setup();
        let prompt = encode(&tokenizer, &["good fine day\nLabel:"])
            .unwrap()
            .remove(0);
        let verbalizer = encode(&tokenizer, &[" positive"]).unwrap().remove(0);
        let mut tokens = prompt.clone();
        tokens.extend(&verbalizer);
        // Batched beside a longer candidate (so this one is padded) and alone.
        let mut longer = tokens.clone();
        longer.extend(&prompt);
        let candidates = [
            Candidate {
                tokens: tokens.clone(),
                start: prompt.len(),
            },
            Candidate {
                tokens: longer,
                start: prompt.len(),
            },
        ];
        let batched = score(&model, &candidates, 2)[0];
        let alone = score(&model, &candidates[..1], 1)[0];
        // By hand from the full forward's log-softmax.
        let n = tokens.len();
        let input = Tensor::<B, 1, Int>::from_data(
            TensorData::new(tokens.iter().map(|&t| i64::from(t)).collect(), [n]),
            &Default::default(),
        )
        .reshape([1, n]);
        let log_probs = log_softmax(model.forward(input), 2)
            .into_data()
            .convert::<f32>();
        let log_probs = log_probs.as_slice::<f32>().unwrap();
        let vocab = tokenizer.vocab_size();
        let expected: f64 = (prompt.len()..n)
            .map(|t| f64::from(log_probs[(t - 1) * vocab + tokens[t] as usize]))
            .sum();
        assert!((alone - expected).abs() < 1e-4, "{alone} vs {expected}");
        assert!((batched - expected).abs() < 1e-4, "{batched} vs {expected}");
        assert!(expected < 0.0);
    }

    #[test]
    fn rows_cover_every_shot_count_with_one_run_at_zero_shots() {
        let (model, tokenizer, task, config) = setup();
        let report = evaluate_few_shot(&model, &tokenizer, &task, &config).unwrap();
        assert_eq!(report.queries, 10);
        assert_eq!(report.majority, 0.5);
        let shots: Vec<usize> = report.rows.iter().map(|r| r.shots).collect();
        assert_eq!(shots, [0, 1, 4]);
        assert_eq!(report.rows[0].accuracies.len(), 1);
        assert_eq!(report.rows[2].accuracies.len(), 2);
        for row in &report.rows {
            assert!(row.accuracies.iter().all(|a| (0.0..=1.0).contains(a)));
            assert!(row.text_tokens >= 1);
        }
        // More examples leave less room for each text.
        assert!(report.rows[2].text_tokens < report.rows[0].text_tokens);
        // Seeded: the same report again.
        let again = evaluate_few_shot(&model, &tokenizer, &task, &config).unwrap();
        assert_eq!(
            report
                .rows
                .iter()
                .map(|r| &r.accuracies)
                .collect::<Vec<_>>(),
            again.rows.iter().map(|r| &r.accuracies).collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let (model, tokenizer, task, config) = setup();
        let err = |config: &FewShotConfig| {
            evaluate_few_shot(&model, &tokenizer, &task, config)
                .unwrap_err()
                .to_string()
        };
        let one = FewShotConfig {
            verbalizers: vec![" yes".into()],
            ..config.clone()
        };
        assert!(
            err(&one).contains("1 given for the 2 classes of toy"),
            "{}",
            err(&one)
        );
        let no_label = config.clone().with_template("{text} is".into());
        assert!(
            err(&no_label).contains("has no {label}"),
            "{}",
            err(&no_label)
        );
        let too_many = config.clone().with_shots(vec![41]);
        assert!(
            err(&too_many).contains("41 examples, but toy has 40 training texts"),
            "{}",
            err(&too_many)
        );
    }

    #[test]
    fn examples_that_do_not_fit_the_context_leave_their_row_unscored_with_the_reason() {
        let (model, tokenizer, task, config) = setup();
        let report =
            evaluate_few_shot(&model, &tokenizer, &task, &config.with_shots(vec![1, 30])).unwrap();
        assert!(report.rows[0].does_not_fit.is_none());
        assert!(report.rows[0].cell().contains(" ± "));
        let row = &report.rows[1];
        assert!(row.accuracies.is_empty() && row.accuracy_mean.is_none());
        assert!(
            row.cell()
                .starts_with("not scored: 30 examples do not fit in the model's context of 48"),
            "{}",
            row.cell()
        );
    }
}
