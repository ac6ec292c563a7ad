//! Patch masking for masked image modeling: random (MAE/SimMIM) and block-wise (BEiT).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Which patches of one image are hidden.
///
/// Follows MAE's convention: `shuffle` lists patches with the kept ones first; `keep` is its
/// prefix (sorted ascending); `restore[p]` is the position of patch `p` in `keep ++ masked`, so
/// gathering `keep ++ mask tokens` with `restore` puts every token back in image order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchMask {
    /// Indices of visible patches, ascending.
    pub keep: Vec<usize>,
    /// Indices of hidden patches, ascending.
    pub masked: Vec<usize>,
    /// For each patch, its position in `keep ++ masked`.
    pub restore: Vec<usize>,
}

impl PatchMask {
    /// Builds the mask from the set of hidden patches (`hidden[p]` is true when `p` is hidden).
    pub fn from_hidden(hidden: &[bool]) -> Self {
        let keep: Vec<usize> = (0..hidden.len()).filter(|&p| !hidden[p]).collect();
        let masked: Vec<usize> = (0..hidden.len()).filter(|&p| hidden[p]).collect();
        let mut restore = vec![0; hidden.len()];
        for (pos, &p) in keep.iter().chain(&masked).enumerate() {
            restore[p] = pos;
        }
        Self {
            keep,
            masked,
            restore,
        }
    }

    /// Number of patches.
    pub fn num_patches(&self) -> usize {
        self.restore.len()
    }

    /// `true` for hidden patches, in image order.
    pub fn hidden(&self) -> Vec<bool> {
        let mut hidden = vec![false; self.num_patches()];
        self.masked.iter().for_each(|&p| hidden[p] = true);
        hidden
    }
}

/// Patches a random masker hides of `num_patches` at `ratio`: all but MAE's
/// `max(1, int(N * (1 - ratio)))` visible ones.
pub fn masked_count(num_patches: usize, ratio: f32) -> Result<usize> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(DataError::config(
            "mask_ratio",
            format!("{ratio} must lie in [0, 1)"),
        ));
    }
    if num_patches == 0 {
        return Err(DataError::config("num_patches", "must be > 0"));
    }
    // MAE keeps int(N * (1 - ratio)) patches; the rest are hidden.
    let keep = ((num_patches as f64) * (1.0 - f64::from(ratio))) as usize;
    Ok(num_patches - keep.max(1))
}

/// Hides a uniformly random subset of `round(N * ratio)` patches per sample (MAE, SimMIM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomPatchMasker {
    /// Share of patches hidden, in `[0, 1)`; MAE uses 0.75.
    pub mask_ratio: f32,
}

impl RandomPatchMasker {
    /// Draws one mask over `num_patches` patches.
    pub fn sample(&self, num_patches: usize, rng: &mut StdRng) -> Result<PatchMask> {
        let n_masked = masked_count(num_patches, self.mask_ratio)?;
        let mut order: Vec<usize> = (0..num_patches).collect();
        order.shuffle(rng);
        let mut hidden = vec![false; num_patches];
        order[..n_masked].iter().for_each(|&p| hidden[p] = true);
        Ok(PatchMask::from_hidden(&hidden))
    }
}

/// Hides rectangular blocks of patches until exactly `round(N * ratio)` are hidden (BEiT's
/// block-wise masking on a `grid_h x grid_w` patch grid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockPatchMasker {
    /// Share of patches hidden.
    pub mask_ratio: f32,
    /// Smallest block, in patches.
    pub min_block: usize,
    /// Range of block aspect ratios (height / width).
    pub aspect: (f32, f32),
}

impl Default for BlockPatchMasker {
    fn default() -> Self {
        Self {
            mask_ratio: 0.4,
            min_block: 4,
            aspect: (0.3, 1.0 / 0.3),
        }
    }
}

