//! Batch normalization over the channel dimension of `[batch, channels, ...]` activations.
//!
//! Same parameters and names as burn's `BatchNorm` (`gamma`, `beta`, `running_mean`,
//! `running_var`), so checkpoints load either way, but computed so that every per-channel
//! factor is materialized per sample (`[batch, channels, 1]`) before it meets the activations.
//! burn's version broadcasts `[1, channels, 1, 1]` over `[batch, channels, h, w]`, which CPU
//! backends such as Flex run element by element on one thread (it was 44% of a small-CNN
//! SimCLR step, `benches/NOTES.md`); a per-row factor takes their vectorized path instead.
//! The running variance is the unbiased batch variance, as in PyTorch.

use crate::fused::FusedBackend;
use crate::norm::inverse_sqrt;
use burn::config::Config;
use burn::module::{Initializer, Module, Param, RunningState};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Configuration of a [`BatchNorm`].
#[derive(Config, Debug)]
pub struct BatchNormConfig {
    /// Number of channels (dimension 1 of the input).
    pub num_features: usize,
    /// Added to the variance before the square root.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Weight of the current batch in the running statistics.
    #[config(default = 0.1)]
    pub momentum: f64,
}

impl BatchNormConfig {
    /// Builds the layer: `gamma` ones, `beta` zeros, running mean 0 and variance 1.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> BatchNorm<B> {
        let n = self.num_features;
        BatchNorm {
            // Lazy like burn's parameters: nothing runs on the device until first use.
            gamma: Initializer::Ones.init([n], device),
            beta: Initializer::Zeros.init([n], device),
            running_mean: RunningState::new(Tensor::zeros([n], device)),
            running_var: RunningState::new(Tensor::ones([n], device)),
            momentum: self.momentum,
            epsilon: self.epsilon,
        }
    }
}

/// Batch normalization: batch statistics while gradients are tracked (training), running
/// statistics otherwise.
#[derive(Module, Debug)]
pub struct BatchNorm<B: Backend> {
    /// Per-channel scale.
    pub gamma: Param<Tensor<B, 1>>,
    /// Per-channel shift.
    pub beta: Param<Tensor<B, 1>>,
    /// Running mean of the channels.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running (unbiased) variance of the channels.
    pub running_var: RunningState<Tensor<B, 1>>,
    /// Weight of the current batch in the running statistics.
    pub momentum: f64,
    /// Added to the variance before the square root.
    pub epsilon: f64,
}

impl<B: FusedBackend> BatchNorm<B> {
    /// `[batch, channels, ...] -> [batch, channels, ...]`.
    ///
    /// # Panics
    /// If `D < 2`: a layer has no channel dimension to normalize then (a programming error,
    /// fixed by the caller's types).
    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        assert!(
            D >= 2,
            "batch norm needs [batch, channels, ...], got rank {D}"
        );
        let dims = input.dims();
        let (batch, channels) = (dims[0], dims[1]);
        let spatial: usize = dims[2..].iter().product();
        let x = input.reshape([batch, channels, spatial]); // [batch, channels, spatial]
        let y = if B::ad_enabled(&x.device()) {
            self.forward_train(x)
        } else {
            self.forward_inference(x)
        };
        y.reshape(dims)
    }

    /// `x`: `[batch, channels, spatial]`.
    fn forward_train(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, channels, spatial] = x.dims();
        let count = (batch * spatial) as f64;
        // Two passes (mean, then centred squares) rather than E[x^2] - E[x]^2, which loses
        // the variance when the mean is large against the spread (raw pixels).
        let mean = x.clone().sum_dim(2).sum_dim(0).div_scalar(count); // [1, channels, 1]
        let centered = x - mean.clone().repeat_dim(0, batch);
        let var = centered
            .clone()
            .square()
            .sum_dim(2)
            .sum_dim(0)
            .div_scalar(count); // [1, channels, 1]

        let unbiased = if count > 1.0 {
            count / (count - 1.0)
        } else {
            1.0
        };
        let device = centered.device();
        let update = |state: &RunningState<Tensor<B, 1>>, batch_stat: Tensor<B, 3>| {
            let running = state.value_sync().to_device(&device);
            let new = running.mul_scalar(1.0 - self.momentum).add(
                batch_stat
                    .detach()
                    .reshape([channels])
                    .mul_scalar(self.momentum),
            );
            state.update(new.detach());
        };
        update(&self.running_mean, mean);
        update(&self.running_var, var.clone().mul_scalar(unbiased));

        let inv_std = inverse_sqrt(var.add_scalar(self.epsilon)).reshape([channels]);
        let scale = self.gamma.val() * inv_std;
        centered * per_sample(scale, batch) + per_sample(self.beta.val(), batch)
    }

    /// `x`: `[batch, channels, spatial]`; one fused scale and shift per channel.
    fn forward_inference(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let batch = x.dims()[0];
        let device = x.device();
        let mean = self.running_mean.value().to_device(&device);
        let var = self.running_var.value().to_device(&device);
        let scale = self.gamma.val() * inverse_sqrt(var.add_scalar(self.epsilon));
        let shift = self.beta.val() - mean * scale.clone();
        x * per_sample(scale, batch) + per_sample(shift, batch)
    }
}

