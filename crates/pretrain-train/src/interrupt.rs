//! Ctrl-C (SIGINT/SIGTERM) handling for training binaries: the handler only raises a flag; the
//! engine sees it after the current step, writes a checkpoint and returns, so an interrupted
//! run loses no work and resumes exactly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Result, TrainError};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs (once per process) a Ctrl-C handler and returns the flag it raises, for
/// [`crate::RunOptions::stop`]. A second Ctrl-C while the flag is up exits at once.
pub fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    if let Some(flag) = FLAG.get() {
        return Ok(flag.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    ctrlc::set_handler(move || {
        if raised.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the current step and writing a checkpoint");
    })
    .map_err(|e| TrainError::Config {
        field: "ctrl-c handler",
        message: e.to_string(),
    })?;
    Ok(FLAG.get_or_init(|| flag).clone())
}
