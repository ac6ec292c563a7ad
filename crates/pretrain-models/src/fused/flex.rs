//! Flex kernels of [`FusedBackend`], on its raw f32 storage.

use burn::backend::Flex;
use burn::tensor::ops::{ConvOptions, FloatTensor, FloatTensorOps, ModuleOps};
use burn::tensor::{DType, Shape, TensorData, TensorMetadata};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::FusedBackend;

/// Floats of the im2col matrix built at once (16 MiB): the weight gradient accumulates over
/// chunks of images so its memory does not grow with the batch.
const IM2COL_CHUNK_FLOATS: usize = 4 << 20;

impl FusedBackend for Flex {
    /// im2col + one gemm per chunk of images (`dW = dY [c_out, n*l] x cols [n*l, c_in*kh*kw]`),
    /// both multi-threaded. burn-flex 0.21 computes this gradient as a convolution with batch
    /// and channels swapped, which is single-threaded per plane and was most of the small CNN's
    /// training step (benches/NOTES.md, 2026-12-01).
    fn fused_conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || output_grad.dtype() != DType::F32 || options.groups != 1 {
            return Flex::conv2d_weight_backward(x, weight, output_grad, options);
        }
        conv2d_weight_grad_f32(
            &x,
            weight.shape(),
            &output_grad,
            &options,
            IM2COL_CHUNK_FLOATS,
        )
    }
}

