//! Geometric augmentations: random resized crop, resize, horizontal flip, random affine.

use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::item::Image;

/// Bilinear sample of channel `c` at continuous pixel coordinates (pixel centres at integers);
/// points outside the image take `fill`.
fn sample_bilinear(img: &Image, c: usize, y: f32, x: f32, fill: f32) -> f32 {
    let (h, w) = (img.height as f32, img.width as f32);
    if y < -0.5 || x < -0.5 || y > h - 0.5 || x > w - 0.5 {
        return fill;
    }
    let y = y.clamp(0.0, h - 1.0);
    let x = x.clamp(0.0, w - 1.0);
    let (y0, x0) = (y.floor() as usize, x.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(img.height - 1), (x0 + 1).min(img.width - 1));
    let (dy, dx) = (y - y0 as f32, x - x0 as f32);
    let top = img.get(c, y0, x0) * (1.0 - dx) + img.get(c, y0, x1) * dx;
    let bottom = img.get(c, y1, x0) * (1.0 - dx) + img.get(c, y1, x1) * dx;
    top * (1.0 - dy) + bottom * dy
}

/// Resamples the box `(top, left, height, width)` of `img` to `out_h x out_w` (bilinear,
/// align-corners = false, like torchvision).
pub fn resize_region(
    img: &Image,
    (top, left, height, width): (f32, f32, f32, f32),
    out_h: usize,
    out_w: usize,
) -> Image {
    let mut out = Image::zeros(img.channels, out_h, out_w);
    let (sy, sx) = (height / out_h as f32, width / out_w as f32);
    for c in 0..img.channels {
        for oy in 0..out_h {
            let y = top + (oy as f32 + 0.5) * sy - 0.5;
            for ox in 0..out_w {
                let x = left + (ox as f32 + 0.5) * sx - 0.5;
                let i = out.index(c, oy, ox);
                out.data[i] = sample_bilinear(img, c, y, x, 0.0);
            }
        }
    }
    out
}

/// Crops a random region covering `scale` of the area with aspect ratio in `ratio`, resized to
/// `size` (SimCLR/BYOL's main augmentation; torchvision's algorithm with 10 attempts, then a
/// centre crop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomResizedCrop {
    /// Output `(height, width)`.
    pub size: (usize, usize),
    /// Range of the crop's share of the image area.
    pub scale: (f32, f32),
    /// Range of the crop's width / height.
    pub ratio: (f32, f32),
}

impl RandomResizedCrop {
    /// SimCLR defaults: scale 0.08..1, ratio 3/4..4/3.
    pub fn new(height: usize, width: usize) -> Self {
        Self {
            size: (height, width),
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }

    /// Same with another scale range (small images often use 0.2..1).
    pub fn with_scale(mut self, min: f32, max: f32) -> Self {
        self.scale = (min, max);
        self
    }

    /// Chooses the crop box `(top, left, height, width)` for an `h x w` image.
    pub fn sample_box(&self, h: usize, w: usize, rng: &mut StdRng) -> (f32, f32, f32, f32) {
        let area = (h * w) as f32;
        let (log_lo, log_hi) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = rng.random_range(log_lo..=log_hi).exp();
            let cw = (target * aspect).sqrt().round() as usize;
            let ch = (target / aspect).sqrt().round() as usize;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let top = rng.random_range(0..=h - ch);
                let left = rng.random_range(0..=w - cw);
                return (top as f32, left as f32, ch as f32, cw as f32);
            }
        }
        // Fallback: the largest centred crop within the ratio range.
        let in_ratio = w as f32 / h as f32;
        let (ch, cw) = if in_ratio < self.ratio.0 {
            ((w as f32 / self.ratio.0).round(), w as f32)
        } else if in_ratio > self.ratio.1 {
            (h as f32, (h as f32 * self.ratio.1).round())
        } else {
            (h as f32, w as f32)
        };
        (
            ((h as f32 - ch) / 2.0).floor(),
            ((w as f32 - cw) / 2.0).floor(),
            ch,
            cw,
        )
    }

    pub(crate) fn apply(&self, img: Image, rng: &mut StdRng) -> Image {
        let region = self.sample_box(img.height, img.width, rng);
        resize_region(&img, region, self.size.0, self.size.1)
    }
}

/// Deterministic bilinear resize to `size`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resize {
    /// Output `(height, width)`.
    pub size: (usize, usize),
}

impl Resize {
    pub(crate) fn apply(&self, img: Image) -> Image {
        let region = (0.0, 0.0, img.height as f32, img.width as f32);
        resize_region(&img, region, self.size.0, self.size.1)
    }
}

