//! Backend selection: which burn backends were compiled in, parsing a `--backend` value, and
//! running generic code on the chosen one.
//!
//! Library code is generic over `B: FusedBackend` / `B: FusedAutodiffBackend` (burn's backend
//! traits plus `pretrain_models::fused`); only binaries pick a concrete backend, through
//! [`BackendKind`] and [`run_on`] (or the [`Selected`] alias).

use pretrain_models::FusedAutodiffBackend;
use std::str::FromStr;

use pretrain_data::Named;
use pretrain_train::Precision;
use strum::VariantArray;

pretrain_data::named_enum! {
    /// A burn backend this crate can be built with, named by its cargo feature ([`Named`]).
    pub enum BackendKind {
        /// burn's Flex CPU backend (cargo feature `flex`, the default).
        Flex,
        /// burn's NdArray CPU backend (feature `ndarray`).
        #[serde(rename = "ndarray")]
        #[strum(serialize = "ndarray")]
        NdArray,
        /// WebGPU through wgpu: Vulkan, Metal, DX12, or Mesa's software Vulkan (feature `wgpu`).
        Wgpu,
        /// NVIDIA CUDA (feature `cuda`).
        Cuda,
    }
}

/// Why a backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The name matches no backend.
    #[error("unknown backend {given:?}; valid backends: {valid} (compiled in: {compiled})")]
    Unknown {
        /// The value given.
        given: String,
        /// Every backend's name.
        valid: String,
        /// Backends compiled into this binary.
        compiled: String,
    },
    /// The backend cannot compute in the requested precision.
    #[error(
        "backend {backend} cannot train in {precision}; it supports: {supported} (half precision \
         needs wgpu (f16) or cuda (f16, bf16); the CPU backends compute in f32)"
    )]
    Precision {
        /// Backend name.
        backend: &'static str,
        /// Precision asked for.
        precision: &'static str,
        /// Precisions this backend supports.
        supported: String,
    },
    /// The backend exists but this binary was built without its cargo feature.
    #[error(
        "backend {name} is not compiled in; rebuild with `--features {feature}` (compiled in: {compiled})"
    )]
    NotCompiled {
        /// Backend name.
        name: &'static str,
        /// Cargo feature that enables it.
        feature: &'static str,
        /// Backends compiled into this binary.
        compiled: String,
    },
}

impl BackendKind {
    /// Whether this binary was built with the backend's feature.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::NdArray => cfg!(feature = "ndarray"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Backends compiled into this binary.
    pub fn compiled() -> Vec<BackendKind> {
        Self::VARIANTS
            .iter()
            .copied()
            .filter(|b| b.is_compiled())
            .collect()
    }

    /// The backend [`Selected`] names: the first compiled of cuda, wgpu, flex, ndarray.
    pub fn preferred() -> Option<BackendKind> {
        [
            BackendKind::Cuda,
            BackendKind::Wgpu,
            BackendKind::Flex,
            BackendKind::NdArray,
        ]
        .into_iter()
        .find(|b| b.is_compiled())
    }

    /// Fails unless compiled in.
    pub fn ensure_compiled(self) -> Result<Self, BackendError> {
        if self.is_compiled() {
            Ok(self)
        } else {
            Err(BackendError::NotCompiled {
                name: self.name(),
                feature: self.name(),
                compiled: compiled_list(),
            })
        }
    }
}

fn compiled_list() -> String {
    let names: Vec<_> = BackendKind::compiled()
        .into_iter()
        .map(Named::name)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;

    /// Parses a `--backend` value (case-insensitive) and checks it is compiled in.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = Self::VARIANTS
            .iter()
            .copied()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| BackendError::Unknown {
                given: s.to_string(),
                valid: Self::names(),
                compiled: compiled_list(),
            })?;
        kind.ensure_compiled()
    }
}

/// Flex CPU backend with autodiff.
#[cfg(feature = "flex")]
pub type FlexAutodiff = burn::backend::Autodiff<burn::backend::Flex>;
/// NdArray CPU backend with autodiff.
#[cfg(feature = "ndarray")]
pub type NdArrayAutodiff = burn::backend::Autodiff<burn::backend::NdArray>;
/// wgpu backend with autodiff.
#[cfg(feature = "wgpu")]
pub type WgpuAutodiff = burn::backend::Autodiff<burn::backend::Wgpu>;
/// CUDA backend with autodiff.
#[cfg(feature = "cuda")]
pub type CudaAutodiff = burn::backend::Autodiff<burn::backend::Cuda>;

