//! Seeded randomness that does not depend on thread scheduling.
//!
//! Loader workers fetch items in any order, so a shared RNG would make augmentations and masks
//! depend on timing. Instead each item draws from its own generator, seeded from the run seed,
//! the epoch and the item index: the same run gives the same views with 1 or 8 workers.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::SeedableRng;
use rand::rngs::StdRng;

/// splitmix64 finalizer: a cheap, well-mixing hash of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A generator for one item of one epoch.
pub fn item_rng(seed: u64, epoch: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(mix(mix(mix(seed) ^ epoch) ^ index))
}

/// The seed and current epoch of a randomized dataset view; the training loop bumps the epoch
/// so every epoch sees fresh augmentations while staying reproducible.
#[derive(Debug)]
pub struct EpochRng {
    seed: u64,
    epoch: AtomicU64,
}

impl EpochRng {
    /// Starts at epoch 0.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            epoch: AtomicU64::new(0),
        }
    }

    /// Sets the epoch the following draws belong to (e.g. when resuming a run).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The generator of item `index` in the current epoch.
    pub fn for_item(&self, index: usize) -> StdRng {
        item_rng(self.seed, self.epoch(), index as u64)
    }
}

/// A dataset whose items are drawn from a per-epoch generator (augmentations, masks): the
/// training loop selects the epoch before reading it, so item `i` of epoch `e` is the same
/// whatever the worker count or a resume point.
pub trait EpochSeeded {
    /// Selects the epoch whose draws the next `get` calls return.
    fn set_epoch(&self, epoch: u64);
}

/// Plain in-memory items have nothing drawn per epoch (labeled fine-tuning sets).
impl<I> EpochSeeded for burn::data::dataset::InMemDataset<I> {
    fn set_epoch(&self, _epoch: u64) {}
}

/// What a [`Seeded`] dataset does to each item of its inner dataset: a transformation drawing
/// from the item's own generator (augmentations, masks).
pub trait ItemDraw {
    /// The inner dataset's item.
    type Input;
    /// The item produced.
    type Output;

    /// `item` transformed with draws from `rng`; `None` drops it (a failure inside a loader
    /// worker is a missing item, never a panic).
    fn draw(&self, item: Self::Input, rng: &mut StdRng) -> Option<Self::Output>;
}

/// A dataset whose item `i` is `inner`'s item `i` transformed by `step`, with draws seeded by
/// `(seed, epoch, i)`: the one wrapper behind the augmented, masked-image and MLM datasets
/// (reproducible whatever the number of loader workers, fresh each epoch).
pub struct Seeded<D, S> {
    inner: D,
    step: S,
    rng: EpochRng,
}

impl<D, S> Seeded<D, S> {
    /// Wraps `inner`; each constructor checks `step` against the data before calling this.
    pub fn with_step(inner: D, step: S, seed: u64) -> Self {
        Self {
            inner,
            step,
            rng: EpochRng::new(seed),
        }
    }

    /// What is drawn per item.
    pub fn step(&self) -> &S {
        &self.step
    }
}

impl<D, S> EpochSeeded for Seeded<D, S> {
    fn set_epoch(&self, epoch: u64) {
        self.rng.set_epoch(epoch);
    }
}

impl<D, S> burn::data::dataset::Dataset<S::Output> for Seeded<D, S>
where
    D: burn::data::dataset::Dataset<S::Input>,
    S: ItemDraw + Send + Sync,
{
    fn get(&self, index: usize) -> Option<S::Output> {
        let item = self.inner.get(index)?;
        self.step.draw(item, &mut self.rng.for_item(index))
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// A standard normal draw (Box-Muller), avoiding a distribution crate for one function.
pub fn standard_normal(rng: &mut impl rand::Rng) -> f32 {
    use rand::RngExt;
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn item_streams_are_reproducible_and_distinct() {
        let a: u64 = item_rng(1, 0, 5).random();
        assert_eq!(a, item_rng(1, 0, 5).random::<u64>());
        assert_ne!(a, item_rng(1, 1, 5).random::<u64>());
        assert_ne!(a, item_rng(1, 0, 6).random::<u64>());
        assert_ne!(a, item_rng(2, 0, 5).random::<u64>());
        let e = EpochRng::new(1);
        e.set_epoch(1);
        assert_eq!(
            e.for_item(5).random::<u64>(),
            item_rng(1, 1, 5).random::<u64>()
        );
    }

    #[test]
    fn normal_draws_have_unit_moments() {
        let mut rng = item_rng(0, 0, 0);
        let n = 20_000;
        let xs: Vec<f32> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f32>() / n as f32;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n as f32;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
