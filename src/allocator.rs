//! Settings of mimalloc, the allocator of the `exeml` binary and the Python extension.
//!
//! Training a network allocates and frees activations of tens of megabytes at every layer. By
//! default mimalloc hands freed memory back to the kernel after a second, so every step
//! faults the same pages in again and the kernel zeroes them: on the 2-core development machine
//! that was a third of a MobileNetV2 training step (`docs/benchmarks.md`). Keeping the memory
//! for reuse removes that cost; the process's peak memory is unchanged, it is only not returned
//! early.

#[cfg(test)]
use libmimalloc_sys::mi_option_get;
use libmimalloc_sys::{mi_option_set, mi_option_t};

/// mimalloc's `mi_option_purge_delay` (the same position in the `mi_option_e` enum of its v2
/// and v3 headers; `libmimalloc-sys` does not name it). Milliseconds before freed memory is
/// returned to the OS; -1 never.
const PURGE_DELAY: mi_option_t = 15;

/// Ask mimalloc to keep freed memory for reuse instead of returning it to the OS.
///
/// Meant for processes that train or run networks (image training and prediction). It changes
/// nothing when mimalloc is not the global allocator.
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores a number into mimalloc's option table, which is initialised
    // when the process loads; the option is read with plain loads, so setting it while other
    // threads allocate can at worst make one purge decision use the old value.
    #[allow(unsafe_code)]
    unsafe {
        mi_option_set(PURGE_DELAY, -1)
    }
}

/// The current purge delay in milliseconds (-1: never).
#[cfg(test)]
fn purge_delay_ms() -> std::os::raw::c_long {
    // SAFETY: reads one entry of mimalloc's option table (see `keep_freed_memory`).
    #[allow(unsafe_code)]
    unsafe {
        mi_option_get(PURGE_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc's default purge delay is 1000 ms in version 3 (10 ms in version 2); another
        // value here would mean position 15 is another option (unless MIMALLOC_PURGE_DELAY is
        // set in the environment).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(
                [1000, 10].contains(&purge_delay_ms()),
                "{}",
                purge_delay_ms()
            );
        }
        keep_freed_memory();
        assert_eq!(purge_delay_ms(), -1);
    }
}
