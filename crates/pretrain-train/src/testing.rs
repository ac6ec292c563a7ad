//! What this crate's tests share.

/// The backend of this crate's tests: burn's Flex CPU backend (the default everywhere; the
/// facade's cross-backend tests run the objectives on ndarray and wgpu too).
pub type TestBackend = burn::backend::Flex;
/// [`TestBackend`] with autodiff.
pub type TestAutodiff = burn::backend::Autodiff<TestBackend>;
