//! Peak memory of pre-training over shards as the data set grows: Fashion-MNIST's 60,000
//! training images prepared as shards, replicated 10x and 100x (600k and 6M images), and a
//! token corpus of at least 1 GB (the shipped Moby Dick chapters, repeated); each pre-trained
//! for the same steps by the release `pretrain` binary under `/usr/bin/time -v`. Writes
//! `shard-memory.md` and `.json` into `--out`.
//!
//! `cargo build --release -p pretrain-cli && cargo run --release -p pretrain-benches --bin
//! shard-memory -- --out target/shard-memory`

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use pretrain::data::catalog::{moby_dick_sample_dir, remote_dataset};
use pretrain::data::data_source::DataSource;
use pretrain::data::prepare::{PrepareOptions, prepare, replicate};
use pretrain::data::readers::TextUnit;
use pretrain::data::shards::{MANIFEST_FILE, Manifest};
use pretrain_recipes::Recipe;

/// Bytes of one 64 MiB shard.
const SHARD_BYTES: usize = 64 << 20;

struct Args {
    out: PathBuf,
    steps: usize,
    pretrain: PathBuf,
}

fn args() -> Result<Args> {
    let mut args = Args {
        out: PathBuf::from("target/shard-memory"),
        steps: 60,
        pretrain: PathBuf::from("target/release/pretrain"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => args.out = value.into(),
            "--steps" => args.steps = value.parse().context("--steps")?,
            "--pretrain" => args.pretrain = value.into(),
            other => bail!("unknown option {other}; valid: --out, --steps, --pretrain"),
        }
    }
    Ok(args)
}

/// `src` replicated `copies` times into `out`, unless already there.
fn replicated(src: &Path, out: &Path, copies: usize) -> Result<Manifest> {
    if out.join(MANIFEST_FILE).is_file() {
        return Ok(Manifest::read(out)?);
    }
    Ok(replicate(src, out, copies, SHARD_BYTES)?)
}

/// Peak resident set (KiB) and seconds of `pretrain pretrain recipe`.
fn measure(args: &Args, recipe: &Recipe, name: &str) -> Result<(u64, f64)> {
    let file = args.out.join(format!("{name}.toml"));
    std::fs::write(&file, recipe.to_toml())?;
    let run = args.out.join(format!("run-{name}"));
    let _ = std::fs::remove_dir_all(&run);
    let started = std::time::Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&args.pretrain)
        .arg("pretrain")
        .arg(&file)
        .arg("--quiet")
        .arg("--out")
        .arg(&run)
        .output()
        .context("running /usr/bin/time (GNU time) with the pretrain binary")?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{name}: {stderr}");
    }
    let kib = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .context("no maximum resident set size in GNU time's report")?
        .parse()?;
    Ok((kib, seconds))
}

/// `recipe` pre-trained over the shards in `shards` (run `name`), measured, as a table row.
fn row(
    args: &Args,
    recipe: &mut Recipe,
    shards: PathBuf,
    name: &str,
    data: &str,
) -> Result<serde_json::Value> {
    let manifest = Manifest::read(&shards)?;
    recipe.data.source = Some(DataSource::Shards { path: shards });
    let (kib, seconds) = measure(args, recipe, name)?;
    Ok(serde_json::json!({
        "data": data,
        "items": manifest.items,
        "tokens": manifest.tokens,
        "shard_bytes": manifest.shards.iter().map(|s| s.bytes).sum::<u64>(),
        "recipe": recipe.name,
        "steps": args.steps,
        "peak_rss_mib": kib as f64 / 1024.0,
        "seconds": seconds,
    }))
}

fn main() -> Result<()> {
    let mut args = args()?;
    std::fs::create_dir_all(&args.out)?;
    // Recipes resolve relative paths against their own folder.
    args.out = std::path::absolute(&args.out)?;
    let mut rows = Vec::new();

    let fashion = remote_dataset("fashion-mnist")?;
    fashion
        .verify()
        .context("Fashion-MNIST is needed: cargo xtask data fashion-mnist")?;
    let dir = fashion.dir()?;
    let images = DataSource::Idx {
        images: dir.join("train-images-idx3-ubyte.gz"),
        labels: Some(dir.join("train-labels-idx1-ubyte.gz")),
    };
    let x1 = args.out.join("images-x1");
    prepare(&images, &PrepareOptions::new(&x1), &mut |_| {})?;
    let mut recipe = Recipe::load("simclr-fashion-mnist")?;
    recipe.data.dataset = None;
    recipe.train.steps = args.steps;
    recipe.train.checkpoint_every = args.steps;
    for copies in [1, 10, 100] {
        let shards = if copies == 1 {
            x1.clone()
        } else {
            let out = args.out.join(format!("images-x{copies}"));
            replicated(&x1, &out, copies)?;
            out
        };
        let data = format!("Fashion-MNIST train x{copies}");
        rows.push(row(
            &args,
            &mut recipe,
            shards,
            &format!("images-x{copies}"),
            &data,
        )?);
    }

    let text = DataSource::Text {
        paths: vec![moby_dick_sample_dir()?.display().to_string()],
        unit: TextUnit::Paragraph,
        encoding: Default::default(),
    };
    let t1 = args.out.join("tokens-x1");
    prepare(&text, &PrepareOptions::new(&t1), &mut |_| {})?;
    let base = Manifest::read(&t1)?;
    let token_bytes = base.shards.iter().map(|s| s.bytes).sum::<u64>();
    let copies = (1u64 << 30).div_ceil(token_bytes) as usize;
    let mut recipe = Recipe::load("mlm-text")?;
    recipe.data.dataset = None;
    recipe.data.tokenizer = None;
    recipe.objective.mask = None;
    recipe.train.steps = args.steps;
    recipe.train.checkpoint_every = args.steps;
    for (copies, shards) in [
        (1, t1.clone()),
        (copies, args.out.join(format!("tokens-x{copies}"))),
    ] {
        replicated(&t1, &shards, copies)?;
        let data = format!("Moby Dick sample x{copies} (tokens)");
        rows.push(row(
            &args,
            &mut recipe,
            shards,
            &format!("tokens-x{copies}"),
            &data,
        )?);
    }

    let mut table = String::from(
        "| data | items | shard bytes | recipe | steps | peak RSS (MiB) | seconds |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} |\n",
            r["data"].as_str().unwrap_or_default(),
            r["items"],
            r["shard_bytes"],
            r["recipe"].as_str().unwrap_or_default(),
            r["steps"],
            r["peak_rss_mib"].as_f64().unwrap_or_default(),
            r["seconds"].as_f64().unwrap_or_default(),
        ));
    }
    print!("{table}");
    std::fs::write(args.out.join("shard-memory.md"), &table)?;
    std::fs::write(
        args.out.join("shard-memory.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    Ok(())
}
