//! Photometric augmentations: colour jitter, grayscale, blur, noise, solarize, cutout and
//! per-channel normalization.

use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::item::Image;
use crate::rng::standard_normal;

/// Random brightness, contrast and saturation changes (applied with probability `p`), values
/// clamped to `[0, 1]`. Each strength `s` draws a factor from `[1 - s, 1 + s]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f32,
    /// Contrast strength.
    pub contrast: f32,
    /// Saturation strength (RGB only; ignored on grey images).
    pub saturation: f32,
    /// Probability of jittering at all.
    pub p: f32,
}

fn luminance(img: &Image, pixel: usize) -> f32 {
    let plane = img.height * img.width;
    if img.channels == 3 {
        0.299 * img.data[pixel]
            + 0.587 * img.data[plane + pixel]
            + 0.114 * img.data[2 * plane + pixel]
    } else {
        img.data[pixel]
    }
}

impl ColorJitter {
    pub(crate) fn apply(&self, mut img: Image, rng: &mut StdRng) -> Image {
        if rng.random::<f32>() >= self.p {
            return img;
        }
        let factor = |s: f32, rng: &mut StdRng| {
            if s > 0.0 {
                rng.random_range((1.0 - s).max(0.0)..=1.0 + s)
            } else {
                1.0
            }
        };
        let b = factor(self.brightness, rng);
        img.data
            .iter_mut()
            .for_each(|v| *v = (*v * b).clamp(0.0, 1.0));
        let c = factor(self.contrast, rng);
        let plane = img.height * img.width;
        let mean = (0..plane).map(|i| luminance(&img, i)).sum::<f32>() / plane as f32;
        img.data
            .iter_mut()
            .for_each(|v| *v = ((*v - mean) * c + mean).clamp(0.0, 1.0));
        if img.channels == 3 {
            let s = factor(self.saturation, rng);
            let grey: Vec<f32> = (0..plane).map(|i| luminance(&img, i)).collect();
            for ch in 0..3 {
                for (v, g) in img.channel_mut(ch).iter_mut().zip(&grey) {
                    *v = ((*v - g) * s + g).clamp(0.0, 1.0);
                }
            }
        }
        img
    }
}

/// Replaces RGB channels by their luminance with probability `p` (no effect on grey images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomGrayscale {
    /// Probability of converting.
    pub p: f32,
}

impl RandomGrayscale {
    pub(crate) fn apply(&self, mut img: Image, rng: &mut StdRng) -> Image {
        if img.channels == 3 && rng.random::<f32>() < self.p {
            let grey: Vec<f32> = (0..img.height * img.width)
                .map(|i| luminance(&img, i))
                .collect();
            for ch in 0..3 {
                img.channel_mut(ch).copy_from_slice(&grey);
            }
        }
        img
    }
}

/// Gaussian blur with sigma drawn from `sigma`, applied with probability `p` (separable kernel
/// of radius `ceil(3 sigma)`, reflected borders).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianBlur {
    /// Range of the standard deviation in pixels.
    pub sigma: (f32, f32),
    /// Probability of blurring.
    pub p: f32,
}

fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    while i < 0 || i >= n {
        i = if i < 0 { -i - 1 } else { 2 * n - i - 1 };
    }
    i as usize
}

impl GaussianBlur {
    pub(crate) fn apply(&self, img: Image, rng: &mut StdRng) -> Image {
        if rng.random::<f32>() >= self.p {
            return img;
        }
        let sigma = rng.random_range(self.sigma.0..=self.sigma.1);
        blur(&img, sigma)
    }
}

/// Blurs every channel with a normalized gaussian kernel of standard deviation `sigma`.
pub fn blur(img: &Image, sigma: f32) -> Image {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|k| (-((k * k) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (h, w) = (img.height, img.width);
    let mut tmp = Image::zeros(img.channels, h, w);
    let mut out = Image::zeros(img.channels, h, w);
    for c in 0..img.channels {
        for y in 0..h {
            for x in 0..w {
                let s: f32 = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, kv)| kv * img.get(c, y, reflect(x as isize + k as isize - radius, w)))
                    .sum();
                let i = tmp.index(c, y, x);
                tmp.data[i] = s;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let s: f32 = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, kv)| kv * tmp.get(c, reflect(y as isize + k as isize - radius, h), x))
                    .sum();
                let i = out.index(c, y, x);
                out.data[i] = s;
            }
        }
    }
    out
}

