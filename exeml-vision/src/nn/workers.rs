//! Running a whole forward (or training step) on the CPU thread pool's workers.
//!
//! Every parallel op — our kernels' `par_chunks`, gemm's rayon parallelism — forks and joins on
//! rayon's global pool. Called from a thread outside the pool (the user's, a server's blocking
//! thread, Python's), each op hands its work to the pool and sleeps on a lock until a worker
//! finishes it: two context switches per op, a hundred-odd ops per MobileNetV2 forward. Called
//! from a worker, the same op forks and joins among the workers without that hand-off. On this
//! 2-core machine MobileNetV2's single-image latency fell from 6.5 to 4.3 ms and its training
//! rose 12 % (docs/benchmarks.md, "a forward on the pool's workers").

/// The environment variable candle reads, once, for how long its element-wise pool's threads
/// spin waiting for the next op before they sleep.
pub const CANDLE_SPIN_LIMIT_VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// The spin limit [`shorten_candle_spins`] sets: about 15–50 µs of spinning instead of
/// candle's default 25,000 rounds (up to a millisecond).
pub const SHORT_SPIN_LIMIT: u32 = 1_000;

/// Make candle's element-wise thread pool give its cores back sooner, unless the environment
/// already sets [`CANDLE_SPIN_LIMIT_VAR`].
///
/// candle runs element-wise ops (a residual sum, the gradients its backward adds up) on a pool
/// of its own beside rayon's, whose threads spin after each op in case another follows. Our
/// convolutions run on rayon's threads on the same cores, and candle's spinning threads took
/// their time: on a 2-core machine MobileNetV2 trains 11 % faster and ConvNeXt-Atto 9 % faster,
/// and ConvNeXt-Atto's single-image latency falls 10 %, with the shorter spin
/// (docs/benchmarks.md).
///
/// candle reads the variable when its pool starts (its first element-wise op), so call this
/// first thing in `main`, before any thread is spawned (setting a variable races with other
/// threads reading the environment). The `exeml` binary does; the Python package sets the
/// variable in its `__init__.py`.
pub fn shorten_candle_spins() {
    if std::env::var_os(CANDLE_SPIN_LIMIT_VAR).is_none() {
        std::env::set_var(CANDLE_SPIN_LIMIT_VAR, SHORT_SPIN_LIMIT.to_string());
    }
}

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
