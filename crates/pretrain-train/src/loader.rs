//! Deterministic batch order with background prefetching.
//!
//! Micro-batch `g` of the run is batch `g % per_epoch` of epoch `g / per_epoch`, where each
//! epoch is a permutation of the dataset seeded by `(seed, epoch)` (the last partial batch is
//! dropped). The order is a function of the position alone, so a resumed run reads exactly the
//! batches the interrupted one would have read; one producer thread builds them ahead of the
//! training step.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::backend::Backend;
use pretrain_data::rng::EpochSeeded;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{Result, TrainError};

/// Which items make up each micro-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOrder {
    /// Dataset size.
    pub len: usize,
    /// Items per micro-batch.
    pub batch_size: usize,
    /// Seed of the per-epoch permutations.
    pub seed: u64,
    /// Which part of each micro-batch this reader takes: `(index, count)`, the index-th of
    /// `count` equal slices (a data-parallel worker's rank and the workers; `(0, 1)` alone).
    pub shard: (usize, usize),
}

impl BatchOrder {
    /// Micro-batches per epoch (at least one batch must fit).
    pub fn per_epoch(&self) -> Result<usize> {
        let n = self.len / self.batch_size.max(1);
        if n == 0 {
            return Err(TrainError::Data(format!(
                "{} items do not fill one batch of {}",
                self.len, self.batch_size
            )));
        }
        Ok(n)
    }

    /// The dataset indices of micro-batch `g` that this reader takes, given the permutation
    /// of its epoch.
    pub fn items<'a>(&self, permutation: &'a [usize], g: usize, per_epoch: usize) -> &'a [usize] {
        let (index, count) = self.shard;
        let local = self.batch_size / count;
        let first = (g % per_epoch) * self.batch_size + index * local;
        &permutation[first..first + local]
    }

    /// The permutation of epoch `epoch`.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        let mut rng = StdRng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
        order
    }
}

/// Micro-batches `start..end`, built on a background thread, two ahead.
pub struct Prefetcher<T> {
    receiver: Receiver<Result<T, String>>,
    worker: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetcher<T> {
    /// Starts producing micro-batches `start..end` of `order` from `data` on `device`.
    pub fn start<B, I, D, Bt>(
        data: Arc<D>,
        batcher: Bt,
        order: BatchOrder,
        range: std::ops::Range<usize>,
        device: B::Device,
    ) -> Result<Self>
    where
        B: Backend,
        I: Send + 'static,
        D: Dataset<I> + EpochSeeded + 'static,
        Bt: Batcher<B, I, T> + 'static,
    {
        let per_epoch = order.per_epoch()?;
        let (sender, receiver): (SyncSender<Result<T, String>>, _) = sync_channel(2);
        let worker = std::thread::spawn(move || {
            let mut current: Option<(u64, Vec<usize>)> = None;
            for g in range {
                let epoch = (g / per_epoch) as u64;
                if current.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    data.set_epoch(epoch);
                    current = Some((epoch, order.permutation(epoch)));
                }
                let (_, permutation) = current.as_ref().expect("set above");
                let items: Option<Vec<I>> = order
                    .items(permutation, g, per_epoch)
                    .iter()
                    .map(|&i| data.get(i))
                    .collect();
                let message = match items {
                    Some(items) => Ok(batcher.batch(items, &device)),
                    None => Err(format!("the dataset returned no item in batch {g}")),
                };
                if sender.send(message).is_err() {
                    return; // the training loop stopped early
                }
            }
        });
        Ok(Self {
            receiver,
            worker: Some(worker),
        })
    }

    /// The next micro-batch.
    pub fn next_batch(&mut self) -> Result<T> {
        match self.receiver.recv() {
            Ok(Ok(batch)) => Ok(batch),
            Ok(Err(message)) => Err(TrainError::Data(message)),
            Err(_) => Err(TrainError::Data(
                "the batch producer stopped (a dataset or batcher panicked)".into(),
            )),
        }
    }
}

impl<T> Drop for Prefetcher<T> {
    fn drop(&mut self) {
        // Unblock the producer (it fails to send once the receiver is gone), then wait for it.
        let (_, closed) = sync_channel(0);
        let receiver = std::mem::replace(&mut self.receiver, closed);
        drop(receiver);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_a_seeded_permutation_per_epoch() {
        let order = BatchOrder {
            len: 10,
            batch_size: 3,
            seed: 5,
            shard: (0, 1),
        };
        assert_eq!(order.per_epoch().unwrap(), 3);
        let a = order.permutation(0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(a, order.permutation(0));
        assert_ne!(a, order.permutation(1));
        let too_small = BatchOrder {
            len: 2,
            batch_size: 3,
            seed: 0,
            shard: (0, 1),
        };
        assert!(too_small.per_epoch().is_err());
    }

    #[test]
    fn shards_split_each_batch_into_equal_disjoint_slices_in_order() {
        let whole = BatchOrder {
            len: 22,
            batch_size: 6,
            seed: 3,
            shard: (0, 1),
        };
        let per_epoch = whole.per_epoch().unwrap();
        let permutation = whole.permutation(0);
        for g in 0..per_epoch {
            let parts: Vec<usize> = (0..3)
                .flat_map(|i| {
                    let shard = BatchOrder {
                        shard: (i, 3),
                        ..whole
                    };
                    let items = shard.items(&permutation, g, per_epoch);
                    assert_eq!(items.len(), 2);
                    items.to_vec()
                })
                .collect();
            assert_eq!(parts, whole.items(&permutation, g, per_epoch));
        }
    }
}