/// Adds gaussian noise of standard deviation `std` with probability `p`, clamped to `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianNoise {
    /// Noise standard deviation.
    pub std: f32,
    /// Probability of adding noise.
    pub p: f32,
}

impl GaussianNoise {
    pub(crate) fn apply(&self, mut img: Image, rng: &mut StdRng) -> Image {
        if rng.random::<f32>() < self.p {
            for v in &mut img.data {
                *v = (*v + self.std * standard_normal(rng)).clamp(0.0, 1.0);
            }
        }
        img
    }
}

/// Inverts values at or above `threshold` (`v -> 1 - v`) with probability `p` (BYOL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solarize {
    /// Values at or above it are inverted.
    pub threshold: f32,
    /// Probability of solarizing.
    pub p: f32,
}

impl Solarize {
    pub(crate) fn apply(&self, mut img: Image, rng: &mut StdRng) -> Image {
        if rng.random::<f32>() < self.p {
            img.data
                .iter_mut()
                .filter(|v| **v >= self.threshold)
                .for_each(|v| *v = 1.0 - *v);
        }
        img
    }
}

/// Sets a random square of side `size` pixels (clipped at the borders) to `fill` with
/// probability `p`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cutout {
    /// Side of the square in pixels.
    pub size: usize,
    /// Value written.
    pub fill: f32,
    /// Probability of cutting.
    pub p: f32,
}

impl Cutout {
    pub(crate) fn apply(&self, mut img: Image, rng: &mut StdRng) -> Image {
        if rng.random::<f32>() >= self.p || self.size == 0 {
            return img;
        }
        let cy = rng.random_range(0..img.height) as isize;
        let cx = rng.random_range(0..img.width) as isize;
        let half = (self.size / 2) as isize;
        let (y0, x0) = ((cy - half).max(0) as usize, (cx - half).max(0) as usize);
        let y1 = ((cy - half + self.size as isize) as usize).min(img.height);
        let x1 = ((cx - half + self.size as isize) as usize).min(img.width);
        for c in 0..img.channels {
            for y in y0..y1 {
                for x in x0..x1 {
                    let i = img.index(c, y, x);
                    img.data[i] = self.fill;
                }
            }
        }
        img
    }
}

/// Masking noise of denoising autoencoders: each pixel (all its channels) is set to `fill`
/// with probability `drop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskingNoise {
    /// Probability that a pixel is dropped.
    pub drop: f32,
    /// Value written to dropped pixels.
    #[serde(default)]
    pub fill: f32,
}

impl MaskingNoise {
    pub(crate) fn apply(&self, mut img: Image, rng: &mut StdRng) -> Image {
        let plane = img.height * img.width;
        for pixel in 0..plane {
            if rng.random::<f32>() < self.drop {
                for c in 0..img.channels {
                    img.data[c * plane + pixel] = self.fill;
                }
            }
        }
        img
    }
}

