//! `cargo xtask test`: everything CI checks, installing missing system packages first.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian packages the tests need: a software Vulkan driver for the wgpu tests.
const APT_PACKAGES: &[&str] = &["mesa-vulkan-drivers", "libvulkan1"];

/// Features every check is built with: wgpu runs its tests on Mesa's software Vulkan and CUDA
/// must compile. One feature set for clippy and check keeps them sharing build artifacts.
const CHECK_FEATURES: &str = "pretrain/wgpu,pretrain/cuda";
const TEST_FEATURES: &str = "pretrain/wgpu";

pub fn run() -> Result<()> {
    ensure_apt_packages(APT_PACKAGES)?;
    let env = xdg_runtime_dir()?;
    cargo(&env, &["fmt", "--all", "--", "--check"])?;
    let clippy = [
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        CHECK_FEATURES,
    ];
    cargo(&env, &[&clippy[..], &["--", "-D", "warnings"]].concat())?;
    cargo(
        &env,
        &[
            "check",
            "--workspace",
            "--all-targets",
            "--features",
            CHECK_FEATURES,
        ],
    )?;
    cargo(&env, &["test", "--workspace", "--features", TEST_FEATURES])?;
    println!("xtask test: all checks passed");
    Ok(())
}

/// Mesa's Vulkan driver complains on every device creation when `XDG_RUNTIME_DIR` is unset (as
/// in CI): returns the variable to give the children, a private folder under `target/`.
fn xdg_runtime_dir() -> Result<Vec<(String, PathBuf)>> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return Ok(Vec::new());
    }
    let dir = std::path::absolute("target/xdg-runtime")?;
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(vec![("XDG_RUNTIME_DIR".into(), dir)])
}

fn cargo(env: &[(String, PathBuf)], args: &[&str]) -> Result<()> {
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs missing Debian packages (as root), or says how to.
pub fn ensure_apt_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !is_root {
        bail!(
            "missing packages {}; install them with: sudo apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("$ apt-get install -y {}", missing.join(" "));
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("cannot run apt-get")?;
    if !update.success() {
        bail!("`apt-get update` failed ({update})");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!(
            "`apt-get install -y {}` failed ({status})",
            missing.join(" ")
        );
    }
    Ok(())
}
