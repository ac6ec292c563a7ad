//! Runnable examples of the `pretrain` crates; see each folder's README.
