//! Running a whole forward (or training step) on the CPU thread pool's workers.
//!
//! Every parallel op — our kernels' `par_chunks`, gemm's rayon parallelism — forks and joins on
//! rayon's global pool. Called from a thread outside the pool (the user's, a server's blocking
//! thread, Python's), each op hands its work to the pool and sleeps on a lock until a worker
//! finishes it: two context switches per op, a hundred-odd ops per MobileNetV2 forward. Called
//! from a worker, the same op forks and joins among the workers without that hand-off. On this
//! 2-core machine MobileNetV2's single-image latency fell from 6.5 to 4.3 ms and its training
//! rose 12 % (docs/benchmarks.md, "a forward on the pool's workers").

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