/// Defines `pub type Selected`: the first of CUDA, wgpu, Flex and NdArray (with autodiff)
/// enabled by the **calling crate's** `cuda`, `wgpu`, `flex`, `ndarray` features (forwarded to
/// this crate's). An example crate built inside the workspace thus runs on the backend its own
/// features ask for, not on one another crate of the same build enabled.
#[macro_export]
macro_rules! selected_backend {
    () => {
        /// The preferred backend this crate was built with, with autodiff.
        #[cfg(feature = "cuda")]
        pub type Selected = $crate::backend::CudaAutodiff;
        /// The preferred backend this crate was built with, with autodiff.
        #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
        pub type Selected = $crate::backend::WgpuAutodiff;
        /// The preferred backend this crate was built with, with autodiff.
        #[cfg(all(feature = "flex", not(any(feature = "wgpu", feature = "cuda"))))]
        pub type Selected = $crate::backend::FlexAutodiff;
        /// The preferred backend this crate was built with, with autodiff.
        #[cfg(all(
            feature = "ndarray",
            not(any(feature = "flex", feature = "wgpu", feature = "cuda"))
        ))]
        pub type Selected = $crate::backend::NdArrayAutodiff;
    };
}

crate::selected_backend!();

/// Code generic over the backend, run by [`run_on`] on a backend chosen at run time.
pub trait BackendTask {
    /// What the task returns.
    type Output;

    /// Runs the task on backend `B` and its default `device`.
    fn run<B: FusedAutodiffBackend>(self, kind: BackendKind, device: B::Device) -> Self::Output;
}

/// Runs `task` on backend `kind` (with autodiff) and its default device.
pub fn run_on<T: BackendTask>(kind: BackendKind, task: T) -> Result<T::Output, BackendError> {
    crate::dispatch_backend!(kind, Precision::F32, task)
}

impl BackendKind {
    /// Float precisions this backend can train in (see [`run_on_precision`]).
    pub fn precisions(self) -> &'static [Precision] {
        match self {
            BackendKind::Flex | BackendKind::NdArray => &[Precision::F32],
            // WGSL has f16 but no bf16.
            BackendKind::Wgpu => &[Precision::F32, Precision::F16],
            BackendKind::Cuda => &[Precision::F32, Precision::F16, Precision::Bf16],
        }
    }
}

/// [`run_on`] with the backend built for `precision`'s float type (`Wgpu<f16>`, `Cuda<bf16>`,
/// ...): weights, activations and optimizer state in that type, so the engine's `precision`
/// check passes and f16 gets dynamic loss scaling. Refused, with the supported list, where the
/// backend has no such float type.
pub fn run_on_precision<T: BackendTask>(
    kind: BackendKind,
    precision: Precision,
    task: T,
) -> Result<T::Output, BackendError> {
    crate::dispatch_backend!(kind, precision, task)
}

/// Why [`dispatch_backend!`] found no arm: the precision is not one the backend has, or the
/// backend is not compiled into the calling crate.
pub fn unavailable(kind: BackendKind, precision: Precision) -> BackendError {
    if !kind.precisions().contains(&precision) {
        return BackendError::Precision {
            backend: kind.name(),
            precision: precision.name(),
            supported: kind
                .precisions()
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", "),
        };
    }
    BackendError::NotCompiled {
        name: kind.name(),
        feature: kind.name(),
        compiled: compiled_list(),
    }
}

