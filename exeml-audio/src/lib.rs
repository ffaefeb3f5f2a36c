//! Sound classification for exeml — **not built yet**.
//!
//! This crate will implement the core traits for WAV clips (see `docs/architecture.md`): import by
//! class folder, side-by-side label files or manifest; resampling, log-mel features and a speech
//! embedding backbone; classification heads trained under a budget. It exposes no API yet.
#![deny(missing_docs)]
