//! # pretrain-setup
//!
//! Machine set-up shared by `xtask` and the `pretrain` command line: installing missing Debian
//! packages and running external tools with errors that say what to do. Kept free of heavy
//! dependencies so `cargo xtask` starts in seconds.

use std::ffi::OsStr;
use std::process::Command;

/// An external step failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The program could not be started.
    #[error("cannot run {program}: {source}; {hint}")]
    Spawn {
        /// Program name.
        program: String,
        /// What to install or check.
        hint: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("`{command}` failed ({status}); {hint}")]
    Failed {
        /// Command line.
        command: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What to install or check.
        hint: String,
    },
    /// Packages are missing and this process may not install them.
    #[error(
        "missing Debian packages {packages}; install them with: sudo apt-get install -y {packages}"
    )]
    NotRoot {
        /// Space-separated package names.
        packages: String,
    },
}

/// Runs `command`, failing with `hint` when it cannot start or exits non-zero.
pub fn run(command: &mut Command, hint: &str) -> Result<(), SetupError> {
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    let status = command.status().map_err(|source| SetupError::Spawn {
        program: command.get_program().to_string_lossy().into_owned(),
        hint: hint.to_string(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(SetupError::Failed {
            command: line,
            status,
            hint: hint.to_string(),
        })
    }
}

/// Whether Debian package `package` is installed.
pub fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs the missing ones of `packages` with apt-get (as root), or says how to.
pub fn ensure_apt_packages(packages: &[&str]) -> Result<(), SetupError> {
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
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        return Err(SetupError::NotRoot {
            packages: missing.join(" "),
        });
    }
    let hint = "needs Debian's apt-get and access to its package archive";
    println!("$ apt-get install -y {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]), hint)?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        hint,
    )
}

/// For a test that changes state of the whole process (a backend switch, a GPU runtime's
/// precision): returns `true` in the child process that runs it alone, else runs the current
/// test binary again with only `test` (its full path, e.g. `module::name`) and `env` set, and
/// panics unless that child passed exactly one test (a renamed test would match none, and zero
/// tests pass). The caller returns when this returns `false`.
pub fn test_runs_alone(test: &str, env: &str) -> bool {
    if std::env::var_os(env).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(exe)
        .args([test, "--exact", "--nocapture"])
        .env(env, "1")
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "{test} failed alone: {}",
        output.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child process ran no test named {test}"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_and_hint() {
        let err = run(Command::new("false").arg("x"), "try harder")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`false x` failed") && err.contains("try harder"),
            "{err}"
        );
        let err = run(&mut Command::new("/no/such/program"), "install it")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot run /no/such/program") && err.contains("install it"),
            "{err}"
        );
        assert!(!is_installed("no-such-package-pretrain"));
        assert!(ensure_apt_packages(&[]).is_ok());
    }
}