/// `[channels] -> [batch, channels, 1]`, materialized (not a stride-0 view over the batch).
fn per_sample<B: FusedBackend>(per_channel: Tensor<B, 1>, batch: usize) -> Tensor<B, 3> {
    let [channels] = per_channel.dims();
    per_channel.reshape([1, channels, 1]).repeat_dim(0, batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::init_seeded;
    use burn::module::AutodiffModule;
    use burn::tensor::{TensorData, Tolerance};

    use crate::testing::fashion;

    use crate::testing::TestAutodiff as Ad;
    use crate::testing::TestBackend as B;

    /// Six shipped Fashion-MNIST images cut into four 14-row "channels" (each with its own
    /// statistics), scaled and offset so a wrong axis or a missing centring shows.
    fn input() -> Tensor<B, 4> {
        fashion::<B>(6, &Default::default()).reshape([6, 4, 7, 28]) * 3.0 + 2.0
    }

    /// Per-channel statistics computed on the host in f64.
    fn host_stats(x: &Tensor<B, 4>) -> (Vec<f64>, Vec<f64>) {
        let [b, c, h, w] = x.dims();
        let v: Vec<f32> = x.to_data().to_vec().unwrap();
        let n = (b * h * w) as f64;
        let mut mean = vec![0.0; c];
        let mut var = vec![0.0; c];
        for (ch, (m, s)) in mean.iter_mut().zip(&mut var).enumerate() {
            let vals: Vec<f64> = (0..b)
                .flat_map(|i| (0..h * w).map(move |j| (i, j)))
                .map(|(i, j)| v[(i * c + ch) * h * w + j] as f64)
                .collect();
            *m = vals.iter().sum::<f64>() / n;
            *s = vals.iter().map(|x| (x - *m).powi(2)).sum::<f64>() / n;
        }
        (mean, var)
    }

    #[test]
    fn training_normalizes_each_channel_and_updates_running_stats() {
        let dev = Default::default();
        let x = input();
        let (mean, var) = host_stats(&x);
        let mut norm = init_seeded(&dev, 1001, || BatchNormConfig::new(4).init::<Ad>(&dev));
        norm.gamma = Param::from_tensor(Tensor::from_floats([1.0, 2.0, 0.5, 1.5], &dev));
        norm.beta = Param::from_tensor(Tensor::from_floats([0.0, -1.0, 3.0, 0.25], &dev));
        let y = norm.forward(Tensor::<Ad, 4>::from_inner(x.clone())).inner();
        let (y_mean, y_var) = host_stats(&y);
        for (ch, (gamma, beta)) in [(1.0, 0.0), (2.0, -1.0), (0.5, 3.0), (1.5, 0.25)]
            .iter()
            .enumerate()
        {
            assert!(
                (y_mean[ch] - beta).abs() < 1e-4,
                "channel {ch}: {}",
                y_mean[ch]
            );
            let expected = gamma * gamma * var[ch] / (var[ch] + 1e-5);
            assert!(
                (y_var[ch] - expected).abs() < 1e-3,
                "channel {ch}: {}",
                y_var[ch]
            );
        }
        let n = (6 * 7 * 28) as f64;
        let running_mean: Vec<f32> = norm.running_mean.value_sync().to_data().to_vec().unwrap();
        let running_var: Vec<f32> = norm.running_var.value_sync().to_data().to_vec().unwrap();
        for ch in 0..4 {
            let expected = 0.1 * mean[ch];
            assert!(
                (running_mean[ch] as f64 - expected).abs() < 1e-4,
                "channel {ch}: {} vs {expected}",
                running_mean[ch]
            );
            let unbiased = var[ch] * n / (n - 1.0);
            assert!((running_var[ch] as f64 - (0.9 + 0.1 * unbiased)).abs() < 1e-3);
        }
    }

    #[test]
    fn matches_burn_batch_norm_in_training_forward_and_gradients() {
        let dev = Default::default();
        let x = input();
        let ours = init_seeded(&dev, 1002, || BatchNormConfig::new(4).init::<Ad>(&dev));
        let burns = init_seeded(&dev, 1003, || {
            burn::nn::BatchNormConfig::new(4).init::<Ad>(&dev)
        });
        // Fixed, uneven output weights so the input gradient is not trivially zero.
        let weights = Tensor::<Ad, 4>::from_inner(
            fashion::<B>(12, &dev)
                .narrow(0, 6, 6)
                .reshape([6, 4, 7, 28]),
        );
        let run = |f: &dyn Fn(Tensor<Ad, 4>) -> Tensor<Ad, 4>| {
            let x = Tensor::<Ad, 4>::from_inner(x.clone()).require_grad();
            let y = f(x.clone());
            let grads = (y.clone() * weights.clone()).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let (y_ours, g_ours) = run(&|x| ours.forward(x));
        let (y_burn, g_burn) = run(&|x| burns.forward(x));
        let tol = Tolerance::<f32>::absolute(1e-4);
        y_ours.to_data().assert_approx_eq(&y_burn.to_data(), tol);
        g_ours.to_data().assert_approx_eq(&g_burn.to_data(), tol);
    }

    #[test]
    fn inference_uses_running_stats_and_works_on_2d_input() {
        let dev = Default::default();
        let mut norm = init_seeded(&dev, 1004, || BatchNormConfig::new(2).init::<B>(&dev));
        norm.running_mean = RunningState::new(Tensor::from_floats([1.0, -2.0], &dev));
        norm.running_var = RunningState::new(Tensor::from_floats([4.0, 0.25], &dev));
        norm.beta = Param::from_tensor(Tensor::from_floats([0.5, 0.0], &dev));
        let x = Tensor::<B, 2>::from_floats([[3.0, -2.0], [1.0, -1.5]], &dev);
        let eps = 1e-5f32;
        let expected = TensorData::from([
            [2.0 / (4.0 + eps).sqrt() + 0.5, 0.0],
            [0.5, 0.5 / (0.25 + eps).sqrt()],
        ]);
        norm.forward(x)
            .to_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
        // A trained module switched to inference keeps the statistics it learned.
        let trained = init_seeded(&dev, 1005, || BatchNormConfig::new(4).init::<Ad>(&dev));
        trained.forward(Tensor::<Ad, 4>::from_inner(input()));
        let valid = trained.valid();
        assert_ne!(
            valid.running_mean.value().to_data(),
            Tensor::<B, 1>::zeros([4], &dev).to_data()
        );
    }
}
