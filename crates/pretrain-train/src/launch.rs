//! Data-parallel worker processes on one machine: the command starts burn-collective's global
//! orchestrator and `N` workers (one node each, on loopback), watches them, and stops the rest
//! the moment one fails, naming it.
//!
//! The orchestrator runs as its own process in its own process group: a Ctrl-C in the terminal
//! reaches the workers (which agree to stop after the same step, with a checkpoint) but not the
//! orchestrator, whose tokio handler would otherwise shut it down while they still need it.

use std::ffi::OsString;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the orchestrator may take to listen.
const ORCHESTRATOR_START: Duration = Duration::from_secs(20);
/// How often the launcher looks at its children.
const POLL: Duration = Duration::from_millis(50);

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No free port could be found, or the asked one is taken.
    #[error("port {port}: {source}")]
    Port {
        /// The port (0: any).
        port: u16,
        /// What binding it said.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("starting {what} ({program}): {source}")]
    Spawn {
        /// The orchestrator or worker N.
        what: String,
        /// The program.
        program: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The orchestrator exited or did not listen in time.
    #[error("the orchestrator on port {port} {problem}")]
    Orchestrator {
        /// Its port.
        port: u16,
        /// What happened.
        problem: String,
    },
    /// A worker failed; the others were stopped.
    #[error("data-parallel worker {rank} {status}; the other workers were stopped")]
    WorkerFailed {
        /// Its rank.
        rank: usize,
        /// How it ended.
        status: String,
    },
}

/// A free TCP port on loopback (bound, then released for the process that will use it).
pub fn free_port() -> Result<u16, LaunchError> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| LaunchError::Port { port: 0, source })
}

/// The command-line arguments that make a worker node `rank` of `nodes`, meeting at the
/// orchestrator `orchestrator` and serving its tensors at `address` (both `ws://host:port`).
pub fn node_args(rank: usize, nodes: usize, orchestrator: &str, address: &str) -> Vec<String> {
    vec![
        "--node-rank".into(),
        rank.to_string(),
        "--nodes".into(),
        nodes.to_string(),
        "--orchestrator".into(),
        orchestrator.into(),
        "--node-address".into(),
        address.into(),
    ]
}

/// Runs burn-collective's global orchestrator on `port` (all interfaces) until the process is
/// interrupted, calling `listening` once the port is known to be free; a port already in use
/// is an error.
pub fn run_orchestrator(port: u16, listening: impl FnOnce()) -> Result<(), LaunchError> {
    // burn logs a bind failure and returns; binding first turns it into an error.
    drop(
        TcpListener::bind(("0.0.0.0", port))
            .map_err(|source| LaunchError::Port { port, source })?,
    );
    listening();
    crate::parallel::quiet_burn_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| LaunchError::Orchestrator {
            port,
            problem: format!("could not start its runtime: {e}"),
        })?;
    runtime.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

/// `workers` data-parallel worker processes of this machine.
#[derive(Debug, Clone)]
pub struct LocalWorkers {
    /// Workers to start.
    pub workers: usize,
    /// The program both the workers and the orchestrator run.
    pub program: PathBuf,
    /// Every worker's arguments; [`node_args`] are appended for each.
    pub worker_args: Vec<OsString>,
    /// The orchestrator's arguments; `--port PORT` is appended.
    pub orchestrator_args: Vec<OsString>,
    /// Compute threads of each worker (`RAYON_NUM_THREADS`).
    pub threads_per_worker: usize,
}

impl LocalWorkers {
    /// Starts the orchestrator and the workers, and waits for all workers to succeed; the
    /// first to fail stops the others (within one poll, 50 ms) and is the error.
    pub fn run(&self) -> Result<(), LaunchError> {
        let port = free_port()?;
        let orchestrator = self.start_orchestrator(port)?;
        let _orchestrator = KillOnDrop(vec![Some(orchestrator)]);
        let mut workers = KillOnDrop(Vec::new());
        let meeting = format!("ws://127.0.0.1:{port}");
        for rank in 0..self.workers {
            let address = format!("ws://127.0.0.1:{}", free_port()?);
            let mut command = Command::new(&self.program);
            command
                .args(&self.worker_args)
                .args(node_args(rank, self.workers, &meeting, &address))
                .env("RAYON_NUM_THREADS", self.threads_per_worker.to_string());
            if rank > 0 {
                // Rank 0 reports; the others' errors still reach stderr.
                command.stdout(Stdio::null());
            }
            let child = command.spawn().map_err(|source| LaunchError::Spawn {
                what: format!("worker {rank}"),
                program: self.program.clone(),
                source,
            })?;
            workers.0.push(Some(child));
        }
        watch(&mut workers.0)
    }

    fn start_orchestrator(&self, port: u16) -> Result<Child, LaunchError> {
        let mut child = Command::new(&self.program)
            .args(&self.orchestrator_args)
            .args(["--port".to_string(), port.to_string()])
            .stdout(Stdio::null())
            // Out of the terminal's process group: Ctrl-C is for the workers.
            .process_group(0)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                what: "the orchestrator".into(),
                program: self.program.clone(),
                source,
            })?;
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LaunchError::Orchestrator {
                    port,
                    problem: describe(status),
                });
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(child);
            }
            if started.elapsed() > ORCHESTRATOR_START {
                let _ = child.kill();
                return Err(LaunchError::Orchestrator {
                    port,
                    problem: format!("was not listening after {ORCHESTRATOR_START:?}"),
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Children killed (and reaped) when dropped, on every way out of [`LocalWorkers::run`].
struct KillOnDrop(Vec<Option<Child>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until every child succeeded, or one failed (then the others are killed by the
/// caller's [`KillOnDrop`]).
fn watch(children: &mut [Option<Child>]) -> Result<(), LaunchError> {
    use std::os::unix::process::ExitStatusExt;
    loop {
        let mut running = 0;
        // Every worker that failed since the last poll: one killed by a signal is the cause
        // the others' errors (a lost peer) follow from, so it is reported first.
        let mut failed: Option<(usize, ExitStatus)> = None;
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            match child.try_wait() {
                Ok(Some(status)) if status.success() => *slot = None,
                Ok(Some(status)) => {
                    *slot = None;
                    if failed.is_none_or(|(_, first)| {
                        first.signal().is_none() && status.signal().is_some()
                    }) {
                        failed = Some((rank, status));
                    }
                }
                Ok(None) => running += 1,
                Err(e) => {
                    return Err(LaunchError::WorkerFailed {
                        rank,
                        status: format!("could not be watched ({e})"),
                    });
                }
            }
        }
        if let Some((rank, status)) = failed {
            return Err(LaunchError::WorkerFailed {
                rank,
                status: describe(status),
            });
        }
        if running == 0 {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

/// "exited with status 1", "was killed by signal 9".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended ({status})"),
    }
}
