//! Recipes over a user's own data: sources in recipes, shards, evaluation splits.

use std::path::Path;

use pretrain::backend::BackendKind;
use pretrain::data::data_source::DataSource;
use pretrain::data::prepare::{PrepareOptions, prepare};
use pretrain_recipes::{PretrainOptions, Recipe, run_pretrain};

fn fashion_idx() -> DataSource {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist-sample");
    DataSource::Idx {
        images: dir.join("t10k-images-idx3-ubyte.gz"),
        labels: Some(dir.join("t10k-labels-idx1-ubyte.gz")),
    }
}

/// SimCLR with the small CNN over `source`, 9 steps of 16 images (an epoch of the 100 images
/// is 6 steps, so the run crosses into a second epoch).
fn simclr_on(source: DataSource) -> Recipe {
    let mut recipe = Recipe::load("simclr-fashion-mnist").unwrap();
    recipe.data.dataset = None;
    recipe.data.source = Some(source);
    recipe.train.steps = 9;
    recipe.train.batch_size = 16;
    recipe.train.checkpoint_every = 100;
    recipe
}

/// `(loss, grad_norm)` bits of every step in a run's metrics.
fn step_bits(run: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let bits = |k: &str| v[k].as_f64().unwrap().to_bits();
            (bits("loss"), bits("grad_norm"))
        })
        .collect()
}

/// A safetensors file's header (as JSON: burn writes its metadata map in hash order) and
/// tensor bytes.
fn encoder(run: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(run.join("encoder.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

fn run(recipe: &Recipe, out: &Path, stop_after: Option<usize>, resume: bool) {
    let options = PretrainOptions {
        out: out.to_path_buf(),
        quiet: true,
        stop_after,
        resume,
        ..Default::default()
    };
    run_pretrain(recipe, BackendKind::Flex, &options).unwrap();
}

#[test]
fn shards_train_bitwise_like_memory_and_resume_exactly_mid_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    let options = PrepareOptions {
        shard_bytes: 30 * (4 + 784),
        ..PrepareOptions::new(&shards)
    };
    prepare(&fashion_idx(), &options, &mut |_| {}).unwrap();

    let memory = dir.path().join("memory-run");
    run(&simclr_on(fashion_idx()), &memory, None, false);
    let on_shards = simclr_on(DataSource::Shards { path: shards });
    let whole = dir.path().join("shards-run");
    run(&on_shards, &whole, None, false);
    let expected = step_bits(&memory);
    assert_eq!(expected.len(), 9);
    assert_eq!(step_bits(&whole), expected, "shards vs memory");

    // Interrupted after step 4 (inside the first epoch), then resumed.
    let parts = dir.path().join("resumed-run");
    run(&on_shards, &parts, Some(4), false);
    assert_eq!(step_bits(&parts).len(), 4);
    run(&on_shards, &parts, None, true);
    assert_eq!(step_bits(&parts), expected, "resumed vs uninterrupted");
    assert!(
        encoder(&parts) == encoder(&whole),
        "resumed encoder differs"
    );
}

#[test]
fn recipes_name_their_own_data_and_resolve_paths_next_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
name = "mine"
description = "own data"
[data]
source = { kind = "image-folder", path = "photos", labels = "subfolders" }
[model]
preset = "small-cnn-28"
[objective]
kind = "simclr"
[evaluate]
train = { kind = "idx", images = "a", labels = "b" }
test = { kind = "idx", images = "/abs/c" }
"#;
    let file = dir.path().join("mine.toml");
    std::fs::write(&file, text).unwrap();
    let recipe = Recipe::load(file.to_str().unwrap()).unwrap();
    let source = recipe.data.source.as_ref().unwrap();
    assert_eq!(source.first_path(), dir.path().join("photos"));
    assert_eq!(
        recipe.evaluate.train.as_ref().unwrap().first_path(),
        dir.path().join("a")
    );
    assert_eq!(
        recipe.evaluate.test.as_ref().unwrap().first_path(),
        Path::new("/abs/c")
    );

    // Both, or neither, of dataset and source are refused.
    let both = text.replace("[data]\n", "[data]\ndataset = \"digits\"\n");
    let err = Recipe::parse(&both, "both").unwrap_err().to_string();
    assert!(err.contains("not both"), "{err}");
    let neither = text.replace(
        "source = { kind = \"image-folder\", path = \"photos\", labels = \"subfolders\" }",
        "",
    );
    let err = Recipe::parse(&neither, "neither").unwrap_err().to_string();
    assert!(err.contains("recipe field data"), "{err}");

    // A missing folder is named with the recipe field, before anything is written.
    let out = dir.path().join("run");
    let options = PretrainOptions {
        out: out.clone(),
        quiet: true,
        ..Default::default()
    };
    let err = run_pretrain(&recipe, BackendKind::Flex, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.source") && err.contains("photos"),
        "{err}"
    );
    assert!(!out.join("recipe.toml").exists());
}

#[test]
fn evaluations_split_a_labeled_source_or_refuse_an_unlabeled_one() {
    let mut recipe = simclr_on(fashion_idx());
    let task = pretrain_recipes::data::load(&recipe).unwrap();
    assert_eq!(
        (task.train.len(), task.test.len(), task.num_classes),
        (79, 21, 10)
    );
    // Stratified: every class keeps items on both sides.
    let classes = |items: &[pretrain::data::ImageItem]| {
        let mut seen: Vec<usize> = items.iter().filter_map(|i| i.label).collect();
        seen.sort();
        seen.dedup();
        seen.len()
    };
    assert_eq!((classes(&task.train), classes(&task.test)), (10, 10));
    recipe.evaluate.test_fraction = 1.5;
    let err = pretrain_recipes::data::load(&recipe)
        .unwrap_err()
        .to_string();
    assert!(err.contains("evaluate.test_fraction"), "{err}");

    let DataSource::Idx { images, .. } = fashion_idx() else {
        unreachable!()
    };
    let unlabeled = simclr_on(DataSource::Idx {
        images,
        labels: None,
    });
    let err = pretrain_recipes::data::load(&unlabeled)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.source") && err.contains("has no labels"),
        "{err}"
    );
    let mut half = unlabeled.clone();
    half.evaluate.train = Some(fashion_idx());
    let err = pretrain_recipes::data::load(&half).unwrap_err().to_string();
    assert!(
        err.contains("evaluate.test") && err.contains("both"),
        "{err}"
    );
    half.evaluate.test = Some(fashion_idx());
    let task = pretrain_recipes::data::load(&half).unwrap();
    assert_eq!((task.train.len(), task.test.len()), (100, 100));
}
