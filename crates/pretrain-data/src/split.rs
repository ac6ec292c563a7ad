//! Train/validation/test splits and stratified few-label subsets, as index lists that select
//! from any burn [`Dataset`](burn::data::dataset::Dataset).

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::data::dataset::Dataset;
use burn::data::dataset::transform::SelectionDataset;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::item::Labeled;

/// Indices `0..n` in a seeded random order.
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..n).collect();
    indices.shuffle(&mut StdRng::seed_from_u64(seed));
    indices
}

/// Shares of a dataset given to each split; they must sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    /// Training share.
    pub train: f64,
    /// Validation share.
    pub validation: f64,
    /// Test share.
    pub test: f64,
}

/// Index lists of a three-way split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitIndices {
    /// Training indices.
    pub train: Vec<usize>,
    /// Validation indices.
    pub validation: Vec<usize>,
    /// Test indices.
    pub test: Vec<usize>,
}

impl SplitFractions {
    fn check(&self) -> Result<()> {
        let parts = [self.train, self.validation, self.test];
        if parts.iter().any(|p| !(0.0..=1.0).contains(p))
            || (parts.iter().sum::<f64>() - 1.0).abs() > 1e-9
        {
            return Err(DataError::config(
                "split fractions",
                format!("{parts:?} must each lie in [0, 1] and sum to 1"),
            ));
        }
        Ok(())
    }

    /// Splits each class separately (`labels[i]` of item `i`) so every split keeps the class
    /// proportions; unlabeled items form their own group. Seeded and deterministic.
    pub fn split_stratified(&self, labels: &[Option<usize>], seed: u64) -> Result<SplitIndices> {
        self.check()?;
        let mut out = SplitIndices {
            train: Vec::new(),
            validation: Vec::new(),
            test: Vec::new(),
        };
        for (group, members) in group_by_label(labels) {
            let mut members = members;
            members.shuffle(&mut StdRng::seed_from_u64(
                seed ^ group.map_or(u64::MAX, |g| g as u64),
            ));
            let n = members.len();
            let n_val = (self.validation * n as f64).round() as usize;
            let n_test = ((self.test * n as f64).round() as usize).min(n - n_val);
            out.validation.extend_from_slice(&members[..n_val]);
            out.test.extend_from_slice(&members[n_val..n_val + n_test]);
            out.train.extend_from_slice(&members[n_val + n_test..]);
        }
        for split in [&mut out.train, &mut out.validation, &mut out.test] {
            split.sort_unstable();
        }
        Ok(out)
    }
}

fn group_by_label(labels: &[Option<usize>]) -> BTreeMap<Option<usize>, Vec<usize>> {
    let mut groups: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
    for (i, label) in labels.iter().enumerate() {
        groups.entry(*label).or_default().push(i);
    }
    groups
}

/// Picks `k` items of every class at random (seeded): the labeled subset of a few-label
/// fine-tuning run. Fails, naming the class, when a class has fewer than `k` items; unlabeled
/// items are never picked. Returned indices are sorted.
pub fn k_per_class(labels: &[Option<usize>], k: usize, seed: u64) -> Result<Vec<usize>> {
    if k == 0 {
        return Err(DataError::config("labels per class", "must be at least 1"));
    }
    let mut picked = Vec::new();
    for (class, mut members) in group_by_label(labels) {
        let Some(class) = class else { continue };
        if members.len() < k {
            return Err(DataError::config(
                "labels per class",
                format!(
                    "class {class} has only {} items, {k} requested",
                    members.len()
                ),
            ));
        }
        members.shuffle(&mut StdRng::seed_from_u64(seed.wrapping_add(class as u64)));
        picked.extend_from_slice(&members[..k]);
    }
    if picked.is_empty() {
        return Err(DataError::config(
            "labels per class",
            "the dataset has no labeled item",
        ));
    }
    picked.sort_unstable();
    Ok(picked)
}

/// The labels of every item of a dataset, in order.
pub fn labels_of<I: Labeled, D: Dataset<I> + ?Sized>(dataset: &D) -> Vec<Option<usize>> {
    (0..dataset.len())
        .map(|i| dataset.get(i).and_then(|item| item.label()))
        .collect()
}

/// A view of `dataset` holding only `indices`; fails (instead of burn's panic) on an index
/// outside the dataset.
pub fn select<D, I>(dataset: Arc<D>, indices: Vec<usize>) -> Result<SelectionDataset<D, I>>
where
    D: Dataset<I>,
    I: Clone + Send + Sync,
{
    if let Some(bad) = indices.iter().find(|&&i| i >= dataset.len()) {
        return Err(DataError::Shape {
            what: "dataset selection",
            expected: format!("indices below {}", dataset.len()),
            found: format!("index {bad}"),
        });
    }
    Ok(SelectionDataset::from_indices_unchecked(dataset, indices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;
    use burn::data::dataset::InMemDataset;

    #[test]
    fn stratified_split_keeps_proportions_on_digits() {
        let digits = testdata::digits();
        let labels: Vec<_> = digits.iter().map(|d| d.label).collect();
        let f = SplitFractions {
            train: 0.8,
            validation: 0.1,
            test: 0.1,
        };
        let s = f.split_stratified(&labels, 7).unwrap();
        assert_eq!(
            s.train.len() + s.validation.len() + s.test.len(),
            digits.len()
        );
        let mut all: Vec<_> = s
            .train
            .iter()
            .chain(&s.validation)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), digits.len(), "splits must be disjoint");
        for class in 0..10 {
            let n = s.test.iter().filter(|&&i| labels[i] == Some(class)).count();
            assert!((17..=19).contains(&n), "class {class}: {n}");
        }
        assert_eq!(s, f.split_stratified(&labels, 7).unwrap());
        assert_ne!(s, f.split_stratified(&labels, 8).unwrap());
        let bad = SplitFractions {
            train: 0.8,
            validation: 0.3,
            test: 0.1,
        };
        assert!(bad.split_stratified(&labels, 0).is_err());
    }

    #[test]
    fn k_per_class_picks_exactly_k_of_each() {
        let labels: Vec<_> = testdata::digits().iter().map(|d| d.label).collect();
        let picked = k_per_class(&labels, 5, 3).unwrap();
        assert_eq!(picked.len(), 50);
        for class in 0..10 {
            assert_eq!(
                picked.iter().filter(|&&i| labels[i] == Some(class)).count(),
                5
            );
        }
        assert_eq!(picked, k_per_class(&labels, 5, 3).unwrap());
        assert_ne!(picked, k_per_class(&labels, 5, 4).unwrap());
        let err = k_per_class(&labels, 175, 0).unwrap_err();
        assert!(err.to_string().contains("class 8 has only 174"), "{err}");
        assert!(k_per_class(&[None, None], 1, 0).is_err());
    }

    #[test]
    fn select_checks_bounds() {
        let ds = Arc::new(InMemDataset::new(testdata::digits()));
        let view = select(ds.clone(), vec![3, 1]).unwrap();
        assert_eq!(view.len(), 2);
        assert_eq!(view.get(0), ds.get(3));
        assert_eq!(labels_of(&view), vec![Some(3), Some(1)]);
        assert!(select(ds, vec![5000]).is_err());
    }
}