/// Geometry of one 2-D convolution, in the terms im2col needs.
struct ConvGeometry {
    channels: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    output: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl ConvGeometry {
    /// Columns of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn columns(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels of one image: the im2col rows it contributes.
    fn rows(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// Writes the im2col rows of one image (`image`: `[channels, h, w]`) into `rows`
    /// (`[oh * ow, channels * kh * kw]`, row-major; zero where the kernel reads padding).
    fn im2col(&self, image: &[f32], rows: &mut [f32]) {
        let [h, w] = self.input;
        let [kh, kw] = self.kernel;
        let columns = self.columns();
        for oy in 0..self.output[0] {
            for ox in 0..self.output[1] {
                let row = &mut rows[(oy * self.output[1] + ox) * columns..][..columns];
                for (c, plane) in image.chunks_exact(h * w).enumerate() {
                    for ky in 0..kh {
                        let iy = (oy * self.stride[0] + ky * self.dilation[0])
                            .checked_sub(self.padding[0])
                            .filter(|&iy| iy < h);
                        for kx in 0..kw {
                            let ix = (ox * self.stride[1] + kx * self.dilation[1])
                                .checked_sub(self.padding[1])
                                .filter(|&ix| ix < w);
                            row[(c * kh + ky) * kw + kx] = match (iy, ix) {
                                (Some(iy), Some(ix)) => plane[iy * w + ix],
                                _ => 0.0,
                            };
                        }
                    }
                }
            }
        }
    }
}

/// The f32 weight gradient (`[c_out, c_in, kh, kw]`) of an ungrouped convolution, building at
/// most `chunk_floats` of the im2col matrix at once (at least one image's).
fn conv2d_weight_grad_f32(
    x: &FlexTensor,
    weight_shape: Shape,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
    chunk_floats: usize,
) -> FlexTensor {
    let x = x.to_contiguous();
    let [batch, channels, h, w] = x.shape().dims();
    let [c_out, _, kh, kw] = weight_shape.dims();
    let [_, _, oh, ow] = output_grad.shape().dims();
    let geometry = ConvGeometry {
        channels,
        input: [h, w],
        kernel: [kh, kw],
        output: [oh, ow],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
    };
    let images: &[f32] = x.as_slice().expect("a contiguous f32 tensor");
    let (rows, columns) = (geometry.rows(), geometry.columns());
    let chunk = (chunk_floats / (rows * columns).max(1)).clamp(1, batch.max(1));
    let mut grad: Option<FlexTensor> = None;
    for start in (0..batch).step_by(chunk) {
        let n = chunk.min(batch - start);
        let mut cols = vec![0.0f32; n * rows * columns];
        cols.par_chunks_mut(rows * columns)
            .zip(images[start * channels * h * w..].par_chunks(channels * h * w))
            .for_each(|(rows, image)| geometry.im2col(image, rows));
        let cols = FlexTensor::from_data(TensorData::new(cols, [n * rows, columns]));
        // [n, c_out, oh, ow] -> [c_out, n * oh * ow], rows in the im2col matrix's order.
        let dy = output_grad
            .narrow(0, start, n)
            .permute(&[1, 0, 2, 3])
            .reshape(Shape::new([c_out, n * rows]));
        let part = Flex::float_matmul(dy, cols); // [c_out, c_in * kh * kw]
        grad = Some(match grad {
            Some(sum) => Flex::float_add(sum, part),
            None => part,
        });
    }
    match grad {
        Some(grad) => grad.reshape(weight_shape),
        None => Flex::float_zeros(weight_shape, &Default::default(), DType::F32.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor, TensorPrimitive};

    type T4 = Tensor<Flex, 4>;

    fn primitive(t: T4) -> FlexTensor {
        t.into_primitive().tensor()
    }

    #[test]
    fn weight_gradient_equals_burns_on_odd_shapes_strides_and_chunks() {
        let dev = Default::default();
        // (batch, c_in, c_out, h, w, kernel, stride, padding, dilation)
        let cases = [
            (3, 1, 4, 9, 7, [3, 3], [1, 1], [1, 1], [1, 1]),
            (5, 3, 6, 11, 8, [3, 2], [2, 1], [0, 2], [1, 1]),
            (4, 2, 5, 10, 10, [3, 3], [1, 2], [2, 1], [2, 2]),
            (2, 4, 3, 12, 12, [4, 4], [4, 4], [0, 0], [1, 1]),
        ];
        for (batch, c_in, c_out, h, w, kernel, stride, padding, dilation) in cases {
            let options = ConvOptions::new(stride, padding, dilation, 1);
            let x = T4::random([batch, c_in, h, w], Distribution::Default, &dev);
            let weight = T4::random(
                [c_out, c_in, kernel[0], kernel[1]],
                Distribution::Default,
                &dev,
            );
            let y = burn::tensor::module::conv2d(x.clone(), weight.clone(), None, options.clone());
            let dy = y.random_like(Distribution::Normal(0.0, 1.0));
            let reference =
                T4::from_primitive(TensorPrimitive::Float(Flex::conv2d_weight_backward(
                    primitive(x.clone()),
                    primitive(weight.clone()),
                    primitive(dy.clone()),
                    options.clone(),
                )));
            // Non-contiguous input and output gradient (channels-last storage seen as NCHW);
            // chunks of one image, two images, and the whole batch.
            let channels_last = |t: T4| {
                T4::from_data(t.permute([0, 2, 3, 1]).into_data(), &dev).permute([0, 3, 1, 2])
            };
            let (x_strided, dy_strided) = (channels_last(x.clone()), channels_last(dy.clone()));
            assert!(!primitive(x_strided.clone()).is_contiguous());
            for chunk_floats in [
                1,
                2 * y.dims()[2] * y.dims()[3] * c_in * kernel[0] * kernel[1],
                usize::MAX,
            ] {
                let grad = T4::from_primitive(TensorPrimitive::Float(conv2d_weight_grad_f32(
                    &primitive(x_strided.clone()),
                    weight.shape(),
                    &primitive(dy_strided.clone()),
                    &options,
                    chunk_floats,
                )));
                let scale = reference.clone().abs().max().into_scalar();
                let err = (grad - reference.clone()).abs().max().into_scalar();
                assert!(
                    scale > 0.1 && err <= 1e-5 * scale,
                    "case {kernel:?} {stride:?}: {err} of {scale}"
                );
            }
        }
    }
}