impl BlockPatchMasker {
    /// Draws one mask over a `grid_h x grid_w` grid of patches.
    pub fn sample(&self, grid_h: usize, grid_w: usize, rng: &mut StdRng) -> Result<PatchMask> {
        let n = grid_h * grid_w;
        let target = masked_count(n, self.mask_ratio)?;
        if !(self.aspect.0 > 0.0 && self.aspect.0 <= self.aspect.1) {
            return Err(DataError::config(
                "block_mask.aspect",
                "must satisfy 0 < min <= max",
            ));
        }
        let mut hidden = vec![false; n];
        let mut count = 0;
        let mut stalls = 0;
        while count < target && stalls < 20 {
            let remaining = target - count;
            let lo = self.min_block.min(remaining).max(1) as f32;
            let area = rng.random_range(lo..=remaining.max(1) as f32);
            let aspect = rng
                .random_range(self.aspect.0.ln()..=self.aspect.1.ln())
                .exp();
            let bh = ((area * aspect).sqrt().round() as usize).clamp(1, grid_h);
            let bw = ((area / aspect).sqrt().round() as usize).clamp(1, grid_w);
            let top = rng.random_range(0..=grid_h - bh);
            let left = rng.random_range(0..=grid_w - bw);
            let mut added = 0;
            'block: for y in top..top + bh {
                for x in left..left + bw {
                    if count + added == target {
                        break 'block;
                    }
                    let p = y * grid_w + x;
                    if !hidden[p] {
                        hidden[p] = true;
                        added += 1;
                    }
                }
            }
            count += added;
            stalls = if added == 0 { stalls + 1 } else { 0 };
        }
        // Rarely blocks keep landing on hidden patches: top up with random patches so the ratio
        // is always exact.
        if count < target {
            let mut free: Vec<usize> = (0..n).filter(|&p| !hidden[p]).collect();
            free.shuffle(rng);
            free[..target - count]
                .iter()
                .for_each(|&p| hidden[p] = true);
        }
        Ok(PatchMask::from_hidden(&hidden))
    }
}

/// Masks of a whole batch as tensors, ready for an MAE encoder/decoder.
#[derive(Debug, Clone)]
pub struct PatchMaskBatch<B: Backend> {
    /// Visible patch indices, `[batch, n_keep]`.
    pub keep: Tensor<B, 2, Int>,
    /// Restore indices, `[batch, n_patches]`.
    pub restore: Tensor<B, 2, Int>,
    /// 1.0 for hidden patches, 0.0 for visible ones, `[batch, n_patches]`.
    pub hidden: Tensor<B, 2>,
}

