//! The fuzz targets: each feeds arbitrary bytes to one reader or loader, the way a user's file
//! reaches it (written to a scratch file when the reader takes a path), and reads everything the
//! reader returns. Errors are expected; a panic, a hang or a huge allocation is a bug.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::backend::Flex;
use burn::data::dataset::Dataset;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor};
use pretrain_data::data_source::DataSource;
use pretrain_data::prepare::{OnBadItem, PrepareOptions, TokenizerSource, prepare};
use pretrain_data::readers::cifar::{CifarLabels, read_cifar_batch};
use pretrain_data::readers::csv_features::read_csv_features;
use pretrain_data::readers::email::email_text;
use pretrain_data::readers::idx::read_idx;
use pretrain_data::readers::image_folder::{ImageFolderOptions, read_image};
use pretrain_data::readers::table::{Column, TableOptions};
use pretrain_data::readers::text::{TextUnit, read_labeled_text_table, read_text_corpus};
use pretrain_data::shards::{ImageShards, MANIFEST_FILE, TokenShards};
use pretrain_data::source::read_text;
use pretrain_data::tokenizer::{TextTokenizer, TokenizerKind, TokenizerTrainConfig};
use pretrain_data::{TextEncoding, samples};
use pretrain_finetune::peft::{LoraSettings, add_lora, load_adapter, save_adapter};
use pretrain_finetune::{Backbone, Classifier};
use pretrain_models::store::safetensors_bytes;
use pretrain_models::{Gpt, GptConfig, ImageEncoderConfig, VitConfig, load_safetensors_bytes};
use pretrain_recipes::Recipe;
use pretrain_train::OptimizerConfig;
use pretrain_train::checkpoint::{self, TrainState, positional_ids};
use pretrain_train::optimizer::EngineOptimizer;

/// One fuzz target.
pub struct Target {
    /// Name (the cargo-fuzz binary and corpus folder are named after it).
    pub name: &'static str,
    /// What it reads.
    pub what: &'static str,
    /// Feeds one input to the reader.
    pub run: fn(&[u8]),
    /// Valid inputs to start from, made from the shipped samples.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "idx",
        what: "IDX arrays (MNIST format), plain or gzipped",
        run: idx,
        seeds: idx_seeds,
    },
    Target {
        name: "cifar",
        what: "CIFAR-10/100 binary batches",
        run: cifar,
        seeds: cifar_seeds,
    },
    Target {
        name: "csv",
        what: "numeric CSV tables (features and a label column)",
        run: csv,
        seeds: csv_seeds,
    },
    Target {
        name: "image",
        what: "one image file of an image folder (PNG, JPEG)",
        run: image,
        seeds: image_seeds,
    },
    Target {
        name: "text",
        what: "text files in every encoding mode, cut into lines, paragraphs or files",
        run: text,
        seeds: text_seeds,
    },
    Target {
        name: "labeled-text",
        what: "CSV/TSV tables of labeled texts",
        run: labeled_text,
        seeds: labeled_text_seeds,
    },
    Target {
        name: "email",
        what: "raw e-mails (headers, MIME parts, HTML) turned into subject and body",
        run: email,
        seeds: email_seeds,
    },
    Target {
        name: "recipe",
        what: "recipe TOML",
        run: recipe,
        seeds: recipe_seeds,
    },
    Target {
        name: "tokenizer",
        what: "tokenizer.json (ours or Hugging Face's); GPT-2's vocab.json + merges.txt and BERT's vocab.txt",
        run: tokenizer,
        seeds: tokenizer_seeds,
    },
    Target {
        name: "safetensors",
        what: "safetensors weights loaded into a GPT",
        run: safetensors,
        seeds: safetensors_seeds,
    },
    Target {
        name: "hf-checkpoint",
        what: "a Hugging Face checkpoint (config.json + model.safetensors) imported as GPT-2, BERT, a BERT classifier, ViT and ViT-MAE",
        run: hf_checkpoint,
        seeds: hf_checkpoint_seeds,
    },
    Target {
        name: "token-shards",
        what: "the manifest of a token shard folder",
        run: token_shards,
        seeds: token_shards_seeds,
    },
    Target {
        name: "image-shards",
        what: "the manifest of an image shard folder",
        run: image_shards,
        seeds: image_shards_seeds,
    },
    Target {
        name: "checkpoint-state",
        what: "a checkpoint's state.json (step, configuration, file digests)",
        run: checkpoint_state,
        seeds: checkpoint_state_seeds,
    },
    Target {
        name: "optimizer-state",
        what: "a checkpoint's optimizer.bin (burn's recorder), digests absent as in older checkpoints",
        run: optimizer_state,
        seeds: optimizer_state_seeds,
    },
    Target {
        name: "adapter",
        what: "an adapter file (LoRA updates and head) loaded onto a ViT classifier",
        run: adapter,
        seeds: adapter_seeds,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Runs target `name` on `data` (the cargo-fuzz binaries call this).
///
/// # Panics
/// When no target has that name.
pub fn run(name: &str, data: &[u8]) {
    let target = target(name).unwrap_or_else(|| panic!("no fuzz target {name:?}"));
    (target.run)(data)
}

/// [`run`] for the libFuzzer binaries. libfuzzer-sys installs a panic hook that aborts on any
/// panic, even one the code under test catches and turns into an error (the `tokenizers` and
/// burn-recorder guards do): the default hook is put back once, so only a panic that escapes
/// the target (which libfuzzer-sys still turns into an abort) is a crash, as in the smoke run.
pub fn fuzz(name: &str, data: &[u8]) {
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    run(name, data)
}

thread_local! {
    /// Scratch folder of this thread's inputs.
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// Writes `data` to `name` (a file, or `folder/file`) in this thread's scratch folder.
fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dir = slot.get_or_insert_with(|| tempfile::tempdir().expect("a scratch folder"));
        let path = dir.path().join(name);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).expect("scratch folder made");
        }
        std::fs::write(&path, data).expect("scratch file written");
        path
    })
}

