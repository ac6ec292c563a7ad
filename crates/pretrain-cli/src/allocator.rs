//! mimalloc's purge policy for a training process.
//!
//! mimalloc decommits freed memory it has not reused for a while (`purge_decommits`), and the
//! next allocation of it faults every page in again, zeroed by the kernel: 13% of the small CNN's
//! training step (`clear_page_erms` under `perf`, benches/NOTES.md 2026-12-03). With purges as
//! resets (`MADV_FREE`) the pages stay mapped until the system is short of memory, so reuse
//! costs nothing and the memory can still be reclaimed.

use std::os::raw::c_int;

use libmimalloc_sys::mi_option_set;

/// `mi_option_purge_decommits` in `mi_option_e` (mimalloc.h of the v3 sources that
/// libmimalloc-sys 0.1.49 builds; the crate names only the first options).
const MI_OPTION_PURGE_DECOMMITS: c_int = 5;

/// Purges reset pages instead of decommitting them (the option's documented alternative).
pub fn keep_freed_pages() {
    // SAFETY: sets a plain integer option of the allocator; mimalloc reads it at each purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;
    use std::os::raw::c_long;

    /// The option's current value.
    fn purge_decommits() -> c_long {
        // SAFETY: reads a plain integer option.
        unsafe { mi_option_get(MI_OPTION_PURGE_DECOMMITS) }
    }

    #[test]
    fn the_option_number_is_purge_decommits() {
        // Its documented default is 1 (decommit); the neighbouring options default otherwise
        // (arena_eager_commit 2 on Linux, allow_large_os_pages 0), so an enum shifted by one
        // fails here. The environment variable would override the default.
        if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_none() {
            assert_eq!(purge_decommits(), 1);
        }
        keep_freed_pages();
        assert_eq!(purge_decommits(), 0);
    }
}
