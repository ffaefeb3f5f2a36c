//! Running a whole computation on rayon's thread pool, so that its parallel steps fork and join
//! among the pool's threads.
//!
//! Every parallel step — a network's kernels, gemm's rayon parallelism, a booster's histograms —
//! forks and joins on rayon's global pool. Called from a thread outside the pool (the user's, a
//! server's blocking thread, Python's), each step hands its work to the pool and sleeps on a
//! lock until a worker has finished it: two context switches per step, a hundred-odd per
//! MobileNetV2 forward. Called from a worker, the same step forks and joins among the workers
//! without that hand-off. On a 2-core machine MobileNetV2's single-image latency fell from 6.5
//! to 4.3 ms, and a 75,000-row regression booster fitted in 0.61 s instead of 0.77
//! (docs/benchmarks.md).
//!
//! What runs inside must not wait for a lock that a thread blocked in `on_workers` may hold (the
//! GIL included): the worker would wait for that thread, which waits for a worker.

/// Run `f` on a worker of rayon's global pool (directly when already on a worker of a pool),
/// blocking the calling thread until it returns.
pub fn on_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_worker_and_returns_its_value() {
        let index = on_workers(rayon::current_thread_index);
        assert!(index.is_some(), "not on a worker");
        let nested = on_workers(|| on_workers(|| 7));
        assert_eq!(nested, 7);
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| on_workers(|| panic!("inside")));
        assert!(caught.is_err());
    }
}