/// A file of the repository's shipped data.
fn shipped(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(path)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

fn idx(data: &[u8]) {
    // Gzip is recognized by the file name, as the readers do.
    let name = if data.starts_with(&[0x1f, 0x8b]) {
        "input-idx.gz"
    } else {
        "input-idx"
    };
    let path = scratch_file(name, data);
    for dims in [1, 3] {
        let _ = read_idx(&path, dims);
    }
}

fn idx_seeds() -> Vec<Vec<u8>> {
    // Two 4x4 images and their labels.
    let mut images = vec![0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4];
    images.extend((0..32).map(|i| (i * 8) as u8));
    let labels = vec![0, 0, 0x08, 1, 0, 0, 0, 2, 3, 7];
    let shipped = std::fs::read(shipped("fashion-mnist-sample/t10k-labels-idx1-ubyte.gz"))
        .expect("shipped labels");
    vec![gzip(&images), images, labels, shipped]
}

fn cifar(data: &[u8]) {
    let path = scratch_file("input.bin", data);
    for labels in [
        CifarLabels::Cifar10,
        CifarLabels::Cifar100Coarse,
        CifarLabels::Cifar100Fine,
    ] {
        let _ = read_cifar_batch(&path, labels);
    }
}

fn cifar_seeds() -> Vec<Vec<u8>> {
    // CIFAR-10 records: a label byte and 3 x 32 x 32 pixels; CIFAR-100: two label bytes.
    let record = |labels: &[u8]| {
        let mut r = labels.to_vec();
        r.extend((0..3 * 32 * 32).map(|i| (i % 251) as u8));
        r
    };
    vec![
        [record(&[3]), record(&[9])].concat(),
        [record(&[1, 42]), record(&[19, 99])].concat(),
    ]
}

fn csv(data: &[u8]) {
    let path = scratch_file("input.csv", data);
    for has_header in [true, false] {
        let options = TableOptions {
            has_header,
            ..TableOptions::default()
        };
        let _ = read_csv_features(&path, &options, Some(&Column::Last), 10);
        let _ = read_csv_features(&path, &options, None, 10);
    }
}

fn csv_seeds() -> Vec<Vec<u8>> {
    let digits =
        read_text(&shipped("digits/digits.csv.gz"), TextEncoding::Utf8).expect("shipped digits");
    let head: String = digits.lines().take(4).collect::<Vec<_>>().join("\n");
    vec![
        head.into_bytes(),
        b"a,b,label\n0.5,1e3,2\n-1,nan,0\n".to_vec(),
    ]
}

fn image(data: &[u8]) {
    let path = scratch_file("input-image", data);
    let mut size = None;
    let _ = read_image(&path, &ImageFolderOptions::default(), &mut size);
    let resized = ImageFolderOptions {
        size: Some((8, 8)),
        resize: true,
        ..ImageFolderOptions::default()
    };
    let _ = read_image(&path, &resized, &mut None);
}

fn image_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for class in ["bag", "coat"] {
        let dir = shipped("images/fashion-sample").join(class);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("shipped images")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        seeds.push(std::fs::read(&files[0]).expect("shipped image"));
    }
    seeds
}