impl<B: Backend> PatchMaskBatch<B> {
    /// Stacks per-sample masks, which must all hide the same number of patches.
    pub fn from_masks(masks: &[PatchMask], device: &B::Device) -> Result<Self> {
        let first = masks
            .first()
            .ok_or_else(|| DataError::config("masks", "batch is empty"))?;
        let (n, k) = (first.num_patches(), first.keep.len());
        if let Some(bad) = masks
            .iter()
            .find(|m| m.num_patches() != n || m.keep.len() != k)
        {
            return Err(DataError::Shape {
                what: "PatchMaskBatch",
                expected: format!("{n} patches with {k} kept"),
                found: format!("{} patches with {} kept", bad.num_patches(), bad.keep.len()),
            });
        }
        let b = masks.len();
        let ints = |f: &dyn Fn(&PatchMask) -> Vec<usize>, width: usize| {
            let flat: Vec<i64> = masks.iter().flat_map(f).map(|v| v as i64).collect();
            Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [b, width]), device)
        };
        let hidden: Vec<f32> = masks
            .iter()
            .flat_map(|m| m.hidden())
            .map(|h| if h { 1.0 } else { 0.0 })
            .collect();
        Ok(Self {
            keep: ints(&|m| m.keep.clone(), k),
            restore: ints(&|m| m.restore.clone(), n),
            hidden: Tensor::from_data(TensorData::new(hidden, [b, n]), device),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::item_rng;
    use proptest::prelude::*;

    proptest! {
        // A fixed seed: the same cases in every run.
        #![proptest_config(ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(20261207),
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_mask_ratio_is_exact_and_restore_inverts(n in 1usize..300, ratio in 0.0f32..0.95, seed in any::<u64>()) {
            let m = RandomPatchMasker { mask_ratio: ratio }.sample(n, &mut item_rng(seed, 0, 0)).unwrap();
            let keep = ((n as f64) * (1.0 - f64::from(ratio))) as usize;
            prop_assert_eq!(m.keep.len(), keep.max(1));
            prop_assert_eq!(m.keep.len() + m.masked.len(), n);
            // keep ++ masked is a permutation, and restore is its inverse.
            let order: Vec<usize> = m.keep.iter().chain(&m.masked).copied().collect();
            for p in 0..n {
                prop_assert_eq!(order[m.restore[p]], p);
            }
            prop_assert_eq!(PatchMask::from_hidden(&m.hidden()), m);
        }

        #[test]
        fn block_mask_ratio_is_exact(gh in 2usize..16, gw in 2usize..16, ratio in 0.05f32..0.9, seed in any::<u64>()) {
            let masker = BlockPatchMasker { mask_ratio: ratio, ..Default::default() };
            let m = masker.sample(gh, gw, &mut item_rng(seed, 0, 0)).unwrap();
            let n = gh * gw;
            let keep = ((n as f64) * (1.0 - f64::from(ratio))) as usize;
            prop_assert_eq!(m.masked.len(), n - keep.max(1));
        }
    }

    #[test]
    fn same_seed_same_mask_and_blocks_are_contiguous() {
        let masker = RandomPatchMasker { mask_ratio: 0.75 };
        let a = masker.sample(49, &mut item_rng(1, 0, 0)).unwrap();
        assert_eq!(a, masker.sample(49, &mut item_rng(1, 0, 0)).unwrap());
        assert_ne!(a, masker.sample(49, &mut item_rng(1, 0, 1)).unwrap());
        assert_eq!(a.masked.len(), 37); // 49 - int(49 * 0.25)
        // A block mask hides neighbours: most hidden patches touch another hidden patch.
        let b = BlockPatchMasker::default()
            .sample(14, 14, &mut item_rng(2, 0, 0))
            .unwrap();
        let hidden = b.hidden();
        let touching = b
            .masked
            .iter()
            .filter(|&&p| {
                let (y, x) = (p / 14, p % 14);
                (x > 0 && hidden[p - 1])
                    || (x < 13 && hidden[p + 1])
                    || (y > 0 && hidden[p - 14])
                    || (y < 13 && hidden[p + 14])
            })
            .count();
        assert!(
            touching * 10 >= b.masked.len() * 9,
            "{touching} of {}",
            b.masked.len()
        );
    }

    #[test]
    fn bad_ratios_and_batches() {
        let mut rng = item_rng(0, 0, 0);
        assert!(
            RandomPatchMasker { mask_ratio: 1.0 }
                .sample(10, &mut rng)
                .is_err()
        );
        assert!(
            RandomPatchMasker { mask_ratio: 0.5 }
                .sample(0, &mut rng)
                .is_err()
        );
        use crate::testdata::TestBackend as B;
        let dev = Default::default();
        let m1 = RandomPatchMasker { mask_ratio: 0.5 }
            .sample(8, &mut rng)
            .unwrap();
        let m2 = RandomPatchMasker { mask_ratio: 0.25 }
            .sample(8, &mut rng)
            .unwrap();
        assert!(PatchMaskBatch::<B>::from_masks(&[m1.clone(), m2], &dev).is_err());
        let batch = PatchMaskBatch::<B>::from_masks(&[m1.clone(), m1.clone()], &dev).unwrap();
        assert_eq!(batch.keep.dims(), [2, 4]);
        assert_eq!(batch.hidden.clone().sum().into_scalar(), 8.0);
        let restore: Vec<i64> = batch.restore.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(
            restore[..8].iter().map(|&v| v as usize).collect::<Vec<_>>(),
            m1.restore
        );
    }
}