/// Mirrors the image left-right with probability `p`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizontalFlip {
    /// Probability of flipping.
    pub p: f32,
}

impl HorizontalFlip {
    pub(crate) fn apply(&self, mut img: Image, rng: &mut StdRng) -> Image {
        if rng.random::<f32>() < self.p {
            let w = img.width;
            for row in img.data.chunks_exact_mut(w) {
                row.reverse();
            }
        }
        img
    }
}

/// Random rotation, translation and scaling about the centre; uncovered pixels take `fill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomAffine {
    /// Rotation drawn from `[-degrees, degrees]`.
    pub degrees: f32,
    /// Maximum shift as a share of `(height, width)`.
    pub translate: (f32, f32),
    /// Range of the zoom factor.
    pub scale: (f32, f32),
    /// Value of pixels coming from outside the image.
    pub fill: f32,
}

impl RandomAffine {
    /// Rotation only.
    pub fn rotation(degrees: f32) -> Self {
        Self {
            degrees,
            translate: (0.0, 0.0),
            scale: (1.0, 1.0),
            fill: 0.0,
        }
    }

    pub(crate) fn apply(&self, img: Image, rng: &mut StdRng) -> Image {
        let angle = rng.random_range(-self.degrees..=self.degrees).to_radians();
        let zoom = rng.random_range(self.scale.0..=self.scale.1);
        let max_dy = self.translate.0 * img.height as f32;
        let max_dx = self.translate.1 * img.width as f32;
        let ty = rng.random_range(-max_dy..=max_dy).round();
        let tx = rng.random_range(-max_dx..=max_dx).round();
        let (cy, cx) = (
            (img.height as f32 - 1.0) / 2.0,
            (img.width as f32 - 1.0) / 2.0,
        );
        let (sin, cos) = angle.sin_cos();
        let mut out = Image::zeros(img.channels, img.height, img.width);
        for c in 0..img.channels {
            for y in 0..img.height {
                for x in 0..img.width {
                    // Inverse map: undo translation, rotation and zoom.
                    let (dy, dx) = (y as f32 - cy - ty, x as f32 - cx - tx);
                    let sx = (cos * dx + sin * dy) / zoom + cx;
                    let sy = (-sin * dx + cos * dy) / zoom + cy;
                    let i = out.index(c, y, x);
                    out.data[i] = sample_bilinear(&img, c, sy, sx, self.fill);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::item_rng;

    fn ramp() -> Image {
        Image::new(1, 4, 4, (0..16).map(|v| v as f32).collect()).unwrap()
    }

    #[test]
    fn full_region_resize_is_identity() {
        let img = ramp();
        assert_eq!(Resize { size: (4, 4) }.apply(img.clone()), img);
        let down = Resize { size: (2, 2) }.apply(img);
        // Each output pixel averages a 2x2 block at its centre.
        assert_eq!(down.data, vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn crop_boxes_respect_scale_and_ratio() {
        let crop = RandomResizedCrop::new(8, 8).with_scale(0.2, 0.6);
        let mut rng = item_rng(1, 0, 0);
        for _ in 0..200 {
            let (t, l, h, w) = crop.sample_box(28, 28, &mut rng);
            assert!(t + h <= 28.0 && l + w <= 28.0);
            let share = h * w / 784.0;
            assert!((0.15..=0.7).contains(&share), "{share}");
        }
        let out = crop.apply(ramp(), &mut rng);
        assert_eq!(out.shape(), [1, 8, 8]);
    }

    #[test]
    fn flip_twice_is_identity_and_affine_zero_is_identity() {
        let img = ramp();
        let flip = HorizontalFlip { p: 1.0 };
        let mut rng = item_rng(0, 0, 0);
        let once = flip.apply(img.clone(), &mut rng);
        assert_eq!(once.get(0, 0, 0), 3.0);
        assert_eq!(flip.apply(once, &mut rng), img);
        let id = RandomAffine::rotation(0.0).apply(img.clone(), &mut rng);
        assert_eq!(id, img);
    }

    #[test]
    fn rotation_stays_in_range_and_changes_images() {
        let img = ramp();
        let mut changed = 0;
        for i in 0..50 {
            let out = RandomAffine::rotation(30.0).apply(img.clone(), &mut item_rng(0, 0, i));
            // Bilinear resampling never leaves the input range (fill is 0, the minimum).
            assert!(out.data.iter().all(|v| (0.0..=15.0).contains(v)));
            changed += usize::from(out != img);
        }
        assert!(changed > 40, "{changed}");
    }
}