fn text(data: &[u8]) {
    let path = scratch_file("input.txt", data);
    for encoding in [
        TextEncoding::Utf8,
        TextEncoding::Utf8Lossy,
        TextEncoding::Latin1,
    ] {
        let _ = read_text(&path, encoding);
        for unit in [TextUnit::Line, TextUnit::Paragraph, TextUnit::File] {
            let _ = read_text_corpus(&path, unit, encoding);
        }
    }
}

fn text_seeds() -> Vec<Vec<u8>> {
    let paragraphs = samples::moby_dick_paragraphs().expect("shipped chapters");
    vec![
        paragraphs[..4].join("\n\n").into_bytes(),
        "caf\u{e9} na\u{ef}ve \u{2014} \u{1f40b}\r\n\r\nsecond"
            .as_bytes()
            .to_vec(),
        vec![0xe9, b'a', 0xff, b'\n', b'\n', 0xc3],
    ]
}

fn labeled_text(data: &[u8]) {
    let path = scratch_file("input-labeled.csv", data);
    for (delimiter, encoding) in [(b',', TextEncoding::Utf8), (b'\t', TextEncoding::Latin1)] {
        let options = TableOptions {
            delimiter,
            has_header: true,
            encoding,
        };
        let _ = read_labeled_text_table(&path, &options, &Column::Index(0), &Column::Last);
        let _ = read_labeled_text_table(
            &path,
            &options,
            &Column::Name("sentiment".into()),
            &Column::Name("text".into()),
        );
    }
}

fn labeled_text_seeds() -> Vec<Vec<u8>> {
    vec![
        b"sentiment,confidence,text\nnegative,0.75,\"no, thank you\"\npositive,1,great\n".to_vec(),
        b"label\ttext\nham\thello\nspam\tWIN \"now\"\n".to_vec(),
    ]
}

fn email(data: &[u8]) {
    let _ = email_text(&String::from_utf8_lossy(data));
}

fn email_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for class in ["ham", "spam"] {
        let dir = shipped("text/spam-sample").join(class);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("shipped e-mails")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        seeds.extend(
            files
                .iter()
                .take(2)
                .map(|f| std::fs::read(f).expect("e-mail")),
        );
    }
    seeds
}

fn recipe(data: &[u8]) {
    if let Ok(recipe) = Recipe::parse(&String::from_utf8_lossy(data), "input.toml") {
        // What the runners read next: the fields with defaults and the derived settings.
        let _ = recipe.data.tokenizer();
        let _ = recipe.data.max_tokens();
        let _ = recipe.data.holdout();
        let _ = recipe.few_shot.as_ref().map(|f| f.config());
    }
}

fn recipe_seeds() -> Vec<Vec<u8>> {
    pretrain_recipes::recipe::BUILTIN
        .iter()
        .map(|(_, text)| text.as_bytes().to_vec())
        .collect()
}

fn tokenizer(data: &[u8]) {
    // The same bytes as a checkpoint folder's older files: vocab.json and merges.txt (split at
    // the first NUL byte), and vocab.txt.
    let (vocab, merges) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    scratch_file("gpt2/vocab.json", vocab);
    let gpt2 = scratch_file("gpt2/merges.txt", merges);
    let bert = scratch_file("bert/vocab.txt", data);
    for dir in [gpt2.parent(), bert.parent()].into_iter().flatten() {
        if let Ok(tokenizer) = TextTokenizer::from_hf_dir(dir) {
            let _ = tokenizer.encode_plain_batch(&["Call me Ishmael."]);
        }
    }
    let path = scratch_file("tokenizer.json", data);
    if let Ok(tokenizer) = TextTokenizer::from_file(&path) {
        let ids = tokenizer.encode_plain_batch(&["Call me Ishmael."]);
        if let Ok(ids) = ids {
            let _ = tokenizer.decode(&ids[0]);
        }
        let _ = tokenizer.fixed_length(16).map(|e| e.encode("some text"));
    }
}

