//! Recipes end to end on shipped data (tiny step counts), and the messages of bad recipes.

use pretrain::backend::BackendKind;
use pretrain::finetune::Strategy;
use pretrain::models::VitConfig;
use pretrain_recipes::models::{DataInputs, Preset, TextInputs};
use pretrain_recipes::overrides::apply;
use pretrain_recipes::{
    BuiltinDataset, EvaluateSpec, FinetuneOptions, ObjectiveKind, PretrainOptions, Recipe,
    recipe_of_run, run_finetune, run_pretrain,
};

fn quiet_run(recipe: &Recipe, dir: &std::path::Path) -> pretrain_recipes::PretrainSummary {
    let options = PretrainOptions {
        out: dir.to_path_buf(),
        quiet: true,
        ..Default::default()
    };
    run_pretrain(recipe, BackendKind::Flex, &options).unwrap()
}

#[test]
fn builtin_recipes_parse_and_name_valid_presets() {
    let recipes = Recipe::builtin().unwrap();
    let names: Vec<&str> = recipes.iter().map(|r| r.name.as_str()).collect();
    for wanted in [
        "mae-fashion-mnist",
        "simclr-fashion-mnist",
        "byol-fashion-mnist",
        "vicreg-fashion-mnist",
        "dae-digits",
        "mlm-text",
    ] {
        assert!(names.contains(&wanted), "{names:?}");
    }
    for recipe in &recipes {
        assert!(!recipe.description.is_empty());
        // Text presets take their vocabulary from the tokenizer; any size does here.
        let dataset = recipe
            .data
            .dataset
            .expect("built-in recipes name a data set");
        let inputs = if dataset.is_text() {
            DataInputs::Text(TextInputs {
                vocab_size: 1000,
                max_tokens: recipe.data.max_tokens(),
            })
        } else if dataset == BuiltinDataset::Digits {
            DataInputs::Images([1, 8, 8])
        } else {
            DataInputs::Images([1, 28, 28])
        };
        pretrain_recipes::models::resolve(&recipe.model, inputs).unwrap();
        // The saved form parses back to the same recipe.
        assert_eq!(&Recipe::parse(&recipe.to_toml(), "saved").unwrap(), recipe);
    }
}

/// Evaluations at one label budget, one seed, fine-tuning for two steps: fast checks that a
/// path runs.
fn quick_evaluate(strategies: Vec<Strategy>, labels_per_class: usize) -> EvaluateSpec {
    let mut settings = pretrain::finetune::StrategySettings::default();
    settings.finetune.train.steps = 2;
    EvaluateSpec {
        strategies,
        labels_per_class: vec![labels_per_class],
        all_labels: false,
        seeds: 1,
        settings,
        ..EvaluateSpec::default()
    }
}

/// The error of pre-training `recipe` into `out`, which must fail.
fn refused(recipe: &Recipe, out: &std::path::Path) -> String {
    let options = PretrainOptions {
        out: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    };
    run_pretrain(recipe, BackendKind::Flex, &options)
        .unwrap_err()
        .to_string()
}

#[test]
fn denoising_recipe_pretrains_and_its_encoder_beats_chance_with_ten_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut recipe = Recipe::load("dae-digits").unwrap();
    recipe.train.steps = 40;
    let summary = quiet_run(&recipe, dir.path());
    assert!(summary.finished && summary.steps_done == 40, "{summary:?}");
    assert!(
        summary.loss_start_end.1 < summary.loss_start_end.0,
        "{summary:?}"
    );
    assert!(dir.path().join("encoder.safetensors").is_file());
    // `finetune --from` reads the recipe back from the run directory.
    let saved = recipe_of_run(dir.path()).unwrap();
    assert_eq!(saved, recipe);
    let evaluate = EvaluateSpec {
        strategies: vec![Strategy::LinearProbe, Strategy::Knn],
        labels_per_class: vec![10],
        all_labels: true,
        seeds: 2,
        ..EvaluateSpec::default()
    };
    let out = dir.path().join("finetune");
    let options = FinetuneOptions {
        from: Some(dir.path().to_path_buf()),
        out: out.clone(),
        quiet: true,
    };
    let reports = run_finetune(&saved, &evaluate, BackendKind::Flex, &options).unwrap();
    assert_eq!(reports.len(), 4);
    for r in &reports {
        // Two seeds draw two subsets of 10 labels; with every label there is nothing to
        // draw, so the frozen strategies run once.
        let seeds = if r.labels_per_class.is_some() { 2 } else { 1 };
        assert_eq!(
            r.seeds.len(),
            seeds,
            "{} {:?}",
            r.strategy,
            r.labels_per_class
        );
        assert!(r.accuracy_mean > 0.5, "{} {}", r.strategy, r.accuracy_mean);
    }
    assert!(out.join("linear-probe-10.json").is_file() && out.join("knn-10.json").is_file());
}

