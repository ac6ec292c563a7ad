//! Runnable examples of the `pretrain` crates; see each folder's README.

// The backend of every example: chosen by this crate's cargo features (`--features wgpu`).
pretrain::selected_backend!();
