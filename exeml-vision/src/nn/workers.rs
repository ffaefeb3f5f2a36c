//! Threads on the CPU: every forward, feature-extraction batch and fine-tuning epoch runs on
//! rayon's workers ([`on_workers`], from `exeml-core`), and candle's own element-wise pool is
//! told to spin briefly ([`shorten_candle_spins`]).

pub use exeml_core::parallel::on_workers;

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
