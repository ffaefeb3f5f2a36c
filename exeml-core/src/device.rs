//! Where tensors live: CPU, a CUDA GPU or Apple Metal.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A compute device requested by the user (`--device cpu|cuda:N|metal`).
///
/// Requesting a GPU in a build without the matching feature is a typed
/// [`crate::Error::NotCompiled`], never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// CUDA GPU with this ordinal.
    Cuda(usize),
    /// Apple Metal GPU.
    Metal,
}

impl Device {
    /// The candle device for this request.
    pub fn to_candle(self) -> crate::Result<candle_core::Device> {
        match self {
            Device::Cpu => Ok(candle_core::Device::Cpu),
            Device::Cuda(ordinal) => cuda(ordinal),
            Device::Metal => metal(),
        }
    }

    /// Fail early if this build cannot use the device.
    pub fn check_available(self) -> crate::Result<()> {
        self.to_candle().map(|_| ())
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> crate::Result<candle_core::Device> {
    candle_core::Device::new_cuda(ordinal).map_err(|e| crate::Error::Backend {
        backend: "candle",
        message: format!("cannot open cuda:{ordinal}: {e}"),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(ordinal: usize) -> crate::Result<candle_core::Device> {
    Err(crate::Error::NotCompiled {
        what: format!("device cuda:{ordinal}"),
        feature: "cuda",
    })
}

#[cfg(feature = "metal")]
fn metal() -> crate::Result<candle_core::Device> {
    candle_core::Device::new_metal(0).map_err(|e| crate::Error::Backend {
        backend: "candle",
        message: format!("cannot open metal: {e}"),
    })
}

#[cfg(not(feature = "metal"))]
fn metal() -> crate::Result<candle_core::Device> {
    Err(crate::Error::NotCompiled {
        what: "device metal".into(),
        feature: "metal",
    })
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            Device::Metal => f.write_str("metal"),
        }
    }
}

impl FromStr for Device {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        let bad = || {
            crate::Error::invalid(
                "device",
                format!("`{s}`: expected cpu, cuda, cuda:N or metal"),
            )
        };
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            "metal" => Ok(Device::Metal),
            _ => {
                let ordinal = s.strip_prefix("cuda:").ok_or_else(bad)?;
                ordinal.parse().map(Device::Cuda).map_err(|_| bad())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_devices() {
        for text in ["cpu", "cuda:1", "metal"] {
            let device: Device = text.parse().expect("valid device");
            assert_eq!(device.to_string(), text);
        }
        assert!("gpu".parse::<Device>().is_err());
        assert!("cuda:x".parse::<Device>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_not_compiled_error() {
        let err = Device::Cuda(0)
            .check_available()
            .expect_err("no cuda in this build");
        assert!(matches!(
            err,
            crate::Error::NotCompiled {
                feature: "cuda",
                ..
            }
        ));
    }
}
