//! One seed drives all randomness of a run.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The random generator used everywhere: portable and reproducible across platforms.
pub type Rng = ChaCha8Rng;

/// A generator for `seed`, separated by `stream` so that independent consumers
/// (split, search, each trial) do not share a sequence.
pub fn rng(seed: u64, stream: u64) -> Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}