/// Tokenizers trained on the shipped chapters, as `tokenizer.json` bytes.
fn tokenizer_seeds() -> Vec<Vec<u8>> {
    let corpus = samples::moby_dick_paragraphs().expect("shipped chapters");
    [TokenizerKind::WordPiece, TokenizerKind::ByteLevelBpe]
        .into_iter()
        .map(|kind| {
            let tokenizer = TextTokenizer::train(
                &corpus[..20],
                &TokenizerTrainConfig {
                    kind,
                    vocab_size: 200,
                    ..TokenizerTrainConfig::default()
                },
            )
            .expect("trained");
            let dir = tempfile::tempdir().expect("temp");
            let path = dir.path().join("tokenizer.json");
            tokenizer.save(&path).expect("saved");
            std::fs::read(path).expect("read back")
        })
        .chain(hf_tokenizer_file_seeds())
        .collect()
}

/// The transformers tokenizer files of the pretrain-data tests: GPT-2's vocab.json, a NUL and
/// merges.txt; BERT's vocab.txt.
fn hf_tokenizer_file_seeds() -> Vec<Vec<u8>> {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../pretrain-data/fixtures/hf-tokenizers");
    let read = |file: &str| std::fs::read(fixtures.join(file)).expect("fixture");
    let mut gpt2 = read("gpt2-files/vocab.json");
    gpt2.push(0);
    gpt2.extend(read("gpt2-files/merges.txt"));
    vec![gpt2, read("bert-files/vocab.txt")]
}

fn small_gpt() -> Gpt<Flex> {
    GptConfig::new(20, 8, 1, 2, 8)
        .init(&Default::default())
        .expect("valid")
}

fn safetensors(data: &[u8]) {
    let _ = load_safetensors_bytes(small_gpt(), data.to_vec(), Path::new("input.safetensors"));
}

fn safetensors_seeds() -> Vec<Vec<u8>> {
    vec![safetensors_bytes(&small_gpt(), Path::new("seed.safetensors")).expect("saved")]
}

/// A token shard folder prepared once from the shipped chapters.
fn prepared_shards() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp");
        let source = DataSource::Text {
            paths: vec![
                shipped("text/moby-dick/chapter_1.txt")
                    .display()
                    .to_string(),
            ],
            unit: TextUnit::Paragraph,
            encoding: TextEncoding::Utf8,
        };
        let mut options = PrepareOptions::new(dir.path().join("shards"));
        options.shard_bytes = 2_000;
        options.on_bad_item = OnBadItem::Stop;
        options.tokenizer = TokenizerSource::Train {
            config: TokenizerTrainConfig {
                vocab_size: 300,
                ..TokenizerTrainConfig::default()
            },
            sample_bytes: 1 << 20,
        };
        prepare(&source, &options, &mut |_| {}).expect("shards prepared");
        dir
    })
    .path()
}

fn token_shards(data: &[u8]) {
    // Each input rewrites only the manifest of the thread's copy.
    let dir = scratch_copy(&prepared_shards().join("shards"), "shards");
    std::fs::write(dir.join(MANIFEST_FILE), data).expect("manifest written");
    if let Ok(shards) = TokenShards::open(&dir) {
        for i in 0..shards.len() {
            let _ = shards.get(i);
        }
        let _ = shards.bytes_per_token();
    }
}

fn token_shards_seeds() -> Vec<Vec<u8>> {
    vec![std::fs::read(prepared_shards().join("shards").join(MANIFEST_FILE)).expect("manifest")]
}

/// Image shards prepared once from the shipped Fashion-MNIST sample.
fn prepared_image_shards() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp");
        let source = DataSource::Idx {
            images: shipped("fashion-mnist-sample/t10k-images-idx3-ubyte.gz"),
            labels: None,
        };
        let mut options = PrepareOptions::new(dir.path().join("shards"));
        options.shard_bytes = 20_000;
        options.on_bad_item = OnBadItem::Stop;
        prepare(&source, &options, &mut |_| {}).expect("image shards prepared");
        dir
    })
    .path()
}