#[test]
fn contrastive_and_masked_recipes_run_on_the_shipped_sample() {
    for (name, overrides) in [
        ("simclr-fashion-mnist", None),
        ("byol-fashion-mnist", None),
        (
            "mae-fashion-mnist",
            Some(serde_json::json!({"depth": 1, "d_model": 32, "n_heads": 2})),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut recipe = Recipe::load(name).unwrap();
        recipe.data.dataset = Some(BuiltinDataset::FashionMnistSample);
        recipe.train.steps = 2;
        recipe.train.batch_size = 16;
        if let Some(o) = overrides {
            recipe.model.overrides = o;
        }
        let summary = quiet_run(&recipe, dir.path());
        assert!(summary.finished, "{name}");
        assert!(summary.loss_start_end.1.is_finite(), "{name}: {summary:?}");
        let evaluate = quick_evaluate(vec![Strategy::Knn, Strategy::Full], 2);
        let options = FinetuneOptions {
            from: Some(dir.path().to_path_buf()),
            out: dir.path().join("finetune"),
            quiet: true,
        };
        let reports = run_finetune(&recipe, &evaluate, BackendKind::Flex, &options).unwrap();
        assert_eq!(reports.len(), 2, "{name}");
        assert!(
            reports
                .iter()
                .all(|r| (0.0..=1.0).contains(&r.accuracy_mean))
        );
        assert_eq!(reports[1].runs[0].train_examples, 20, "{name}");
    }
}

/// `recipe` with `views` (TOML `[[objective.views]]` tables) appended to its text.
fn with_views(recipe: &Recipe, views: &str) -> Recipe {
    let text = recipe
        .to_toml()
        .replace("[train]", &format!("{views}\n[train]"));
    Recipe::parse(&text, "views.toml").unwrap()
}

/// Augmentations spelled out in the recipe: two pipelines make asymmetric views, the run
/// trains, and the saved recipe keeps them.
#[test]
fn spelled_out_views_run_and_are_saved_with_the_run() {
    let mut recipe = Recipe::load("simclr-fashion-mnist").unwrap();
    recipe.objective.augment = None;
    recipe.data.dataset = Some(BuiltinDataset::FashionMnistSample);
    recipe.train.steps = 2;
    recipe.train.batch_size = 16;
    let recipe = with_views(
        &recipe,
        r#"[[objective.views]]
steps = [
  { op = "random_resized_crop", size = [28, 28], scale = [0.5, 1.0], ratio = [0.75, 1.333] },
  { op = "horizontal_flip", p = 0.5 },
]
[[objective.views]]
steps = [{ op = "gaussian_blur", sigma = [0.1, 1.0], p = 1.0 }]
"#,
    );
    let views = recipe.objective.views.as_ref().unwrap();
    assert_eq!((views.len(), views[0].steps.len()), (2, 2));
    let dir = tempfile::tempdir().unwrap();
    let summary = quiet_run(&recipe, dir.path());
    assert!(summary.finished && summary.loss_start_end.1.is_finite());
    assert_eq!(
        recipe_of_run(dir.path()).unwrap().objective.views,
        recipe.objective.views
    );
}

/// The text recipe on the 40 shipped e-mails: pre-training trains and saves a tokenizer, MLM
/// lowers its loss, and `finetune --from` reads both back; an untrained encoder retrains the
/// same vocabulary.
#[test]
fn text_recipe_pretrains_with_its_own_tokenizer_and_fine_tunes() {
    let dir = tempfile::tempdir().unwrap();
    let mut recipe = Recipe::load("mlm-text").unwrap();
    recipe.data.dataset = Some(BuiltinDataset::SpamSample);
    recipe.data.max_tokens = Some(32);
    recipe.data.tokenizer = Some(pretrain::data::tokenizer::TokenizerTrainConfig {
        vocab_size: 600,
        ..Default::default()
    });
    recipe.train.steps = 12;
    recipe.train.batch_size = 8;
    let summary = quiet_run(&recipe, dir.path());
    assert!(summary.finished && summary.steps_done == 12, "{summary:?}");
    assert!(
        summary.loss_start_end.1 < summary.loss_start_end.0,
        "{summary:?}"
    );
    let saved = pretrain::data::tokenizer::TextTokenizer::from_file(
        &dir.path().join(pretrain_recipes::data::TOKENIZER_FILE),
    )
    .unwrap();
    assert!(saved.vocab_size() <= 600, "{}", saved.vocab_size());
    let texts = pretrain_recipes::data::load_text(&recipe).unwrap();
    assert_eq!(
        (texts.train.len(), texts.test.len(), texts.num_classes),
        (20, 20, 2)
    );
    let retrained = pretrain_recipes::data::tokenizer(&recipe.data, None).unwrap();
    let tokenized = |t| pretrain_recipes::data::tokenize(&texts, t, &recipe.data).unwrap();
    assert_eq!(tokenized(&saved).test, tokenized(&retrained).test);

    let evaluate = quick_evaluate(vec![Strategy::LinearProbe, Strategy::Full], 3);
    for from in [Some(dir.path().to_path_buf()), None] {
        let options = FinetuneOptions {
            from,
            out: dir.path().join("finetune"),
            quiet: true,
        };
        let reports = run_finetune(&recipe, &evaluate, BackendKind::Flex, &options).unwrap();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[1].runs[0].train_examples, 6);
        assert!(
            reports
                .iter()
                .all(|r| (0.0..=1.0).contains(&r.accuracy_mean))
        );
    }
}

