//! # pretrain-finetune
//!
//! Turns a pre-trained encoder into a labeled-task model and measures how good its
//! representation is:
//!
//! - [`probe`]: linear probe (frozen features extracted once, standardized, logistic
//!   regression with weight decay);
//! - [`knn`]: cosine-similarity weighted kNN on frozen features;
//! - [`finetune`]: full and partial fine-tuning through the pre-training engine, with warmup,
//!   label smoothing, layer-wise learning-rate decay and drop-path;
//! - [`peft`]: bottleneck adapters and LoRA (merge, unmerge, adapter-only checkpoints);
//! - [`params`]: freezing, trainable-parameter counts, parameter depths;
//! - [`evaluate`]: few-label subsets over several seeds, and a [`FinetuneReport`] per run;
//! - [`metrics`]: accuracy, macro-F1, confusion matrix;
//! - [`few_shot`]: zero- and few-shot classification by prompting a causal LM.

pub mod backbone;
pub mod classifier;
pub mod error;
pub mod evaluate;
pub mod few_shot;
pub mod finetune;
pub mod knn;
pub mod metrics;
pub mod params;
pub mod peft;
pub mod probe;
pub mod report;

#[cfg(test)]
mod testing;

pub use backbone::{Backbone, Inputs, LabeledBatch, ToLabeled};
pub use classifier::{ClassificationTask, Classifier, smoothed_cross_entropy};
pub use error::{FinetuneError, Result};
pub use evaluate::{
    FrozenFeatures, LabeledTask, Strategy, StrategySettings, evaluate_finetune, evaluate_frozen,
    predict,
};
pub use few_shot::{FewShotConfig, FewShotReport, FewShotRow, evaluate_few_shot};
pub use finetune::{FinetuneSettings, FreezeSpec, Trainable, prepare_classifier, train_classifier};
pub use knn::{KnnConfig, knn_predict};
pub use metrics::{ClassificationReport, MetricsError};
pub use params::{ParamCount, count_params, freeze_where, layer_decay_scales, param_depths};
pub use peft::{
    AdapterSettings, LoraSettings, LoraTarget, add_adapters, add_lora, into_merged, load_adapter,
    merge_lora, save_adapter, unmerge_lora,
};
pub use probe::{Features, LinearProbeConfig, LogisticRegression, Standardizer, extract_features};
pub use report::{FinetuneReport, SeedResult};