/// A copy of `prepared` in this thread's scratch folder, made once (copying per input made
/// libFuzzer's timer signals interrupt the copy), named `name`.
fn scratch_copy(prepared: &Path, name: &str) -> PathBuf {
    let dir = scratch_file(&format!("{name}-marker"), b"").with_file_name(name);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).expect("scratch copy");
        for entry in std::fs::read_dir(prepared).expect("prepared folder") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("prepared file read");
            std::fs::write(dir.join(path.file_name().expect("a file name")), bytes)
                .expect("copied");
        }
    }
    dir
}

fn image_shards(data: &[u8]) {
    let dir = scratch_copy(&prepared_image_shards().join("shards"), "image-shards");
    std::fs::write(dir.join(MANIFEST_FILE), data).expect("manifest written");
    if let Ok(shards) = ImageShards::open(&dir) {
        for i in 0..shards.len() {
            let _ = shards.get(i);
        }
    }
}

fn image_shards_seeds() -> Vec<Vec<u8>> {
    let manifest = prepared_image_shards().join("shards").join(MANIFEST_FILE);
    vec![std::fs::read(manifest).expect("manifest")]
}

/// The model of the checkpoint targets: a tiny GPT with autodiff, ids by position as the
/// engine gives them.
type Ad = burn::backend::Autodiff<Flex>;

fn checkpoint_model() -> Gpt<Ad> {
    positional_ids(
        GptConfig::new(20, 8, 1, 2, 8)
            .init(&Default::default())
            .expect("valid"),
    )
}

fn checkpoint_optimizer() -> EngineOptimizer<Ad, Gpt<Ad>> {
    OptimizerConfig::default().build::<Ad, Gpt<Ad>>(None)
}

/// What the checkpoint targets' runs were configured with (a resume must match it).
fn checkpoint_config() -> serde_json::Value {
    serde_json::json!({ "fuzz": "checkpoint" })
}

/// A checkpoint written by the engine after one AdamW step (so the optimizer state holds
/// moments), once; and the same checkpoint as a pre-digest one (no digests in `state.json`), so
/// inputs reach burn's recorder instead of the digest check.
fn prepared_checkpoints() -> &'static (PathBuf, PathBuf, tempfile::TempDir) {
    static DIR: OnceLock<(PathBuf, PathBuf, tempfile::TempDir)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp");
        let model = checkpoint_model();
        let mut optimizer = checkpoint_optimizer();
        let tokens =
            Tensor::<Ad, 2, Int>::from_data([[1, 2, 3, 4], [5, 6, 7, 8]], &Default::default());
        let grads = GradientsParams::from_grads(model.forward(tokens).sum().backward(), &model);
        let model = optimizer.step(1e-3, model, grads);
        let state = TrainState {
            step: 1,
            skipped_steps: 0,
            objective_config: checkpoint_config(),
            loss_scaler: None,
            recent_losses: vec![1.0],
        };
        let saved = checkpoint::save(dir.path(), &model, &optimizer, &state, 1).expect("saved");
        let undigested = dir.path().join("undigested");
        std::fs::create_dir_all(&undigested).expect("folder");
        for entry in std::fs::read_dir(&saved).expect("checkpoint") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("a file name").to_owned();
            let mut bytes = std::fs::read(&path).expect("read");
            if name == "state.json" {
                let mut json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                json.as_object_mut().expect("object").remove("files");
                bytes = serde_json::to_vec(&json).expect("json");
            }
            std::fs::write(undigested.join(name), bytes).expect("written");
        }
        (saved, undigested, dir)
    })
}

fn load_checkpoint(dir: &Path) {
    let _ = checkpoint::load(
        dir,
        checkpoint_model(),
        checkpoint_optimizer(),
        &checkpoint_config(),
        &Default::default(),
    );
    // burn 0.21's autodiff keeps the graph state of every parameter created with gradients
    // until a backward pass runs (measured: about 35 KB per load here, 2 GB after 70,000
    // libFuzzer inputs); a run resumes once, the harness loads thousands of times, so each
    // input ends with an empty backward pass, which releases it.
    let _ = Tensor::<Ad, 1>::ones([1], &Default::default())
        .require_grad()
        .sum()
        .backward();
}

