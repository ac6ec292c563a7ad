//! Data-parallel training on burn-collective: every worker reads its own slice of each global
//! batch, computes gradients, and all-reduces them (mean) before the same optimizer step, so
//! all workers hold the same weights after every step.
//!
//! Workers meet in one of two ways:
//! - [`DataParallel::threads`]: worker threads of one process (one per device, the form for
//!   several GPUs in one machine), reduced by burn-collective's local server;
//! - [`DataParallel::node`]: one process per node (on one machine or several), reduced through
//!   burn-collective's global orchestrator over WebSocket.
//!
//! `TrainConfig::batch_size` stays the global micro-batch: each of `workers` workers reads
//! `batch_size / workers` items of it, so a run's recipe, learning rate, batch order and
//! checkpoints do not depend on the number of workers (a checkpoint resumes on any count).
//! (burn's `distributed` feature is not used: it makes `Autodiff<Flex>` require a
//! `DistributedBackend` that Flex lacks.)

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use burn::collective::{AllReduceStrategy, CollectiveConfig, finish_collective, register};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use pretrain_objectives::{Collective, Metrics, ObjectiveError};
use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};
use crate::grads::map_flattened;

/// One worker's place in a data-parallel run.
#[derive(Debug, Clone)]
pub struct DataParallel {
    collective: Collective,
    config: CollectiveConfig,
    /// For nodes: the orchestrator's host and port, and this node's tensor port.
    network: Option<((String, u16), u16)>,
}

/// How long a node waits for the orchestrator's port to answer before it gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl DataParallel {
    /// Worker `rank` of `workers` threads in this process.
    pub fn threads(rank: usize, workers: usize) -> Result<Self> {
        Ok(Self {
            collective: Collective::new(rank, workers)?,
            config: CollectiveConfig::default().with_num_devices(workers),
            network: None,
        })
    }

    /// Node `rank` of `nodes` processes, one worker each: `orchestrator` is the global
    /// orchestrator's address (`ws://host:port`), `address` this node's (`ws://host:port`,
    /// reachable by the other nodes), whose port serves the tensors its peers download.
    pub fn node(rank: usize, nodes: usize, orchestrator: &str, address: &str) -> Result<Self> {
        let collective = Collective::new(rank, nodes)?;
        let meeting = host_port("orchestrator", orchestrator)?;
        let (_, port) = host_port("node_address", address)?;
        let parse = |field: &'static str, text: &str| {
            text.parse()
                .map_err(|message| TrainError::Config { field, message })
        };
        Ok(Self {
            collective,
            config: CollectiveConfig::default()
                .with_num_nodes(nodes as u32)
                .with_global_address(parse("orchestrator", orchestrator)?)
                .with_node_address(parse("node_address", address)?)
                .with_data_service_port(port)
                // Ring: each node sends 2 (N - 1) / N of the gradients. It needs tensors of at
                // least N elements: gradients go as one flattened vector, metrics padded.
                .with_global_all_reduce_strategy(AllReduceStrategy::Ring),
            network: Some((meeting, port)),
        })
    }

    /// Stops this process when a collective operation waits longer than `limit` (see
    /// [`Collective::with_timeout`]).
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.collective = self.collective.with_timeout(limit);
        self
    }

    /// The collective operations of this worker (what objectives gather the global batch with).
    pub fn collective(&self) -> &Collective {
        &self.collective
    }

    /// This worker's rank, `0..workers`.
    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    /// Workers in the run.
    pub fn workers(&self) -> usize {
        self.collective.workers()
    }

    /// Whether this worker writes the run directory (checkpoints, metrics, the encoder): rank 0.
    pub fn is_leader(&self) -> bool {
        self.rank() == 0
    }

    /// Checks that a global micro-batch of `batch_size` splits evenly over the workers.
    pub fn check_batch(&self, batch_size: usize) -> Result<()> {
        if !batch_size.is_multiple_of(self.workers()) {
            return Err(TrainError::Config {
                field: "batch_size",
                message: format!(
                    "{batch_size} does not split evenly over {} data-parallel workers",
                    self.workers()
                ),
            });
        }
        Ok(())
    }

    /// Joins the collective; returns once every worker has joined. (burn-collective runs on the
    /// inner backend of an autodiff one.)
    pub fn join<B: AutodiffBackend>(&self, device: &B::Device) -> Result<()> {
        if let Some(((host, port), data_port)) = &self.network {
            // burn-collective would wait on an absent orchestrator, and log a taken port.
            let config = |message: String| TrainError::Config {
                field: "parallel",
                message,
            };
            drop(TcpListener::bind(("0.0.0.0", *data_port)).map_err(|e| {
                config(format!("this node's port {data_port} cannot be used: {e}"))
            })?);
            let reachable = (host.as_str(), *port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut addresses| addresses.next())
                .ok_or_else(|| format!("{host} does not resolve"))
                .and_then(|address| {
                    TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(|e| e.to_string())
                });
            if let Err(e) = reachable {
                return Err(config(format!(
                    "the orchestrator at {host}:{port} cannot be reached ({e}); start it first \
                     (`pretrain orchestrator --port {port}`)"
                )));
            }
        }
        if self.network.is_some() {
            quiet_burn_logs();
        }
        let peer = self.collective.peer();
        Ok(self.collective.watched("joining the collective", || {
            register::<B::InnerBackend>(peer, device.clone(), self.config.clone())
        })?)
    }

    /// Leaves the collective (after the last step).
    pub fn leave<B: AutodiffBackend>(&self) -> Result<()> {
        let peer = self.collective.peer();
        Ok(self.collective.watched("leaving the collective", || {
            finish_collective::<B::InnerBackend>(peer)
        })?)
    }

    /// The mean of every worker's gradients of `module`'s parameters, in one all-reduce of
    /// all of them flattened (in module order, the same on every worker).
    pub fn mean_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        grads: GradientsParams,
    ) -> Result<GradientsParams> {
        Ok(map_flattened(module, grads, |flat| {
            self.collective.mean("all-reducing gradients", flat)
        })?)
    }

    /// Checks that every worker holds the same weights (each worker seeds its initialization,
    /// or loads the same checkpoint; burn-collective has no broadcast across nodes to copy
    /// rank 0's). A digest of the weights is averaged over the workers: all agree exactly when
    /// every worker's digest equals the mean. Every worker gets the same answer.
    pub fn check_same_weights<B: AutodiffBackend, M: Module<B>>(
        &self,
        module: &M,
        device: &B::Device,
    ) -> Result<()> {
        let digest = weights_digest(module);
        let mut metrics = Metrics::default();
        for (name, value) in DIGEST_PARTS.iter().zip(digest) {
            metrics.push(name, value);
        }
        let collective = &self.collective;
        let mean = collective.mean_metrics::<B::InnerBackend>(metrics, device)?;
        let differs = DIGEST_PARTS
            .iter()
            .zip(digest)
            .any(|(name, own)| mean.get(name) != Some(own));
        if collective.any::<B::InnerBackend>(differs, device)? {
            return Err(ObjectiveError::Collective {
                rank: self.rank(),
                operation: "checking the starting weights",
                message: "the workers start from different weights (each must use the same \
                          recipe, seed and checkpoint)"
                    .into(),
            }
            .into());
        }
        Ok(())
    }
}

