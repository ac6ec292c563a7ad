//! The collective operations of a data-parallel run, on burn-collective: sums and means of
//! values over the workers, and the global batch of embeddings that objectives coupling their
//! samples (contrastive negatives, batch statistics) compute their loss on.
//!
//! Every call goes through one watch ([`Collective::with_timeout`]): burn-collective waits
//! forever for a peer that died.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::collective::{CollectiveError, PeerId, ReduceOperation, all_reduce};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use pretrain_models::FusedAutodiffBackend;

use crate::error::{ObjectiveError, Result};
use crate::objective::{Metrics, StepOutput};

/// One worker of a data-parallel run: its rank, the number of workers, and the watch over its
/// collective operations.
#[derive(Debug, Clone)]
pub struct Collective {
    rank: usize,
    workers: usize,
    watchdog: Option<Arc<Watchdog>>,
}

impl Collective {
    /// Worker `rank` of `workers`.
    pub fn new(rank: usize, workers: usize) -> Result<Self> {
        if workers == 0 || rank >= workers {
            return Err(ObjectiveError::Collective {
                rank,
                operation: "setting up",
                message: format!("rank {rank} is not in 0..{workers}"),
            });
        }
        Ok(Self {
            rank,
            workers,
            watchdog: None,
        })
    }

    /// Ends this process when one collective operation waits longer than `limit` for the
    /// other workers: a node whose peer died would otherwise wait forever (burn-collective has
    /// no timeout). It prints one line naming this worker and the operation and exits with
    /// status 1; checkpoints are written atomically, so the newest one resumes. Meant for worker
    /// processes (the CLI sets it); the limit must cover the longest gap between two workers'
    /// arrivals, such as rank 0 writing a checkpoint.
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.watchdog = Some(Watchdog::start(self.rank, limit));
        self
    }

    /// This worker's rank, `0..workers`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Workers in the run.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// This worker's burn-collective peer id (its rank).
    pub fn peer(&self) -> PeerId {
        PeerId::from(self.rank)
    }

    /// Runs one burn-collective `call` under the watch; its error names this worker and
    /// `operation`.
    pub fn watched<T>(
        &self,
        operation: &'static str,
        call: impl FnOnce() -> std::result::Result<T, CollectiveError>,
    ) -> Result<T> {
        let _watched = self.watchdog.as_ref().map(|w| w.watch(operation));
        call().map_err(|e| ObjectiveError::Collective {
            rank: self.rank,
            operation,
            message: format!("{e:?}"),
        })
    }

    /// The element-wise mean of every worker's `tensor` (at least `workers` elements along its
    /// longest axis: burn's ring all-reduce splits it there).
    pub fn mean<B: Backend, const D: usize>(
        &self,
        operation: &'static str,
        tensor: Tensor<B, D>,
    ) -> Result<Tensor<B, D>> {
        self.reduce(operation, tensor, ReduceOperation::Mean)
    }

    /// The element-wise `op` (sum or mean) of every worker's `tensor`.
    fn reduce<B: Backend, const D: usize>(
        &self,
        operation: &'static str,
        tensor: Tensor<B, D>,
        op: ReduceOperation,
    ) -> Result<Tensor<B, D>> {
        let reduced = self.watched(operation, || {
            all_reduce::<B>(self.peer(), tensor.into_primitive().tensor(), op)
        })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(reduced)))
    }

    /// The mean of every worker's metrics (each averaged over its own equal slice of the
    /// batch, so this is the global batch's mean), computed on `device`.
    pub fn mean_metrics<B: Backend>(
        &self,
        metrics: Metrics,
        device: &B::Device,
    ) -> Result<Metrics> {
        let names: Vec<&'static str> = metrics.iter().map(|(n, _)| n).collect();
        if names.is_empty() {
            return Ok(metrics);
        }
        let mut values: Vec<f32> = metrics.iter().map(|(_, v)| v as f32).collect();
        // Padded with zeros to one element per worker at least (see `mean`).
        values.resize(values.len().max(self.workers), 0.0);
        let tensor = Tensor::<B, 1>::from_floats(values.as_slice(), device);
        let reduced = self.mean("all-reducing metrics", tensor)?;
        let reduced = reduced
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| ObjectiveError::Collective {
                rank: self.rank,
                operation: "reading reduced metrics",
                message: format!("{e:?}"),
            })?;
        let mut out = Metrics::default();
        for (name, value) in names.into_iter().zip(reduced) {
            out.push(name, f64::from(value));
        }
        Ok(out)
    }

    /// Whether `flag` is set on any worker (every worker gets the same answer).
    pub fn any<B: Backend>(&self, flag: bool, device: &B::Device) -> Result<bool> {
        let mut metrics = Metrics::default();
        metrics.push("flag", if flag { 1.0 } else { 0.0 });
        let mean = self.mean_metrics::<B>(metrics, device)?;
        Ok(mean.get("flag").is_some_and(|v| v > 0.0))
    }

    /// Every worker's rows of `rows` (`[n, d]`, the same `n` on every worker), in rank order:
    /// `[n * workers, d]`, the embeddings of the global batch. Only this worker's rows carry
    /// gradients (the others are constants here); [`Collective::global_step`] makes up for
    /// that.
    pub fn gather_rows<B: FusedAutodiffBackend>(&self, rows: Tensor<B, 2>) -> Result<Tensor<B, 2>> {
        let [n, d] = rows.dims();
        let own = self.rank * n..(self.rank + 1) * n;
        let padded = Tensor::<B::InnerBackend, 2>::zeros([n * self.workers, d], &rows.device())
            .slice_assign([own.clone(), 0..d], rows.clone().inner());
        let gathered = self.reduce("gathering the global batch", padded, ReduceOperation::Sum)?;
        Ok(Tensor::<B, 2>::from_inner(gathered).slice_assign([own, 0..d], rows))
    }

    /// A step whose loss every worker computed over the global batch from
    /// [`Collective::gather_rows`]: its loss, for the backward pass only, times the workers.
    /// Each worker's gradient then holds every term through its own rows; the engine's mean of
    /// the workers' gradients is the gradient of the global loss, exactly as one worker on the
    /// whole batch computes it. The metrics (the loss included) stay the global batch's.
    pub fn global_step<B: Backend, C>(&self, step: StepOutput<B, C>) -> StepOutput<B, C> {
        StepOutput {
            loss: step.loss * self.workers as f64,
            ..step
        }
    }
}

