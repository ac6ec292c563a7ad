//! Fine-tune a Hugging Face BERT checkpoint with LoRA on a few labeled e-mails, then export the
//! merged model back to the Hugging Face layout.
//!
//! `cargo run --release -p pretrain-examples --example finetune_hf_bert -- CHECKPOINT [steps] [out-dir]`

use std::path::PathBuf;

use anyhow::Context;
use pretrain::burn::tensor::backend::{AutodiffBackend, Backend};
use pretrain::data::batch::{TextBatcher, TokenizedItem};
use pretrain::data::readers::{email_text, read_labeled_text_folders};
use pretrain::data::tokenizer::TextTokenizer;
use pretrain::data::{TextEncoding, TextItem};
use pretrain::finetune::{
    Backbone, Classifier, FinetuneSettings, LabeledTask, LoraSettings, ToLabeled, Trainable,
    into_merged, prepare_classifier, train_classifier,
};
use pretrain_examples::{Selected, accuracy, report_trainable};

type Inner = <Selected as AutodiffBackend>::InnerBackend;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let checkpoint = PathBuf::from(
        args.next()
            .context("usage: finetune_hf_bert CHECKPOINT [steps] [out-dir]")?,
    );
    let steps: usize = args.next().map_or(Ok(60), |s| s.parse())?;
    let out = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/examples/finetune_hf_bert".into()),
    );
    let device = Default::default();

    // The checkpoint: BERT weights (config.json + model.safetensors) and its tokenizer.
    let imported = pretrain::hf::bert::load::<Selected>(&checkpoint, &device)?;
    let tokenizer = TextTokenizer::from_hf_dir(&checkpoint)?;
    let config = imported.config.clone();
    println!(
        "imported {}: BERT of {} layers, width {}, {} tokens",
        checkpoint.display(),
        config.layers,
        config.hidden,
        tokenizer.vocab_size()
    );

    // The shipped sample of SpamAssassin: 20 ham and 20 spam e-mails (subject and body), every
    // other one held out for testing.
    let set = read_labeled_text_folders(
        &pretrain::data::catalog::spam_sample_dir()?,
        TextEncoding::Utf8Lossy,
    )?;
    let encoder = tokenizer.fixed_length(64.min(config.max_position))?;
    let encode = |items: Vec<&TextItem>| -> anyhow::Result<Vec<TokenizedItem>> {
        let texts: Vec<String> = items.iter().map(|i| email_text(&i.text)).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encoded = encoder.encode_batch(&texts)?;
        Ok(encoded
            .into_iter()
            .zip(items)
            .map(|(e, item)| TokenizedItem {
                input_ids: e.ids,
                attention_mask: e.attention_mask,
                mlm_targets: None,
                label: item.label,
            })
            .collect())
    };
    let (train, test): (Vec<_>, Vec<_>) =
        set.items.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let task = LabeledTask {
        name: "spam-sample".into(),
        train: encode(train.into_iter().map(|(_, x)| x).collect())?,
        test: encode(test.into_iter().map(|(_, x)| x).collect())?,
        num_classes: set.classes.len(),
    };

    // LoRA on the query and value projections of every layer, and a new head on the mean of
    // the final hidden states: the only parameters that train.
    Selected::seed(&device, 0);
    let mut settings = FinetuneSettings::default();
    settings.train.steps = steps;
    settings.train.batch_size = 8;
    settings.train.lr = 3e-3;
    let (classifier, params) = prepare_classifier(
        Backbone::Text(imported.model),
        config.hidden,
        task.num_classes,
        &Trainable::Lora(LoraSettings::default()),
        &settings,
        &device,
    )?;
    report_trainable(&params)?;
    let batcher = ToLabeled(TextBatcher);
    let model = train_classifier(
        classifier,
        task.train.clone(),
        batcher.clone(),
        &settings,
        &out.join("run"),
        true,
        &device,
    )?;
    let tuned = accuracy(&model, &task.test, &batcher, &device)?;

    // LoRA folded into the base weights and dropped: a plain BERT again, written as a
    // Hugging Face checkpoint with its tokenizer.
    let merged = Classifier {
        encoder: into_merged(model.encoder.clone()),
        head: model.head.clone(),
    };
    let Backbone::Text(bert) = &merged.encoder else {
        anyhow::bail!("the backbone is a BERT");
    };
    let export = out.join("merged");
    pretrain::hf::bert::save(bert, &config, &export)?;
    tokenizer.save(&export.join("tokenizer.json"))?;
    let merged_accuracy = accuracy(&merged, &task.test, &batcher, &device)?;

    // The export read back (as transformers would read it) classifies as the merged model.
    let reread = Classifier {
        encoder: Backbone::Text(pretrain::hf::bert::load::<Inner>(&export, &device)?.model),
        head: merged.head.clone(),
    };
    let reread_accuracy = accuracy(&reread, &task.test, &batcher, &device)?;
    println!(
        "test accuracy {:.1}% with LoRA, {:.1}% merged, {:.1}% from the export in {}",
        100.0 * tuned,
        100.0 * merged_accuracy,
        100.0 * reread_accuracy,
        export.display()
    );
    // Merging changes rounding only: at most one test e-mail may flip.
    let one = 1.0 / task.test.len() as f64 + 1e-12;
    anyhow::ensure!(
        (tuned - merged_accuracy).abs() <= one,
        "merged accuracy {merged_accuracy} differs from {tuned}"
    );
    anyhow::ensure!(
        reread_accuracy == merged_accuracy,
        "the exported model's accuracy {reread_accuracy} differs from {merged_accuracy}"
    );
    Ok(())
}
