//! The `pretrain` binary as a user runs it (this is how CI runs the demo's quick version).

use std::process::Command;

fn pretrain() -> Command {
    // As a user runs it: errors print one line unless they ask for a backtrace.
    let mut command = Command::new(env!("CARGO_BIN_EXE_pretrain"));
    command
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    command
}

/// The standard output of a run that must have succeeded (else both streams in the failure).
fn succeeded(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn pipeline_quick_writes_its_report() {
    let out = tempfile::tempdir().unwrap();
    let status = pretrain()
        .args(["pipeline", "--quick", "--out"])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("data-pipeline.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["images"], 100);
    assert_eq!(report["backend"], "flex");
    assert!(report["images_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn unknown_backend_lists_the_valid_ones() {
    let output = pretrain()
        .args(["pipeline", "--quick", "--backend", "tpu"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("valid backends: flex, ndarray, wgpu, cuda"),
        "{stderr}"
    );
}

#[test]
fn unknown_data_set_lists_the_known_ones() {
    let output = pretrain().args(["data", "imagenet"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fashion-mnist, tweets"), "{stderr}");
}

#[test]
fn models_lists_preset_parameter_counts() {
    let output = pretrain().arg("models").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("bert_tiny (with pooler and MLM head): 4,433,210 parameters"),
        "{stdout}"
    );
    assert!(stdout.contains("vit_tiny_28: "), "{stdout}");
}

#[test]
fn recipes_pretrain_and_finetune_from_the_command_line() {
    let output = pretrain().arg("recipes").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("mae-fashion-mnist") && stdout.contains("dae-digits"),
        "{stdout}"
    );

    let run = tempfile::tempdir().unwrap();
    let output = pretrain()
        .args(["pretrain", "dae-digits", "--steps", "5", "--quiet", "--out"])
        .arg(run.path())
        .output()
        .unwrap();
    let stdout = succeeded(&output);
    assert!(stdout.contains("dae-digits: 5 steps on flex"), "{stdout}");

    resume_checks_before_it_writes(run.path());

    let output = pretrain()
        .args([
            "finetune",
            "dae-digits",
            "--strategy",
            "knn",
            "--labels-per-class",
            "5,0",
        ])
        .args(["--seeds", "1", "--quiet", "--from"])
        .arg(run.path())
        .output()
        .unwrap();
    let stdout = succeeded(&output);
    assert!(stdout.contains("knn") && stdout.contains("all"), "{stdout}");
    assert!(run.path().join("finetune/knn-5.json").is_file());

    let output = pretrain()
        .args([
            "finetune",
            "dae-digits",
            "--strategy",
            "prompt-tuning",
            "--from",
        ])
        .arg(run.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("linear-probe, knn, full, partial, adapter, lora"),
        "{stderr}"
    );
}

/// The one line a refused command prints (no backtrace, no "Caused by" block).
fn refused(output: &std::process::Output) -> String {
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    stderr
}

/// On the 5-step dae-digits run in `run`: every refused resume leaves the saved recipe as it
/// was; raising the steps continues the run.
fn resume_checks_before_it_writes(run: &std::path::Path) {
    let recipe = std::fs::read(run.join("recipe.toml")).unwrap();
    let resume = |args: &[&str]| {
        pretrain()
            .args(["pretrain", "--quiet", "--resume"])
            .arg(run)
            .args(args)
            .output()
            .unwrap()
    };
    for (args, expected) in [
        (&["--steps", "0"][..], "train.steps"),
        (&["--seed", "9"], "seed: saved 0 vs asked 9"),
        (&[], "already completed 5 steps"),
        (&["mae-fashion-mnist", "--steps", "9"], "cannot resume"),
    ] {
        let stderr = refused(&resume(args));
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(run.join("recipe.toml")).unwrap(), recipe);
    }
    // Refused by the argument parser (its usage lines follow the error line).
    for (output, expected) in [
        (resume(&["--out", "elsewhere"]), "--out"),
        (
            pretrain()
                .args(["pretrain", "dae-digits", "--epochs", "0"])
                .output()
                .unwrap(),
            "--epochs",
        ),
    ] {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error:") && first.contains(expected),
            "{stderr}"
        );
    }
    let stdout = succeeded(&resume(&["dae-digits", "--steps", "7"]));
    assert!(stdout.contains("dae-digits: 7 steps"), "{stdout}");
}

#[test]
fn demo_quick_compares_every_method_and_writes_the_report() {
    let out = tempfile::tempdir().unwrap();
    let output = pretrain()
        .args(["demo", "--quick", "--quiet", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("| pretrained-linear-probe | simclr-fashion-mnist |"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    let results = report["results"].as_array().unwrap();
    let methods: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods.into_iter().collect::<Vec<_>>(),
        [
            "pretrained-finetune",
            "pretrained-knn",
            "pretrained-linear-probe",
            "random-init-linear-probe",
            "raw-pixels-logreg",
            "scratch"
        ]
    );
    for r in results {
        let accuracy = r["accuracy_mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{r}");
        assert!(r["labels_per_class"].is_null() || r["labels_per_class"].as_u64().is_some());
        // Text rows are named after the labeled text set; raw pixels exist for images only.
        let text = r["objective"] == "mlm";
        let dataset = if text {
            "spam-sample"
        } else {
            "fashion-mnist-sample"
        };
        assert_eq!(r["dataset"], dataset, "{r}");
        assert!(!(text && r["method"] == "raw-pixels-logreg"));
        assert!(r["seeds"].as_array().is_some_and(|s| s.len() == 1));
    }
    // Every objective, raw pixels without one.
    for objective in ["mae", "simclr", "mlm"] {
        assert!(results.iter().any(|r| r["objective"] == objective));
    }
    let text_methods: std::collections::BTreeSet<&str> = results
        .iter()
        .filter(|r| r["objective"] == "mlm")
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert!(
        text_methods.contains("pretrained-finetune") && text_methods.contains("scratch"),
        "{text_methods:?}"
    );
    let checks = report["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["name"]
            .as_str()
            .unwrap()
            .starts_with("text (spam-sample, 1 labels/class)")),
        "{checks:?}"
    );
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("`accuracy_vs_labels_spam-sample.png`"), "{md}");
    // The causal LM: held-out bits per byte against the baselines, the bar, few-shot rows at
    // k = 0 and 1, a generation per prompt.
    let causal = &report["causal_lm"][0];
    assert_eq!(causal["recipe"], "clm-shakespeare", "{causal}");
    let heldout = &causal["heldout"];
    assert!(
        heldout["model_bits_per_byte"].as_f64().unwrap() > 0.0,
        "{causal}"
    );
    assert_eq!(
        heldout["baselines"].as_array().unwrap().len(),
        3,
        "{causal}"
    );
    let shots: Vec<u64> = causal["few_shot"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["shots"].as_u64().unwrap())
        .collect();
    assert_eq!(shots, [0, 1], "{causal}");
    assert_eq!(causal["samples"].as_array().unwrap().len(), 3, "{causal}");
    assert!(
        checks.iter().any(|c| c["name"]
            .as_str()
            .unwrap()
            .starts_with("causal LM (clm-shakespeare): held-out bits per byte")),
        "{checks:?}"
    );
    assert!(
        md.contains("## Causal language model: clm-shakespeare"),
        "{md}"
    );
    assert!(md.contains("| bigram (add-0.1) |"), "{md}");
    for plot in [
        "accuracy_vs_labels.png",
        "accuracy_vs_labels_spam-sample.png",
        "pretraining_loss.png",
        "causal_lm_loss.png",
    ] {
        let bytes = std::fs::read(out.path().join(plot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{plot} is not a PNG");
    }
}

#[test]
fn bench_step_prints_one_json_line_with_the_measurements() {
    let output = pretrain()
        .args(["bench", "step", "--model", "simclr-cnn", "--batch", "4"])
        .args(["--steps", "2", "--warmup", "1", "--threads", "1"])
        .output()
        .unwrap();
    let stdout = succeeded(&output);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let result: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        (&result["model"], &result["backend"]),
        (&"simclr-cnn".into(), &"flex".into())
    );
    assert_eq!(
        (result["batch"].as_u64(), result["threads"].as_u64()),
        (Some(4), Some(1))
    );
    for key in ["samples_per_sec", "ms_per_step_median", "peak_rss_mb"] {
        assert!(
            result[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {result}"
        );
    }
    let bad = pretrain()
        .args(["bench", "step", "--model", "resnet-50"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("valid: mae-vit-tiny"));
}

/// `pretrain <command> <recipe> <args> --quiet --out|--from <dir>` as a user runs it.
fn on_recipe(
    command: &str,
    recipe: &std::path::Path,
    args: &[&str],
    dir_flag: &str,
    dir: &std::path::Path,
) -> std::process::Output {
    pretrain()
        .arg(command)
        .arg(recipe)
        .args(args)
        .args(["--quiet", dir_flag])
        .arg(dir)
        .output()
        .unwrap()
}

/// `examples/own_data/<name>` copied into `dir` (its paths are relative to the file).
fn example_recipe(name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/own_data");
    let path = dir.join(name);
    std::fs::copy(examples.join(name), &path).unwrap();
    path
}

#[test]
fn own_image_folder_pretrains_prepares_shards_and_fine_tunes() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = example_recipe("image-folder.toml", dir.path());
    // The shipped Fashion-MNIST sample as RGB PNGs, one folder per class.
    for (i, item) in pretrain::data::samples::fashion_mnist()
        .unwrap()
        .iter()
        .enumerate()
    {
        let class = dir
            .path()
            .join(format!("photos/class-{}", item.label.unwrap()));
        std::fs::create_dir_all(&class).unwrap();
        let rgb: Vec<u8> = item
            .image
            .pixels
            .iter()
            .flat_map(|&p| [p, p / 2, 255 - p])
            .collect();
        image::RgbImage::from_raw(28, 28, rgb)
            .unwrap()
            .save(class.join(format!("{i}.png")))
            .unwrap();
    }
    let run = dir.path().join("run");
    let output = on_recipe("pretrain", &recipe, &["--steps", "3"], "--out", &run);
    let stdout = succeeded(&output);
    assert!(stdout.contains("own-image-folder: 3 steps"), "{stdout}");
    let few_labels = ["--labels-per-class", "2", "--seeds", "1"];
    let output = on_recipe(
        "finetune",
        &recipe,
        &[&["--strategy", "knn"][..], &few_labels].concat(),
        "--from",
        &run,
    );
    let stdout = succeeded(&output);
    assert!(stdout.contains("knn"), "{stdout}");

    let shards = dir.path().join("shards");
    let output = pretrain()
        .args(["data", "prepare"])
        .arg(&recipe)
        .args(["--quiet", "--out"])
        .arg(&shards)
        .output()
        .unwrap();
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("100 items in 1 shards (0 skipped)"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&recipe).unwrap();
    let folder_line = text.lines().find(|l| l.starts_with("source =")).unwrap();
    let on_shards = dir.path().join("on-shards.toml");
    std::fs::write(
        &on_shards,
        text.replace(
            folder_line,
            "source = { kind = \"shards\", path = \"shards\" }",
        ),
    )
    .unwrap();
    let output = on_recipe(
        "pretrain",
        &on_shards,
        &["--steps", "2"],
        "--out",
        &dir.path().join("shards-run"),
    );
    succeeded(&output);

    // A missing folder: one line naming the recipe field and the path.
    std::fs::rename(dir.path().join("photos"), dir.path().join("moved")).unwrap();
    let output = on_recipe("pretrain", &recipe, &[], "--out", &dir.path().join("run-2"));
    let line = refused(&output);
    assert!(
        line.contains("data.source") && line.contains("photos"),
        "{line}"
    );
}

#[test]
fn own_text_folder_pretrains_and_fine_tunes_on_labeled_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = example_recipe("text-folder.toml", dir.path());
    let texts = dir.path().join("texts");
    std::fs::create_dir(&texts).unwrap();
    let moby = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/text/moby-dick");
    for entry in std::fs::read_dir(moby).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, texts.join(path.file_name().unwrap())).unwrap();
    }
    // Labeled paragraphs: does it mention the whale?
    let paragraphs = pretrain::data::samples::moby_dick_paragraphs().unwrap();
    let labeled: Vec<String> = paragraphs
        .iter()
        .take(60)
        .map(|p| {
            let label = if p.to_lowercase().contains("whale") {
                "whale"
            } else {
                "other"
            };
            serde_json::json!({"text": p, "label": label}).to_string()
        })
        .collect();
    std::fs::create_dir(dir.path().join("labeled")).unwrap();
    std::fs::write(
        dir.path().join("labeled/train.jsonl"),
        labeled[..40].join("\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("labeled/test.jsonl"),
        labeled[40..].join("\n"),
    )
    .unwrap();
    let run = dir.path().join("run");
    let output = on_recipe("pretrain", &recipe, &["--steps", "3"], "--out", &run);
    let stdout = succeeded(&output);
    assert!(stdout.contains("own-text-folder: 3 steps"), "{stdout}");
    assert!(run.join("tokenizer.json").is_file());
    let output = on_recipe(
        "finetune",
        &recipe,
        &[
            "--strategy",
            "linear-probe,knn",
            "--labels-per-class",
            "2",
            "--seeds",
            "1",
        ],
        "--from",
        &run,
    );
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("linear-probe") && stdout.contains("knn"),
        "{stdout}"
    );
}

#[test]
fn generate_and_few_shot_prompting_of_a_causal_lm_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("clm");
    // The built-in recipe, prompted on the shipped e-mails after training.
    let builtin = include_str!("../../../recipes/clm-moby-dick.toml");
    let recipe = dir.path().join("clm.toml");
    std::fs::write(
        &recipe,
        format!(
            "{builtin}\n[few_shot]\ndataset = \"spam-sample\"\nverbalizers = [\" ham\", \" spam\"]\n\
             shots = [0, 1, 2]\nseeds = 2\n"
        ),
    )
    .unwrap();
    let output = on_recipe("pretrain", &recipe, &["--steps", "20"], "--out", &run);
    let stdout = succeeded(&output);
    assert!(stdout.contains("clm-moby-dick: 20 steps"), "{stdout}");
    let output = on_recipe("finetune", &recipe, &[], "--from", &run);
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("few-shot prompting on spam-sample (20 test texts"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("finetune/few-shot.json")).unwrap())
            .unwrap();
    let rows = report["rows"].as_array().unwrap();
    let seeds: Vec<usize> = rows
        .iter()
        .map(|r| r["accuracies"].as_array().unwrap().len())
        .collect();
    assert_eq!(seeds, [1, 2, 2], "{report}");
    let generate_from = |prompt: &str, args: &[&str]| {
        pretrain()
            .arg("generate")
            .arg(&run)
            .args(["--prompt", prompt, "--max-tokens", "12"])
            .args(args)
            .output()
            .unwrap()
    };
    // Mid-sentence, so that the end-of-text token is not the likely next one.
    let generate = |args: &[&str]| generate_from("The whale", args);
    let samples: Vec<String> = ["1", "2", "3"]
        .iter()
        .map(|seed| succeeded(&generate(&["--seed", seed])))
        .collect();
    assert!(
        samples.iter().all(|s| s.starts_with("The whale")),
        "{samples:?}"
    );
    assert!(
        samples.iter().any(|s| s.trim().len() > "The whale".len()),
        "{samples:?}"
    );
    assert_eq!(succeeded(&generate(&["--seed", "2"])), samples[1], "seeded");
    // Recomputing the context instead of the KV cache gives the same text.
    assert_eq!(
        succeeded(&generate(&["--seed", "2", "--no-kv-cache"])),
        samples[1]
    );
    let greedy = succeeded(&generate(&["--temperature", "0"]));
    assert_eq!(
        succeeded(&generate(&["--temperature", "0", "--seed", "9"])),
        greedy
    );

    // A prompt beyond the 64-token context, bad sampling settings, and a run that is not a
    // causal LM: one line each.
    let long = "whale ".repeat(100);
    let line = refused(&generate_from(&long, &[]));
    assert!(line.contains("but the model takes 1 to 64"), "{line}");
    let line = refused(&generate(&["--top-p", "2"]));
    assert!(line.contains("top_p"), "{line}");
    // A tokenizer of another vocabulary than the weights'.
    let other = pretrain::data::tokenizer::TextTokenizer::train(
        &["a few other words to learn from".to_string()],
        &pretrain::data::tokenizer::TokenizerTrainConfig {
            vocab_size: 50,
            ..Default::default()
        },
    )
    .unwrap();
    std::fs::copy(run.join("tokenizer.json"), dir.path().join("saved.json")).unwrap();
    other.save(&run.join("tokenizer.json")).unwrap();
    let line = refused(&generate(&[]));
    assert!(
        line.contains("tokenizer.json") && line.contains("trained with"),
        "{line}"
    );
    std::fs::copy(dir.path().join("saved.json"), run.join("tokenizer.json")).unwrap();
    let dae = dir.path().join("dae");
    let output = pretrain()
        .args(["pretrain", "dae-digits", "--steps", "1", "--quiet", "--out"])
        .arg(&dae)
        .output()
        .unwrap();
    succeeded(&output);
    let output = pretrain()
        .arg("generate")
        .arg(&dae)
        .args(["--prompt", "x"])
        .output()
        .unwrap();
    let line = refused(&output);
    assert!(line.contains("not a causal language model"), "{line}");
    let output = pretrain()
        .arg("generate")
        .arg(&dae)
        .args(["--prompt", "x", "--stop", ""])
        .output()
        .unwrap();
    let line = refused(&output);
    assert!(line.contains("--stop") && line.contains("empty"), "{line}");
}