/// Runs a [`BackendTask`] on `$kind` in `$precision`, over the backends enabled by the
/// **calling crate's** `flex`, `ndarray`, `wgpu` and `cuda` features (which must forward to
/// this crate's). A crate that dispatches many tasks (recipes) thereby compiles them only for
/// the backends it was asked for, not for every backend another crate of the build enabled.
/// Evaluates to `Result<Output, BackendError>`.
#[macro_export]
macro_rules! dispatch_backend {
    ($kind:expr, $precision:expr, $task:expr) => {{
        use $crate::backend::BackendKind as Kind;
        use $crate::train::Precision as P;
        #[allow(unused)]
        type Ad<Inner> = $crate::burn::backend::Autodiff<Inner>;
        let (kind, precision, task) = ($kind, $precision, $task);
        #[allow(unreachable_patterns)] // Arms of backends not compiled in are never reached.
        match (kind, precision) {
            #[cfg(feature = "flex")]
            (Kind::Flex, P::F32) => Ok($crate::backend::BackendTask::run::<
                Ad<$crate::burn::backend::Flex>,
            >(task, kind, Default::default())),
            #[cfg(feature = "ndarray")]
            (Kind::NdArray, P::F32) => Ok($crate::backend::BackendTask::run::<
                Ad<$crate::burn::backend::NdArray>,
            >(task, kind, Default::default())),
            #[cfg(feature = "wgpu")]
            (Kind::Wgpu, P::F32) => Ok($crate::backend::BackendTask::run::<
                Ad<$crate::burn::backend::Wgpu>,
            >(task, kind, Default::default())),
            #[cfg(feature = "wgpu")]
            (Kind::Wgpu, P::F16) => Ok($crate::backend::BackendTask::run::<
                Ad<$crate::burn::backend::Wgpu<$crate::burn::tensor::f16>>,
            >(task, kind, Default::default())),
            #[cfg(feature = "cuda")]
            (Kind::Cuda, P::F32) => Ok($crate::backend::BackendTask::run::<
                Ad<$crate::burn::backend::Cuda>,
            >(task, kind, Default::default())),
            #[cfg(feature = "cuda")]
            (Kind::Cuda, P::F16) => Ok($crate::backend::BackendTask::run::<
                Ad<$crate::burn::backend::Cuda<$crate::burn::tensor::f16>>,
            >(task, kind, Default::default())),
            #[cfg(feature = "cuda")]
            (Kind::Cuda, P::Bf16) => Ok($crate::backend::BackendTask::run::<
                Ad<$crate::burn::backend::Cuda<$crate::burn::tensor::bf16>>,
            >(task, kind, Default::default())),
            _ => Err($crate::backend::unavailable(kind, precision)),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Tensor, TensorData, activation};

    #[test]
    fn parses_names_and_lists_valid_ones() {
        pretrain_data::names::assert_serde_names::<BackendKind>();
        pretrain_data::names::assert_serde_names::<Precision>();
        assert_eq!("FLEX".parse::<BackendKind>().unwrap(), BackendKind::Flex);
        let err = "tpu".parse::<BackendKind>().unwrap_err().to_string();
        assert!(
            err.contains("valid backends: flex, ndarray, wgpu, cuda"),
            "{err}"
        );
        assert!(err.contains("compiled in: flex"), "{err}");
        if !cfg!(feature = "cuda") {
            let err = "cuda".parse::<BackendKind>().unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
        assert_eq!(
            BackendKind::preferred().map(|b| b.is_compiled()),
            Some(true)
        );
    }

    /// A small computation touching matmul, softmax, reductions and autodiff.
    struct SoftmaxMatmul;

    impl BackendTask for SoftmaxMatmul {
        type Output = (Vec<f32>, Vec<f32>);

        fn run<B: FusedAutodiffBackend>(
            self,
            _kind: BackendKind,
            device: B::Device,
        ) -> Self::Output {
            let a: Vec<f32> = (0..64)
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
                .collect();
            let b: Vec<f32> = (0..64)
                .map(|i| ((i * 11 % 13) as f32 - 6.0) / 6.0)
                .collect();
            let a = Tensor::<B, 2>::from_data(TensorData::new(a, [8, 8]), &device).require_grad();
            let b = Tensor::<B, 2>::from_data(TensorData::new(b, [8, 8]), &device);
            let out = activation::softmax(a.clone().matmul(b), 1);
            let loss = (out.clone() * out.clone()).sum();
            let grads = loss.backward();
            let grad = a.grad(&grads).unwrap();
            (
                out.into_data().to_vec().unwrap(),
                grad.into_data().to_vec().unwrap(),
            )
        }
    }

    #[test]
    fn run_on_flex() {
        let (out, grad) = run_on(BackendKind::Flex, SoftmaxMatmul).unwrap();
        let row: f32 = out[..8].iter().sum();
        assert!((row - 1.0).abs() < 1e-5);
        assert!(grad.iter().any(|g| g.abs() > 1e-6));
    }

    /// The same computation on wgpu (Mesa's software Vulkan in CI) and on Flex.
    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_matches_flex() {
        let (flex_out, flex_grad) = run_on(BackendKind::Flex, SoftmaxMatmul).unwrap();
        let (wgpu_out, wgpu_grad) = run_on(BackendKind::Wgpu, SoftmaxMatmul).unwrap();
        for (x, y) in flex_out
            .iter()
            .zip(&wgpu_out)
            .chain(flex_grad.iter().zip(&wgpu_grad))
        {
            assert!((x - y).abs() < 1e-5, "flex {x} vs wgpu {y}");
        }
    }
}