/// burn-communication's WebSocket server installs a global tracing subscriber that prints every
/// INFO event (each connection and tensor download) when none is set; an empty one set first
/// keeps a worker's output to what it reports. (This workspace logs nothing through tracing
/// that a user must see: errors are returned.)
pub(crate) fn quiet_burn_logs() {
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
}

/// Names of the digest's parts in the all-reduce.
const DIGEST_PARTS: [&str; 3] = ["digest_0", "digest_1", "digest_2"];

/// 48 bits of a SHA-256 of every weight's bytes, in 16-bit parts that f32 holds exactly.
fn weights_digest<B: Backend, M: Module<B>>(module: &M) -> [f64; 3] {
    struct Hash(Sha256);
    impl<B: Backend> ModuleVisitor<B> for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.update(param.val().into_data().as_bytes());
        }
    }
    let mut hash = Hash(Sha256::new());
    module.visit(&mut hash);
    let bytes = hash.0.finalize();
    std::array::from_fn(|i| f64::from(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])))
}

/// The host and port of `ws://host:port` (a trailing slash allowed).
fn host_port(field: &'static str, url: &str) -> Result<(String, u16)> {
    let bad = || TrainError::Config {
        field,
        message: format!("{url:?} is not ws://HOST:PORT"),
    };
    let rest = url.strip_prefix("ws://").ok_or_else(bad)?;
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_are_checked() {
        assert!(DataParallel::node(1, 2, "ws://127.0.0.1:3000", "ws://10.0.0.2:3001/").is_ok());
        for (orchestrator, address, field) in [
            ("127.0.0.1:3000", "ws://h:1", "orchestrator"),
            ("ws://h:port", "ws://h:1", "orchestrator"),
            ("ws://:3000", "ws://h:1", "orchestrator"),
            ("ws://h:3000", "ws://h", "node_address"),
        ] {
            let error = DataParallel::node(0, 2, orchestrator, address).unwrap_err();
            assert!(
                matches!(&error, TrainError::Config { field: f, .. } if *f == field),
                "{error}"
            );
        }
        let error = DataParallel::node(2, 2, "ws://h:1", "ws://h:2").unwrap_err();
        assert!(
            error.to_string().contains("rank 2 is not in 0..2"),
            "{error}"
        );
    }

    #[test]
    fn a_batch_must_split_evenly_over_the_workers() {
        let worker = DataParallel::threads(2, 4).unwrap();
        assert!(worker.check_batch(32).is_ok());
        let error = worker.check_batch(30).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("30 does not split evenly over 4"),
            "{error}"
        );
        assert!(!worker.is_leader() && DataParallel::threads(0, 4).unwrap().is_leader());
    }
}