#[test]
fn a_ci_sized_scaling_sweep_fits_writes_its_report_and_reuses_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    // Three tiny widths and depths of the shipped Moby Dick recipe at two budgets of a few
    // steps; a budget below one step of any size, and a preset that is not a GPT.
    let sweep = || {
        pretrain()
            .args([
                "scaling",
                "clm-moby-dick",
                "--sizes",
                "16x1,32x1,32x2,bert-tiny",
                "--flops",
                "1e8,2e9,5e9",
                "--resamples",
                "20",
                "--quiet",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap()
    };
    let stdout = succeeded(&sweep());
    assert!(
        stdout.contains("# Scaling sweep of `clm-moby-dick`"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scaling.json")).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6, "{report}");
    for run in runs {
        let (steps, tokens) = (
            run["steps"].as_u64().unwrap(),
            run["samples"].as_u64().unwrap(),
        );
        // 32 windows of 64 tokens per step, and never more FLOPs than the budget.
        assert!(steps >= 1 && tokens == steps * 32 * 64, "{run}");
        assert!(run["flops"].as_f64().unwrap() <= run["budget"].as_f64().unwrap());
        assert!(run["loss"].as_f64().unwrap() > 0.0);
        assert!(run["heldout_nats_per_token"].as_f64().unwrap() > 0.0);
        assert!(run["kaplan_flops"].as_f64().unwrap() > 0.0);
    }
    let skipped = report["skipped"].as_array().unwrap();
    let reasons: Vec<&str> = skipped
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("below one step"))
            .count(),
        3,
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("bert-tiny is not a GPT")),
        "{reasons:?}"
    );
    // Six points: the parametric fit runs; without the largest run, five are too few.
    assert!(report["parametric"]["law"]["alpha"].is_f64(), "{report}");
    assert!(
        report["extrapolation_error"]
            .as_str()
            .unwrap()
            .contains("needs at least 6 runs"),
        "{report}"
    );
    for png in ["loss-vs-params", "loss-vs-compute", "isoflop", "residuals"] {
        let img = image::open(out.join(format!("{png}.png"))).unwrap();
        assert_eq!((img.width(), img.height()), (1000, 640));
    }
    let md = std::fs::read_to_string(out.join("scaling.md")).unwrap();
    assert!(
        md.contains("Kaplan et al. 2020") && md.contains("bert-tiny"),
        "{md}"
    );

    // Run again: every run is read back, none trained again.
    let record = out.join("runs/16x1x1/2.000e9/scaling-run.json");
    let metrics = out.join("runs/16x1x1/2.000e9/metrics.jsonl");
    let before = (
        std::fs::read(&record).unwrap(),
        std::fs::read(&metrics).unwrap(),
    );
    succeeded(&sweep());
    let after = (
        std::fs::read(&record).unwrap(),
        std::fs::read(&metrics).unwrap(),
    );
    assert_eq!(before, after);
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scaling.json")).unwrap()).unwrap();
    assert_eq!(again["runs"], report["runs"]);

    // The same sweep of a changed recipe refuses to reuse the runs made with the old one.
    let changed = dir.path().join("clm-moby-dick.toml");
    let builtin = include_str!("../../../recipes/clm-moby-dick.toml");
    assert!(builtin.contains("lr = 1e-3"));
    std::fs::write(&changed, builtin.replace("lr = 1e-3", "lr = 2e-3")).unwrap();
    let output = pretrain()
        .arg("scaling")
        .arg(&changed)
        .args(["--sizes", "16x1", "--flops", "2e9", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = refused(&output);
    assert!(
        stderr.contains("16x1x1/2.000e9/recipe.toml") && stderr.contains("another recipe"),
        "{stderr}"
    );
}

#[test]
fn scaling_refuses_bad_sizes_and_recipes_it_cannot_measure() {
    let dir = tempfile::tempdir().unwrap();
    let scaling = |recipe: &str, sizes: &str| {
        pretrain()
            .args([
                "scaling", recipe, "--sizes", sizes, "--flops", "1e9", "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let output = scaling("clm-moby-dick", "12x");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"12x\" is not a size"), "{stderr}");
    let stderr = refused(&scaling("simclr-fashion-mnist", "32x1"));
    assert!(
        stderr.contains("scaling sweeps run causal-LM (clm) recipes")
            && stderr.contains("masked-autoencoder (mae) recipes"),
        "{stderr}"
    );
    let output = pretrain()
        .args([
            "scaling",
            "clm-moby-dick",
            "--sizes",
            "16x1",
            "--flops",
            "1e9",
        ])
        .args(["--probe-labels", "5", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = refused(&output);
    assert!(
        stderr.contains("--probe-labels") && stderr.contains("mae recipes"),
        "{stderr}"
    );
    // A budget of more steps than any run could take (it saturated the step count and trained
    // for ever) is refused before the sweep's first run.
    let out = dir.path().join("too-large");
    let output = pretrain()
        .args(["scaling", "clm-moby-dick", "--sizes", "16x1"])
        .args(["--flops", "1e9,1e40", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = refused(&output);
    assert!(
        stderr.contains("--flops") && stderr.contains("1.000e40"),
        "{stderr}"
    );
    let runs = std::fs::read_dir(&out).map_or(0, |entries| {
        entries
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count()
    });
    assert_eq!(runs, 0, "a run started before the refusal");
}

#[test]
fn an_image_scaling_sweep_measures_the_probe_error_of_mae_encoders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    // The MAE recipe on the 100 shipped Fashion-MNIST images, 10 per step; three encoder
    // sizes at two budgets of a few steps, and a budget below one step of any size.
    let recipe = dir.path().join("mae-sample.toml");
    let builtin = include_str!("../../../recipes/mae-fashion-mnist.toml");
    assert!(
        builtin.contains("dataset = \"fashion-mnist\"") && builtin.contains("batch_size = 256")
    );
    let sample = builtin
        .replace(
            "dataset = \"fashion-mnist\"",
            "dataset = \"fashion-mnist-sample\"",
        )
        .replace("batch_size = 256", "batch_size = 10");
    std::fs::write(&recipe, sample).unwrap();
    let sweep = |labels: &str| {
        pretrain()
            .arg("scaling")
            .arg(&recipe)
            .args(["--sizes", "16x1,32x1,32x2", "--flops", "1e6,5e8,2e9"])
            .args([
                "--probe-labels",
                labels,
                "--resamples",
                "10",
                "--quiet",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap()
    };
    let stdout = succeeded(&sweep("2"));
    assert!(
        stdout.contains("images") && stdout.contains("linear-probe error (2 labels per class)"),
        "{stdout}"
    );
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("scaling.json")).unwrap()).unwrap()
    };
    let report = read();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6, "{report}");
    for run in runs {
        let steps = run["steps"].as_u64().unwrap();
        assert!(
            steps >= 1 && run["samples"].as_u64().unwrap() == steps * 10,
            "{run}"
        );
        assert!(run["flops"].as_f64().unwrap() <= run["budget"].as_f64().unwrap());
        let accuracy = run["probe_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{run}");
        assert!((run["loss"].as_f64().unwrap() - (1.0 - accuracy)).abs() < 1e-12);
        assert!(run["kaplan_flops"].is_null() && run["heldout_nats_per_token"].is_null());
        assert_eq!(run["measure"]["ProbeError"]["labels_per_class"], 2, "{run}");
    }
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 3, "{report}");
    assert!(report["flops_vs_6nd"].is_null(), "{report}");
    assert!(report["flops_per_param_sample"].as_f64().unwrap() > 6.0);
    assert!(out.join("runs/32x2x1/2.000e9/probe").is_dir());

    // Another label budget (the sample's rarest class has 2 training images): the runs are
    // probed again, not trained again.
    let metrics = out.join("runs/32x2x1/2.000e9/metrics.jsonl");
    let before = std::fs::read(&metrics).unwrap();
    succeeded(&sweep("1"));
    assert_eq!(std::fs::read(&metrics).unwrap(), before);
    for run in read()["runs"].as_array().unwrap() {
        assert_eq!(run["measure"]["ProbeError"]["labels_per_class"], 1, "{run}");
    }
}

/// `pretrain export-hf RUN --out OUT`.
fn export_hf(run: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    pretrain()
        .arg("export-hf")
        .arg(run)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// `pretrain embed RUN --input INPUT --out OUT`.
fn embed_ids(
    run: &std::path::Path,
    input: &std::path::Path,
    out: &std::path::Path,
) -> std::process::Output {
    pretrain()
        .arg("embed")
        .arg(run)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn a_causal_lm_run_exports_to_the_hugging_face_layout_and_embeds_token_ids() {
    use pretrain::burn::backend::Flex;
    use pretrain::burn::tensor::{Int, Tensor, TensorData};

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let output = pretrain()
        .args([
            "pretrain",
            "clm-moby-dick",
            "--steps",
            "2",
            "--quiet",
            "--out",
        ])
        .arg(&run)
        .output()
        .unwrap();
    succeeded(&output);
    let export = dir.path().join("gpt2");
    assert!(succeeded(&export_hf(&run, &export)).contains("GPT2LMHeadModel"));
    let weights = std::fs::read(export.join("model.safetensors")).unwrap();
    let line = refused(&export_hf(&run, &export));
    assert!(
        line.contains("--out") && line.contains("already holds"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(export.join("model.safetensors")).unwrap(),
        weights
    );
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(export.join(file).is_file(), "{file}");
    }
    let embed = |ids: &str| {
        let input = dir.path().join("ids.json");
        std::fs::write(&input, ids).unwrap();
        embed_ids(&run, &input, &dir.path().join("out.json"))
    };
    succeeded(&embed(
        r#"{"input_ids": [[5, 9, 3], [4, 4, 0]], "attention_mask": [[1, 1, 1], [1, 1, 0]]}"#,
    ));
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.json")).unwrap())
            .unwrap();
    assert_eq!(
        (rows[0]["tokens"].as_u64(), rows[1]["tokens"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(rows[1]["pooled"], rows[1]["last_hidden_state"][1]);

    // The exported checkpoint, read back, computes the logits `embed` wrote.
    let (_, model) = pretrain::hf::gpt2::load::<Flex>(&export, &Default::default()).unwrap();
    let tokens = Tensor::<Flex, 2, Int>::from_data(
        TensorData::new(vec![5i64, 9, 3], [1, 3]),
        &Default::default(),
    );
    let logits: Vec<f32> = model.forward(tokens).into_data().to_vec().unwrap();
    let written: Vec<f32> = rows[0]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    assert_eq!(logits.len(), written.len());
    let worst = logits
        .iter()
        .zip(&written)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "{worst}");

    // Bad input: an id outside the vocabulary, segment ids for a GPT, a folder that is not a
    // run.
    let line = refused(&embed(r#"{"input_ids": [[5, 100000]]}"#));
    assert!(
        line.contains("row 0 position 1: id 100000 is outside the vocabulary"),
        "{line}"
    );
    let line = refused(&embed(
        r#"{"input_ids": [[5, 1]], "token_type_ids": [[0, 1]]}"#,
    ));
    assert!(line.contains("no segment embeddings"), "{line}");
    let line = refused(&export_hf(dir.path(), &dir.path().join("nothing")));
    assert!(line.contains("recipe.toml"), "{line}");

    // Imported back as a run directory, the checkpoint generates what the run does.
    let imported = dir.path().join("imported");
    let output = import_hf(&export, &imported, std::path::Path::new("clm-moby-dick"));
    assert!(succeeded(&output).contains("imported a GPT-2"));
    let generate = |run: &std::path::Path| {
        let output = pretrain()
            .arg("generate")
            .arg(run)
            .args([
                "--prompt",
                "The whale",
                "--max-tokens",
                "12",
                "--temperature",
                "0",
            ])
            .output()
            .unwrap();
        succeeded(&output)
    };
    assert_eq!(generate(&imported), generate(&run));
}

#[test]
fn a_masked_lm_run_exports_as_a_bert_for_masked_lm_and_embeds_with_segments() {
    let dir = tempfile::tempdir().unwrap();
    // The text recipe on the shipped spam sample (20 texts), 8 per step.
    let recipe = dir.path().join("mlm-sample.toml");
    let builtin = include_str!("../../../recipes/mlm-text.toml");
    assert!(builtin.contains("dataset = \"tweets\"") && builtin.contains("batch_size = 64"));
    let sample = builtin
        .replace("dataset = \"tweets\"", "dataset = \"spam-sample\"")
        .replacen("batch_size = 64", "batch_size = 8", 1);
    std::fs::write(&recipe, sample).unwrap();
    let run = dir.path().join("run");
    let output = pretrain()
        .arg("pretrain")
        .arg(&recipe)
        .args(["--steps", "2", "--quiet", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    succeeded(&output);
    let export = dir.path().join("bert");
    assert!(succeeded(&export_hf(&run, &export)).contains("BertForMaskedLM"));
    let imported =
        pretrain::hf::bert::load::<pretrain::burn::backend::Flex>(&export, &Default::default())
            .unwrap();
    assert_eq!(imported.initialized, ["pooler"]);
    let input = dir.path().join("ids.json");
    std::fs::write(
        &input,
        r#"{"input_ids": [[5, 9, 3], [4, 4, 0]], "attention_mask": [[1, 1, 1], [1, 1, 0]],
            "token_type_ids": [[0, 0, 1], [0, 1, 0]]}"#,
    )
    .unwrap();
    let out = dir.path().join("out.json");
    succeeded(&embed_ids(&run, &input, &out));
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(rows[1]["tokens"], 2);
    assert_eq!(rows[1]["logits"].as_array().unwrap().len(), 2);
    assert_eq!(
        rows[0]["pooled"].as_array().unwrap().len(),
        imported.config.hidden
    );

    // The export imported back as a run directory: the same outputs, and fine-tuning from it.
    let again = dir.path().join("imported");
    let output = import_hf(&export, &again, &recipe);
    assert!(succeeded(&output).contains("imported a BERT"));
    let out_again = dir.path().join("again.json");
    succeeded(&embed_ids(&again, &input, &out_again));
    let rows_again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_again).unwrap()).unwrap();
    // The pooler is not exported (BertForMaskedLM has none): everything else is the run's.
    for r in 0..2 {
        for field in ["tokens", "last_hidden_state", "logits"] {
            assert!(rows_again[r][field] == rows[r][field], "row {r} {field}");
        }
    }
    assert!(succeeded(&knn_from(&recipe, &again)).contains("knn"));
    // ... and pre-training continues from it, with its tokenizer.
    let continued = dir.path().join("continued");
    let output = pretrain()
        .arg("pretrain")
        .arg(again.join("recipe.toml"))
        .arg("--init-from")
        .arg(&again)
        .args(["--steps", "2", "--quiet", "--out"])
        .arg(&continued)
        .output()
        .unwrap();
    succeeded(&output);
    assert_eq!(
        std::fs::read(continued.join("tokenizer.json")).unwrap(),
        std::fs::read(again.join("tokenizer.json")).unwrap()
    );

    // Refused: a run directory that exists, a recipe of another objective, another model.
    let line = refused(&import_hf(&export, &again, &recipe));
    assert!(line.contains("already holds a run"), "{line}");
    let line = refused(&import_hf(
        &export,
        &dir.path().join("other"),
        std::path::Path::new("clm-moby-dick"),
    ));
    assert!(
        line.contains("a bert checkpoint needs a mlm recipe"),
        "{line}"
    );
    let config = export.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"bert\"", "\"roberta\"")).unwrap();
    let line = refused(&import_hf(&export, &dir.path().join("other"), &recipe));
    assert!(
        line.contains("model_type \"roberta\" is not supported"),
        "{line}"
    );
}

/// `pretrain finetune RECIPE --from RUN` by k-NN at 2 labels per class, one seed.
fn knn_from(recipe: &std::path::Path, run: &std::path::Path) -> std::process::Output {
    pretrain()
        .arg("finetune")
        .arg(recipe)
        .args([
            "--strategy",
            "knn",
            "--labels-per-class",
            "2",
            "--seeds",
            "1",
        ])
        .args(["--quiet", "--from"])
        .arg(run)
        .output()
        .unwrap()
}

/// `pretrain import-hf CHECKPOINT --out RUN --recipe RECIPE`.
fn import_hf(
    checkpoint: &std::path::Path,
    run: &std::path::Path,
    recipe: &std::path::Path,
) -> std::process::Output {
    pretrain()
        .arg("import-hf")
        .arg(checkpoint)
        .arg("--out")
        .arg(run)
        .arg("--recipe")
        .arg(recipe)
        .output()
        .unwrap()
}

#[test]
fn a_masked_autoencoder_run_exports_as_a_vit_mae_and_embeds_images() {
    use pretrain::burn::backend::Flex;
    use pretrain::burn::tensor::{Tensor, TensorData};

    let dir = tempfile::tempdir().unwrap();
    // The MAE recipe on the shipped 100 Fashion-MNIST images, 16 per step.
    let recipe = dir.path().join("mae-sample.toml");
    let builtin = include_str!("../../../recipes/mae-fashion-mnist.toml");
    assert!(
        builtin.contains("dataset = \"fashion-mnist\"") && builtin.contains("batch_size = 256")
    );
    let sample = builtin
        .replace(
            "dataset = \"fashion-mnist\"",
            "dataset = \"fashion-mnist-sample\"",
        )
        .replacen("batch_size = 256", "batch_size = 16", 1);
    std::fs::write(&recipe, sample).unwrap();
    let run = dir.path().join("run");
    let output = pretrain()
        .arg("pretrain")
        .arg(&recipe)
        .args(["--steps", "2", "--quiet", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    succeeded(&output);

    // Two images of 28x28 and, for 16 patches of 7x7, the masking noise.
    let pixels: Vec<f32> = (0..2 * 28 * 28)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let nested: Vec<Vec<Vec<Vec<f32>>>> = pixels
        .chunks(28 * 28)
        .map(|image| vec![image.chunks(28).map(<[f32]>::to_vec).collect()])
        .collect();
    let noise: Vec<Vec<f32>> = (0..2)
        .map(|r| {
            (0..16)
                .map(|p| ((p * 7 + r * 3) % 16) as f32 / 16.0)
                .collect()
        })
        .collect();
    let embed = |input: serde_json::Value| {
        let path = dir.path().join("images.json");
        std::fs::write(&path, input.to_string()).unwrap();
        let out = dir.path().join("out.json");
        let output = embed_ids(&run, &path, &out);
        let rows = output
            .status
            .success()
            .then(|| serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap());
        (output, rows)
    };
    let (output, masked) = embed(serde_json::json!({"pixel_values": nested, "noise": noise}));
    succeeded(&output);
    let masked: serde_json::Value = masked.unwrap();
    // 16 x 0.25 = 4 patches kept, with the class token; 16 patches of 49 pixels predicted.
    assert_eq!(masked[0]["tokens"], 5);
    assert_eq!(masked[1]["logits"].as_array().unwrap().len(), 16);
    assert_eq!(masked[1]["logits"][0].as_array().unwrap().len(), 49);

    let flatten = |value: &serde_json::Value| -> Vec<f32> {
        value
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter())
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let worst = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let device = Default::default();
    let images = Tensor::<Flex, 4>::from_data(TensorData::new(pixels, [2, 1, 28, 28]), &device);

    // The whole MAE, read back, predicts what `embed` wrote for the same noise.
    let export = dir.path().join("vit-mae");
    assert!(succeeded(&export_hf(&run, &export)).contains("ViTMAEForPreTraining"));
    assert!(!export.join("tokenizer.json").exists());
    let mae = pretrain::hf::vit_mae::load::<Flex>(&export, &device).unwrap();
    assert_eq!(mae.training.mask_ratio, 0.75);
    let noise_flat: Vec<f32> = noise.concat();
    let (keep, restore) = pretrain::hf::vit_mae::masking_from_noise(&noise_flat, 16, 0.75);
    let predicted: Vec<f32> = mae
        .model
        .forward(
            images.clone(),
            Tensor::from_data(TensorData::new(keep, [2, 4]), &device),
            Tensor::from_data(TensorData::new(restore, [2, 16]), &device),
        )
        .into_data()
        .to_vec()
        .unwrap();
    let written: Vec<f32> = (0..2).flat_map(|r| flatten(&masked[r]["logits"])).collect();
    assert!(worst(&predicted, &written) < 1e-5);

    // The encoder alone, as a ViTModel, encodes every patch as `embed` without noise does.
    let encoder = dir.path().join("vit");
    let mut command = pretrain();
    command
        .arg("export-hf")
        .arg(&run)
        .arg("--out")
        .arg(&encoder);
    let output = command.arg("--encoder-only").output().unwrap();
    assert!(succeeded(&output).contains("ViTModel"));
    let vit = pretrain::hf::vit::load::<Flex>(&encoder, &device).unwrap();
    let (output, full) = embed(serde_json::json!({"pixel_values": nested}));
    succeeded(&output);
    let full: serde_json::Value = full.unwrap();
    assert_eq!(full[0]["tokens"], 17);
    assert!(full[0].get("logits").is_none(), "{}", full[0]);
    let hidden: Vec<f32> = vit
        .model
        .forward_tokens(images)
        .into_data()
        .to_vec()
        .unwrap();
    let written: Vec<f32> = (0..2)
        .flat_map(|r| flatten(&full[r]["last_hidden_state"]))
        .collect();
    assert!(worst(&hidden, &written) < 1e-5);

    // Bad input: an image of another size, noise for other patches, --encoder-only elsewhere.
    let narrow = vec![vec![vec![vec![0.0f32; 27]; 28]]];
    let (output, _) = embed(serde_json::json!({ "pixel_values": narrow }));
    let line = refused(&output);
    assert!(
        line.contains("pixel_values image 0 is not [1, 28, 28]"),
        "{line}"
    );
    let short = vec![vec![0.5f32; 9]; 2];
    let (output, _) = embed(serde_json::json!({"pixel_values": nested, "noise": short}));
    assert!(refused(&output).contains("noise is not [2, 16]"));
    let (output, _) = embed(serde_json::json!({"input_ids": [[1, 2]]}));
    assert!(refused(&output).contains("is not pixel values as JSON"));

    // The ViT, imported back as a run directory, gives the run's nearest-neighbour accuracy.
    let imported = dir.path().join("imported");
    let output = import_hf(&encoder, &imported, &recipe);
    assert!(succeeded(&output).contains("imported a ViT"));
    let knn = |run: &std::path::Path| -> serde_json::Value {
        succeeded(&knn_from(&recipe, run));
        let report = std::fs::read_to_string(run.join("finetune/knn-2.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&report).unwrap()["accuracy_mean"].clone()
    };
    assert_eq!(knn(&imported), knn(&run));
    let output = import_hf(&export, &dir.path().join("from-mae"), &recipe);
    assert!(succeeded(&output).contains("not imported: decoder"));
}

#[test]
fn pre_training_starts_from_another_run_with_init_from() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let run = |args: &[&std::ffi::OsStr]| pretrain().args(args).output().unwrap();
    let os = std::ffi::OsStr::new;
    succeeded(&run(&[
        os("pretrain"),
        os("clm-moby-dick"),
        os("--steps"),
        os("40"),
        os("--quiet"),
        os("--out"),
        first.as_os_str(),
    ]));
    let recipe = first.join("recipe.toml");
    succeeded(&run(&[
        os("pretrain"),
        recipe.as_os_str(),
        os("--init-from"),
        first.as_os_str(),
        os("--steps"),
        os("2"),
        os("--quiet"),
        os("--out"),
        second.as_os_str(),
    ]));
    let first_loss = |run: &std::path::Path| -> f64 {
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let line: serde_json::Value =
            serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
        line["loss"].as_f64().unwrap()
    };
    // 40 steps took the loss well down; the second run starts where the first ended.
    let (from_scratch, started) = (first_loss(&first), first_loss(&second));
    assert!(started < from_scratch - 0.5, "{started} vs {from_scratch}");
    assert_eq!(
        std::fs::read(second.join("tokenizer.json")).unwrap(),
        std::fs::read(first.join("tokenizer.json")).unwrap()
    );
    let saved = std::fs::read_to_string(second.join("recipe.toml")).unwrap();
    assert!(saved.contains("init_from"), "{saved}");

    // Refused: another objective, another model, a folder that is not a run.
    let line = refused(&run(&[
        os("pretrain"),
        os("dae-digits"),
        os("--init-from"),
        first.as_os_str(),
        os("--out"),
        dir.path().join("dae").as_os_str(),
    ]));
    assert!(
        line.contains("starts mlm, clm, mae and simmim runs, not dae"),
        "{line}"
    );
    let nano = dir.path().join("nano.toml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(text.contains("preset = \"gpt-micro\""), "{text}");
    std::fs::write(&nano, text.replace("gpt-micro", "gpt-nano")).unwrap();
    let line = refused(&run(&[
        os("pretrain"),
        nano.as_os_str(),
        os("--init-from"),
        first.as_os_str(),
        os("--out"),
        dir.path().join("other").as_os_str(),
    ]));
    assert!(
        line.contains("pre-train with that run's recipe.toml"),
        "{line}"
    );
    // Same model, another tokenizer setting: the run would not keep what the recipe asks.
    let line = refused(&run(&[
        os("pretrain"),
        os("clm-shakespeare"),
        os("--init-from"),
        first.as_os_str(),
        os("--out"),
        dir.path().join("other").as_os_str(),
    ]));
    assert!(line.contains("data.tokenizer: differs"), "{line}");
    let line = refused(&run(&[
        os("pretrain"),
        recipe.as_os_str(),
        os("--init-from"),
        dir.path().as_os_str(),
        os("--out"),
        dir.path().join("none").as_os_str(),
    ]));
    assert!(line.contains("recipe.toml"), "{line}");
}

/// A TCP port free on loopback right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The losses of `run`'s metrics.jsonl, in step order.
fn losses(run: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn two_data_parallel_workers_on_loopback_train_as_one_worker_does() {
    let single = tempfile::tempdir().unwrap();
    let pair = tempfile::tempdir().unwrap();
    let run = |dir: &std::path::Path, extra: &[&str]| {
        pretrain()
            .args(["pretrain", "dae-digits", "--steps", "6", "--quiet"])
            .args(extra)
            .arg("--out")
            .arg(dir)
            .output()
            .unwrap()
    };
    succeeded(&run(single.path(), &[]));
    // Two processes of one half-batch each, meeting at an orchestrator on loopback.
    let stdout = succeeded(&run(
        pair.path(),
        &["--workers", "2", "--collective-timeout", "60"],
    ));
    // Rank 0 alone reports and writes the run directory.
    assert_eq!(
        stdout.matches("dae-digits: 6 steps on flex").count(),
        1,
        "{stdout}"
    );
    assert!(pair.path().join("encoder.safetensors").is_file());
    let (one, two) = (losses(single.path()), losses(pair.path()));
    assert_eq!(one.len(), 6);
    assert_eq!(two.len(), 6);
    for (step, (a, b)) in one.iter().zip(&two).enumerate() {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "step {step}: {a} vs {b}");
    }
}

/// dae-digits with a million steps and a checkpoint every 5, written into `dir`: a run that
/// is still going when a test kills one of its workers.
fn endless_dae_recipe(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("dae.toml");
    let recipe = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../recipes/dae-digits.toml"
    ))
    .unwrap()
    .replace("steps = 300", "steps = 1000000")
    .replace("checkpoint_every = 100", "checkpoint_every = 5");
    std::fs::write(&path, recipe).unwrap();
    path
}

/// A child process killed when the test ends, passing or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn nodes_started_by_hand_train_and_a_dead_peer_stops_the_other_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = endless_dae_recipe(dir.path());
    let run = dir.path().join("run");
    // The multi-host steps of the README, on loopback: the orchestrator, then each node.
    let port = free_port();
    let _orchestrator = Reaped(
        pretrain()
            .args(["orchestrator", "--port", &port.to_string()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed().as_secs() < 30,
            "the orchestrator did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let node = |rank: usize| {
        pretrain()
            .arg("pretrain")
            .arg(&recipe)
            .args(["--quiet", "--collective-timeout", "10", "--out"])
            .arg(&run)
            .args(["--node-rank", &rank.to_string(), "--nodes", "2"])
            .arg("--orchestrator")
            .arg(format!("ws://127.0.0.1:{port}"))
            .arg("--node-address")
            .arg(format!("ws://127.0.0.1:{}", free_port()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut survivor = Reaped(node(0));
    let mut victim = Reaped(node(1));
    while !run.join("checkpoints/latest").is_file() {
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint after two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    victim.0.kill().unwrap();
    let killed = std::time::Instant::now();
    let status = loop {
        if let Some(status) = survivor.0.try_wait().unwrap() {
            break status;
        }
        assert!(killed.elapsed().as_secs() < 60, "the survivor still waits");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let waited = killed.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut survivor.0.stderr.take().unwrap(), &mut stderr).unwrap();
    let stderr = refused(&std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: stderr.into_bytes(),
    });
    // Either burn-collective reports the lost peer, or the watchdog gives up waiting for it.
    assert!(stderr.contains("data-parallel worker 0"), "{stderr}");
    assert!(
        waited.as_secs() < 10 + 10,
        "stopped {waited:?} after the kill"
    );
}

#[test]
fn a_killed_worker_stops_the_run_naming_it_and_the_checkpoint_resumes() {
    use pretrain::train::launch::{LaunchError, LocalWorkers};
    let dir = tempfile::tempdir().unwrap();
    let recipe = endless_dae_recipe(dir.path());
    let run = dir.path().join("run");
    let exe = env!("CARGO_BIN_EXE_pretrain");
    // Each worker is `sh -c SCRIPT sh NODE_ARGS...`: worker 1 is killed (SIGKILL) 8 s in.
    let script = format!(
        "if [ \"$2\" = 1 ]; then (sleep 8; kill -9 $$) & fi; \
         exec '{exe}' pretrain '{}' --quiet --out '{}' \"$@\"",
        recipe.display(),
        run.display()
    );
    let launch = LocalWorkers {
        workers: 2,
        program: "sh".into(),
        worker_args: vec!["-c".into(), script.into(), "sh".into()],
        orchestrator_args: vec![
            "-c".into(),
            format!("exec '{exe}' orchestrator \"$@\"").into(),
            "sh".into(),
        ],
        threads_per_worker: 1,
    };
    let started = std::time::Instant::now();
    let error = launch.run().unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, LaunchError::WorkerFailed { rank: 1, .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("worker 1 was killed by signal 9"),
        "{error}"
    );
    assert!(took.as_secs() < 8 + 30, "stopped after {took:?}");
    // The newest checkpoint is whole: one worker resumes it for 3 more steps.
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let done: usize = latest.trim().trim_start_matches("step-").parse().unwrap();
    assert!(done >= 5, "{latest}");
    let target = (done + 3).to_string();
    let output = pretrain()
        .args(["pretrain", "--quiet", "--steps", &target, "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    let stdout = succeeded(&output);
    assert!(stdout.contains(&format!("{target} steps")), "{stdout}");
}

#[test]
fn data_parallel_setup_errors_are_one_line() {
    let run = tempfile::tempdir().unwrap();
    let node = |rank: &str, orchestrator: u16, address: u16| {
        pretrain()
            .args(["pretrain", "dae-digits", "--steps", "2", "--quiet"])
            .args(["--node-rank", rank, "--nodes", "2", "--orchestrator"])
            .arg(format!("ws://127.0.0.1:{orchestrator}"))
            .arg("--node-address")
            .arg(format!("ws://127.0.0.1:{address}"))
            .arg("--out")
            .arg(run.path())
            .output()
            .unwrap()
    };
    let stderr = refused(&node("2", free_port(), free_port()));
    assert!(stderr.contains("rank 2 is not in 0..2"), "{stderr}");
    let stderr = refused(&node("0", free_port(), free_port()));
    assert!(
        stderr.contains("cannot be reached") && stderr.contains("pretrain orchestrator --port"),
        "{stderr}"
    );
    let taken = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let stderr = refused(&node("0", free_port(), port));
    assert!(
        stderr.contains(&format!("port {port} cannot be used")),
        "{stderr}"
    );
    let stderr = refused(
        &pretrain()
            .args(["orchestrator", "--port", &port.to_string()])
            .output()
            .unwrap(),
    );
    assert!(stderr.contains(&format!("port {port}")), "{stderr}");
}