/// Per-channel `(v - mean) / std`; the last step of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Fashion-MNIST training-set statistics (pixels in [0, 1]).
    pub fn fashion_mnist() -> Self {
        Self {
            mean: vec![0.2860],
            std: vec![0.3530],
        }
    }

    /// MNIST training-set statistics.
    pub fn mnist() -> Self {
        Self {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// CIFAR-10 training-set statistics.
    pub fn cifar10() -> Self {
        Self {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// Measures the per-channel mean and std of `images` (all of the same channel count).
    pub fn fit<'a>(images: impl IntoIterator<Item = &'a Image>) -> Result<Self> {
        let mut sum: Vec<f64> = Vec::new();
        let mut sq: Vec<f64> = Vec::new();
        let mut count = 0usize;
        for img in images {
            if sum.is_empty() {
                sum = vec![0.0; img.channels];
                sq = vec![0.0; img.channels];
            } else if sum.len() != img.channels {
                return Err(DataError::Shape {
                    what: "Normalize::fit",
                    expected: format!("{} channels", sum.len()),
                    found: format!("{} channels", img.channels),
                });
            }
            for c in 0..img.channels {
                for &v in img.channel(c) {
                    sum[c] += f64::from(v);
                    sq[c] += f64::from(v) * f64::from(v);
                }
            }
            count += img.height * img.width;
        }
        if count == 0 {
            return Err(DataError::config("Normalize::fit", "no image given"));
        }
        let n = count as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| ((q / n - (s / n).powi(2)).max(1e-12)).sqrt() as f32)
            .collect();
        Ok(Self { mean, std })
    }

    pub(crate) fn check(&self, channels: usize) -> Result<()> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(DataError::Shape {
                what: "normalize",
                expected: format!("mean and std of {channels} channels"),
                found: format!("{} means, {} stds", self.mean.len(), self.std.len()),
            });
        }
        // Standard deviations are divided by: strictly positive.
        for &s in &self.std {
            super::within("normalize.std", s, f32::MIN_POSITIVE, super::MAX_VALUE)?;
        }
        for &m in &self.mean {
            super::within("normalize.mean", m, -super::MAX_VALUE, super::MAX_VALUE)?;
        }
        Ok(())
    }

    /// Normalizes in place (channel counts checked by the pipeline beforehand).
    pub fn apply(&self, mut img: Image) -> Image {
        for c in 0..img.channels {
            let (m, s) = (self.mean[c], self.std[c]);
            img.channel_mut(c)
                .iter_mut()
                .for_each(|v| *v = (*v - m) / s);
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::item_rng;

    fn grey(values: Vec<f32>) -> Image {
        let n = (values.len() as f64).sqrt() as usize;
        Image::new(1, n, n, values).unwrap()
    }

    #[test]
    fn blur_preserves_mean_and_smooths() {
        let mut data = vec![0.0; 81];
        data[40] = 1.0;
        let out = blur(&grey(data), 1.0);
        let total: f32 = out.data.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert!(
            out.data[40] < 0.2 && out.data[41] > 0.05 && (out.data[39] - out.data[41]).abs() < 1e-6
        );
    }

    #[test]
    fn solarize_cutout_noise_jitter() {
        let mut rng = item_rng(0, 0, 0);
        let img = grey(vec![0.2, 0.9, 0.5, 0.7]);
        let s = Solarize {
            threshold: 0.5,
            p: 1.0,
        }
        .apply(img.clone(), &mut rng);
        assert_eq!(s.data, vec![0.2, 1.0 - 0.9, 0.5, 1.0 - 0.7]);
        let dropped = MaskingNoise {
            drop: 0.5,
            fill: 0.0,
        }
        .apply(grey(vec![1.0; 400]), &mut rng);
        let zeros = dropped.data.iter().filter(|v| **v == 0.0).count();
        assert!(
            (150..250).contains(&zeros),
            "{zeros} of 400 dropped at p = 0.5"
        );
        let ones = grey(vec![1.0; 64]);
        let cut = Cutout {
            size: 4,
            fill: 0.0,
            p: 1.0,
        }
        .apply(ones.clone(), &mut rng);
        let zeros = cut.data.iter().filter(|v| **v == 0.0).count();
        assert!((4..=16).contains(&zeros), "{zeros}");
        let noisy = GaussianNoise { std: 0.1, p: 1.0 }.apply(grey(vec![0.5; 64]), &mut rng);
        assert!(noisy.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(noisy.data.iter().any(|v| (v - 0.5).abs() > 0.01));
        let jit = ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.0,
            p: 1.0,
        };
        let out = jit.apply(grey(vec![0.2, 0.4, 0.6, 0.8]), &mut rng);
        assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
        // Order is preserved by brightness and contrast with positive factors.
        assert!(out.data.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn normalize_fit_gives_zero_mean_unit_std() {
        let imgs = vec![
            grey(vec![0.0, 1.0, 0.5, 0.5]),
            grey(vec![0.25, 0.75, 0.0, 1.0]),
        ];
        let norm = Normalize::fit(&imgs).unwrap();
        let out: Vec<f32> = imgs
            .iter()
            .flat_map(|i| norm.apply(i.clone()).data)
            .collect();
        let mean = out.iter().sum::<f32>() / 8.0;
        let var = out.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 8.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
        assert!(Normalize::cifar10().check(1).is_err());
        assert!(
            Normalize {
                mean: vec![0.0],
                std: vec![0.0]
            }
            .check(1)
            .is_err()
        );
    }

    #[test]
    fn grayscale_equalizes_channels() {
        let img = Image::new(3, 1, 2, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).unwrap();
        let g = RandomGrayscale { p: 1.0 }.apply(img, &mut item_rng(0, 0, 0));
        assert_eq!(g.channel(0), g.channel(2));
        assert!((g.data[0] - 0.299).abs() < 1e-6);
    }
}