fn checkpoint_state(data: &[u8]) {
    let dir = scratch_copy(&prepared_checkpoints().0, "checkpoint-state");
    std::fs::write(dir.join("state.json"), data).expect("state written");
    load_checkpoint(&dir);
}

fn checkpoint_state_seeds() -> Vec<Vec<u8>> {
    let (digested, undigested, _) = prepared_checkpoints();
    [digested, undigested]
        .map(|dir| std::fs::read(dir.join("state.json")).expect("state"))
        .to_vec()
}

fn optimizer_state(data: &[u8]) {
    let dir = scratch_copy(&prepared_checkpoints().1, "optimizer-state");
    std::fs::write(dir.join("optimizer.bin"), data).expect("optimizer state written");
    load_checkpoint(&dir);
}

fn optimizer_state_seeds() -> Vec<Vec<u8>> {
    vec![std::fs::read(prepared_checkpoints().1.join("optimizer.bin")).expect("optimizer state")]
}

/// A ViT classifier with LoRA on every projection, as `finetune --strategy lora` builds it.
fn lora_classifier() -> Classifier<Flex> {
    let device = Default::default();
    let vit = ImageEncoderConfig::Vit(VitConfig::new(8, 2, 1, 16, 1, 2));
    let encoder = add_lora(
        Backbone::Image(vit.init(&device).expect("valid")),
        &LoraSettings::default(),
        &device,
    )
    .expect("LoRA added");
    Classifier::new(encoder, 16, 3, &device)
}

/// The input of `hf-checkpoint`: config.json's length (4 bytes, little-endian), config.json,
/// then model.safetensors.
fn hf_checkpoint(data: &[u8]) {
    let Some((length, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let split = (u32::from_le_bytes(*length) as usize).min(rest.len());
    let (config, weights) = rest.split_at(split);
    scratch_file(pretrain_hf::checkpoint::CONFIG_FILE, config);
    let path = scratch_file(pretrain_hf::checkpoint::WEIGHTS_FILE, weights);
    let dir = path.parent().expect("a scratch folder");
    let device = Default::default();
    let _ = pretrain_hf::gpt2::load::<Flex>(dir, &device);
    let _ = pretrain_hf::bert::load::<Flex>(dir, &device);
    let _ = pretrain_hf::bert::load_classifier::<Flex>(dir, &device);
    let _ = pretrain_hf::vit::load::<Flex>(dir, &device);
    let _ = pretrain_hf::vit_mae::load::<Flex>(dir, &device);
}

/// The transformers checkpoints the pretrain-hf tests use.
fn hf_checkpoint_seeds() -> Vec<Vec<u8>> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pretrain-hf/fixtures");
    [
        "gpt2-odd-heads",
        "bert-mlm-odd",
        "bert-cls-odd",
        "vit-odd",
        "vit-wide",
        "vit-mae-odd",
    ]
    .iter()
    .map(|name| {
        let read = |file: &str| std::fs::read(fixtures.join(name).join(file)).expect("fixture");
        let config = read(pretrain_hf::checkpoint::CONFIG_FILE);
        let mut input = (config.len() as u32).to_le_bytes().to_vec();
        input.extend(config);
        input.extend(read(pretrain_hf::checkpoint::WEIGHTS_FILE));
        input
    })
    .collect()
}

fn adapter(data: &[u8]) {
    let _ = load_adapter(
        lora_classifier(),
        &scratch_file("adapter.safetensors", data),
    );
}

fn adapter_seeds() -> Vec<Vec<u8>> {
    let path = scratch_file("seed-adapter.safetensors", b"");
    save_adapter(&lora_classifier(), &path).expect("adapter saved");
    vec![std::fs::read(&path).expect("adapter read")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_accepts_its_seeds_and_names_are_unique() {
        let mut names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TARGETS.len());
        for target in TARGETS {
            let seeds = (target.seeds)();
            assert!(!seeds.is_empty(), "{}", target.name);
            for seed in &seeds {
                (target.run)(seed);
            }
        }
    }
}