/// The watch over one worker's collective operations (see [`Collective::with_timeout`]).
#[derive(Debug)]
struct Watchdog {
    rank: usize,
    limit: Duration,
    /// The operation under way and when it started.
    waiting: Mutex<Option<(Instant, &'static str)>>,
}

/// Clears the watchdog's operation when the operation returns.
struct Watched<'a>(&'a Watchdog);

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        *self.0.waiting.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Watchdog {
    /// The watchdog and its thread, which ends once the last handle is dropped.
    fn start(rank: usize, limit: Duration) -> Arc<Self> {
        let watchdog = Arc::new(Self {
            rank,
            limit,
            waiting: Mutex::new(None),
        });
        let weak = Arc::downgrade(&watchdog);
        let poll = (limit / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        std::thread::spawn(move || {
            while let Some(watchdog) = weak.upgrade() {
                watchdog.check();
                drop(watchdog);
                std::thread::sleep(poll);
            }
        });
        watchdog
    }

    fn watch(&self, operation: &'static str) -> Watched<'_> {
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), operation));
        Watched(self)
    }

    fn check(&self) {
        let waiting = *self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((since, operation)) = waiting
            && since.elapsed() > self.limit
        {
            eprintln!(
                "error: data-parallel worker {}: {operation} got no answer from the other \
                 workers in {} s (one stopped or cannot be reached); stopping (the newest \
                 checkpoint is intact: --resume continues)",
                self.rank,
                self.limit.as_secs_f64()
            );
            std::process::exit(1);
        }
    }
}