#[test]
fn bad_recipes_are_refused_with_the_cause_named() {
    let err = Recipe::load("simclr-fashion").unwrap_err().to_string();
    assert!(
        err.contains("simclr-fashion-mnist") && err.contains("dae-digits"),
        "{err}"
    );

    let text = include_str!("../../../recipes/dae-digits.toml")
        .replace("[train]", "[train]\nlearning_rate = 1.0");
    let err = Recipe::parse(&text, "mine.toml").unwrap_err().to_string();
    assert!(
        err.contains("mine.toml") && err.contains("learning_rate"),
        "{err}"
    );

    let preset = VitConfig::vit_tiny_28();
    let vit: VitConfig =
        apply(&preset, &serde_json::json!({"depth": 2}), "model.overrides").unwrap();
    assert_eq!((vit.depth, vit.patch_size), (2, 4));
    let err = apply(&preset, &serde_json::json!({"detph": 2}), "model.overrides")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.overrides.detph") && err.contains("depth"),
        "{err}"
    );
    // Sizes that would abort on allocation are refused by name.
    for (overrides, field) in [
        (
            serde_json::json!({"d_model": 1_000_000_000u64}),
            "model.overrides.d_model",
        ),
        (
            serde_json::json!({"depth": -5_000_000}),
            "model.overrides.depth",
        ),
    ] {
        let err = apply(&preset, &overrides, "model.overrides")
            .unwrap_err()
            .to_string();
        assert!(err.contains(field) && err.contains("out of range"), "{err}");
    }
    let mlp = pretrain::models::MlpAutoencoderConfig::digits();
    let err = apply(
        &mlp,
        &serde_json::json!({"hidden": [64, 1e9]}),
        "model.overrides",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("model.overrides.hidden[1]"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let options = PretrainOptions {
        out: dir.path().to_path_buf(),
        quiet: true,
        ..Default::default()
    };
    let refusal = |recipe: &Recipe| refused(recipe, dir.path());
    // Each override within bounds, their product past the parameter bound: refused by the
    // model before it allocates (2^20 x 2^20 x 12 weights per block).
    let mut wide = Recipe::load("clm-moby-dick").unwrap();
    wide.model.overrides = serde_json::json!({"d_model": 1 << 20, "n_head": 1});
    let err = refusal(&wide);
    assert!(err.contains("invalid GPT config: size of"), "{err}");
    let mut recipe = Recipe::load("simclr-fashion-mnist").unwrap();
    recipe.data.dataset = Some(BuiltinDataset::FashionMnistSample);
    recipe.objective.kind = ObjectiveKind::Mae;
    let err = refusal(&recipe);
    assert!(
        err.contains("objective.augment") && err.contains("mae does not use it"),
        "{err}"
    );
    recipe.objective.augment = None;
    let err = refusal(&recipe);
    assert!(err.contains("objective mae needs a ViT"), "{err}");
    let mae_views = with_views(&recipe, "[[objective.views]]\nsteps = []\n");
    let err = refusal(&mae_views);
    assert!(
        err.contains("objective.views") && err.contains("mae does not use it"),
        "{err}"
    );
    recipe.objective.kind = ObjectiveKind::Simclr;
    recipe.objective.mask = Some(Default::default());
    let err = refusal(&recipe);
    assert!(err.contains("objective.mask"), "{err}");
    recipe.objective.mask = None;
    recipe.train.batch_size = 16;
    for (views, cause) in [
        ("[[objective.views]]\nsteps = []\n", "not both"),
        (
            "[[objective.views]]\nsteps = [{ op = \"horizontal_flip\", p = 1.5 }]\n",
            "horizontal_flip.p",
        ),
        (
            &"[[objective.views]]\nsteps = []\n".repeat(3),
            "3 pipelines given",
        ),
    ] {
        let mut bad = with_views(&recipe, views);
        if cause == "not both" {
            bad.objective.augment = Some("simclr".into());
        }
        let err = refusal(&bad);
        assert!(
            err.contains("objective.views") && err.contains(cause),
            "{err}"
        );
    }
    // An unknown kind is refused when the recipe is read, naming the valid ones.
    let typo = recipe
        .to_toml()
        .replace("kind = \"simclr\"", "kind = \"simclrr\"");
    let err = Recipe::parse(&typo, "typo.toml").unwrap_err().to_string();
    assert!(
        err.contains("typo.toml") && err.contains("simclrr") && err.contains("vicreg"),
        "{err}"
    );
    recipe.objective.kind = ObjectiveKind::Simclr;
    let typo = recipe
        .to_toml()
        .replace("dataset = \"fashion-mnist-sample\"", "dataset = \"cifar\"");
    let err = Recipe::parse(&typo, "typo.toml").unwrap_err().to_string();
    assert!(
        err.contains("dataset")
            && err.contains("cifar")
            && err.contains("fashion-mnist-sample")
            && err.contains("spam-assassin"),
        "{err}"
    );
    // Text and images do not mix.
    recipe.data.dataset = Some(BuiltinDataset::SpamSample);
    let err = refusal(&recipe);
    assert!(
        err.contains("simclr needs images") && err.contains("mlm"),
        "{err}"
    );
    let mut text = Recipe::load("mlm-text").unwrap();
    text.data.dataset = Some(BuiltinDataset::FashionMnistSample);
    let err = refusal(&text);
    assert!(err.contains("mlm needs text data"), "{err}");
    text.data.dataset = Some(BuiltinDataset::SpamSample);
    text.model.preset = Preset::SmallCnn28;
    let err = refusal(&text);
    assert!(
        err.contains("small-cnn-28 is an image model: it needs image data"),
        "{err}"
    );
    recipe.objective.kind = ObjectiveKind::Simclr;
    recipe.data.dataset = Some(BuiltinDataset::FashionMnistSample);
    recipe.model.preset = Preset::BertTiny;
    let err = refusal(&recipe);
    assert!(err.contains("bert-tiny is a text model"), "{err}");
    if !BackendKind::Cuda.is_compiled() {
        let err = run_pretrain(
            &Recipe::load("dae-digits").unwrap(),
            BackendKind::Cuda,
            &options,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
    let err = recipe_of_run(dir.path().join("nowhere").as_path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("pre-training run directory"), "{err}");
}

#[test]
fn epochs_set_the_steps_and_the_saved_recipe_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = Recipe::load("dae-digits").unwrap();
    let options = PretrainOptions {
        out: dir.path().to_path_buf(),
        quiet: true,
        epochs: Some(1),
        ..Default::default()
    };
    let summary = run_pretrain(&recipe, BackendKind::Flex, &options).unwrap();
    // 1,348 training digits in batches of 64: 21 full batches.
    assert_eq!(summary.steps_done, 21);
    assert_eq!(recipe_of_run(dir.path()).unwrap().train.steps, 21);
}

#[test]
fn causal_lm_recipe_pretrains_a_gpt_on_the_shipped_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let mut recipe = Recipe::load("clm-moby-dick").unwrap();
    recipe.train.steps = 30;
    let summary = quiet_run(&recipe, dir.path());
    assert!(summary.finished, "{summary:?}");
    // From near-uniform over 1,024 tokens (ln 1024 = 6.93 nats) down by half a nat in 30
    // Adam steps, still inside the 40 warm-up steps (measured: 6.94 -> 6.12).
    assert!(summary.loss_start_end.0 > 6.5, "{summary:?}");
    assert!(
        summary.loss_start_end.1 < summary.loss_start_end.0 - 0.5,
        "{summary:?}"
    );
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    let (loss, bpb) = (
        last["loss"].as_f64().unwrap(),
        last["bits_per_byte"].as_f64().unwrap(),
    );
    // Bits per byte are the loss in bits spread over the bytes each token stands for: a
    // byte-level BPE token of English prose covers a few bytes.
    let bytes_per_token = loss / std::f64::consts::LN_2 / bpb;
    assert!((2.0..6.0).contains(&bytes_per_token), "{bytes_per_token}");
    assert!(dir.path().join("tokenizer.json").is_file());
    // The last 5% of the paragraphs were held out and scored beside the n-gram baselines.
    let held = summary.heldout.expect("a held-out report");
    assert!(held.tokens >= 64, "{held:?}");
    assert_eq!(held.baselines.len(), 3);
    assert!(
        held.model_bits_per_byte.is_finite() && held.bigram().is_some(),
        "{held:?}"
    );
    assert!(dir.path().join("heldout.json").is_file());

    // A GPT with MLM, or CLM on images, is refused by name.
    let refusal = |recipe: &Recipe| refused(recipe, &dir.path().join("refused"));
    let mut mlm = recipe.clone();
    mlm.objective.kind = ObjectiveKind::Mlm;
    let err = refusal(&mlm);
    assert!(err.contains("mlm needs a text encoder"), "{err}");
    let mut images = recipe.clone();
    images.data.dataset = Some(BuiltinDataset::Digits);
    let err = refusal(&images);
    assert!(err.contains("clm needs text data"), "{err}");
}

#[test]
fn a_causal_lm_run_is_probed_and_fine_tuned_as_a_text_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let mut recipe = Recipe::load("clm-moby-dick").unwrap();
    // The shipped e-mails: pre-trained on as text, then labeled ham/spam for the evaluations.
    recipe.data.dataset = Some(BuiltinDataset::SpamSample);
    recipe.data.tokenizer = Some(pretrain::data::tokenizer::TokenizerTrainConfig {
        kind: pretrain::data::tokenizer::TokenizerKind::ByteLevelBpe,
        vocab_size: 600,
        ..Default::default()
    });
    recipe.train.steps = 4;
    let summary = quiet_run(&recipe, dir.path());
    assert!(summary.finished, "{summary:?}");
    let evaluate = quick_evaluate(
        vec![
            Strategy::LinearProbe,
            Strategy::Knn,
            Strategy::Full,
            Strategy::Partial,
        ],
        3,
    );
    let options = FinetuneOptions {
        from: Some(dir.path().to_path_buf()),
        out: dir.path().join("finetune"),
        quiet: true,
    };
    let saved = recipe_of_run(dir.path()).unwrap();
    let reports = run_finetune(&saved, &evaluate, BackendKind::Flex, &options).unwrap();
    assert_eq!(reports.len(), 4);
    // Partial fine-tuning finds GPT-micro's blocks (`h.N`) and freezes the lower ones.
    let partial = &reports[3];
    assert!(
        partial.trainable_share > 0.0 && partial.trainable_share < 1.0,
        "{partial:?}"
    );
    for report in &reports {
        assert_eq!(report.architecture, "gpt", "{report:?}");
        assert!((0.0..=1.0).contains(&report.accuracy_mean), "{report:?}");
    }
    // LoRA (on the fused c_attn by default) and adapters reach into GPT's blocks and train a
    // small share of the parameters.
    let peft = EvaluateSpec {
        strategies: vec![Strategy::Lora, Strategy::Adapter],
        ..evaluate
    };
    let reports = run_finetune(&saved, &peft, BackendKind::Flex, &options).unwrap();
    assert_eq!(reports.len(), 2);
    for report in &reports {
        assert_eq!(report.architecture, "gpt", "{report:?}");
        assert!(
            report.trainable_share > 0.0 && report.trainable_share < 0.2,
            "{report:?}"
        );
    }
}
