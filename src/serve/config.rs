//! What `exeml serve` is told: the models with their traffic split, and the service's limits.

use exeml_core::budget::parse_duration;
use exeml_core::{Error, Result};
use std::time::Duration;

/// The longest auto-stop the service accepts (SPEC §4: custom durations of 1–24 h).
pub const MAX_AUTO_STOP: Duration = Duration::from_secs(24 * 3600);

/// Limits and options of a service (the model list is deployed separately).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Prediction workers: how many predictions run at once (in-process threads sharing one
    /// loaded copy of each model).
    pub replicas: usize,
    /// Requests allowed in the service at once (running or waiting for a worker); beyond it a
    /// request gets 503 with `Retry-After`.
    pub max_pending: usize,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest time one request may take, reading its body included (408 beyond).
    pub request_timeout: Duration,
    /// Required on every request except `/`, `/health` and `/ready` when set
    /// (`Authorization: Bearer KEY` or `X-API-Key: KEY`).
    pub api_key: Option<String>,
    /// Stop by itself after this long.
    pub auto_stop: Option<Duration>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ServeConfig {
            replicas: cores,
            max_pending: 256,
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            api_key: None,
            auto_stop: None,
        }
    }
}

impl ServeConfig {
    /// Refuse settings that cannot work, naming the option.
    pub fn check(&self) -> Result<()> {
        if self.replicas == 0 || self.replicas > 1024 {
            return Err(Error::invalid("--replicas", "expected 1 to 1024 workers"));
        }
        if self.max_pending < self.replicas {
            return Err(Error::invalid(
                "--max-pending",
                format!(
                    "{} is fewer than the {} replicas: every worker needs a request",
                    self.max_pending, self.replicas
                ),
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(Error::invalid("--max-body-mb", "must be positive"));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::invalid("--request-timeout", "must be positive"));
        }
        if let Some(key) = &self.api_key {
            if key.len() < 8 || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(
                    "--api-key",
                    "use at least 8 characters without spaces or control characters",
                ));
            }
        }
        if let Some(d) = self.auto_stop {
            check_auto_stop(d)?;
        }
        Ok(())
    }
}

/// Parse `--auto-stop`: `1h`, `2h`, `4h`, `6h` (the cloud's choices) or any duration up to 24 h.
pub fn parse_auto_stop(text: &str) -> Result<Duration> {
    let d = parse_duration(text).map_err(|_| {
        Error::invalid(
            "--auto-stop",
            format!("`{text}`: expected a duration such as 1h, 2h, 4h, 6h or 90m (at most 24h)"),
        )
    })?;
    check_auto_stop(d)?;
    Ok(d)
}

fn check_auto_stop(d: Duration) -> Result<()> {
    if d > MAX_AUTO_STOP {
        return Err(Error::invalid(
            "--auto-stop",
            format!("{:.1} h is longer than 24 h", d.as_secs_f64() / 3600.0),
        ));
    }
    if d.is_zero() {
        return Err(Error::invalid("--auto-stop", "must be positive"));
    }
    Ok(())
}

/// One `--model` argument: a model folder or a version of a project, with its share of traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The folder or version as written.
    pub target: String,
    /// Its percentage of the traffic, if given.
    pub percent: Option<u32>,
}

impl std::str::FromStr for ModelSpec {
    type Err = Error;

    /// `MODEL_DIR_OR_VERSION[=PERCENT]`.
    fn from_str(text: &str) -> Result<Self> {
        let (target, percent) = match text.rsplit_once('=') {
            Some((target, pct)) => {
                let percent: u32 = pct.trim().parse().map_err(|_| {
                    Error::invalid(
                        "--model",
                        format!("`{text}`: the traffic share after `=` must be a whole percentage"),
                    )
                })?;
                if percent > 100 {
                    return Err(Error::invalid(
                        "--model",
                        format!("`{text}`: a traffic share is at most 100"),
                    ));
                }
                (target, Some(percent))
            }
            None => (text, None),
        };
        if target.trim().is_empty() {
            return Err(Error::invalid(
                "--model",
                format!("`{text}`: no model given"),
            ));
        }
        Ok(ModelSpec {
            target: target.to_string(),
            percent,
        })
    }
}

/// The traffic shares of `specs`: as given (they must sum to 100), or an even split when none is
/// given. Mixing given and missing shares is refused.
pub fn traffic_shares(specs: &[ModelSpec]) -> Result<Vec<u32>> {
    if specs.is_empty() {
        return Err(Error::invalid(
            "--model",
            "give at least one model to serve",
        ));
    }
    let given = specs.iter().filter(|s| s.percent.is_some()).count();
    if given == 0 {
        let n = specs.len() as u32;
        return Ok((0..n).map(|i| 100 / n + u32::from(i < 100 % n)).collect());
    }
    if given != specs.len() {
        return Err(Error::invalid(
            "--model",
            "give every --model a traffic share (MODEL=PERCENT) or none of them",
        ));
    }
    let shares: Vec<u32> = specs.iter().filter_map(|s| s.percent).collect();
    check_shares_sum(&shares)?;
    Ok(shares)
}

/// Traffic shares must add up to exactly 100.
pub fn check_shares_sum(shares: &[u32]) -> Result<()> {
    let total: u32 = shares.iter().sum();
    if total != 100 {
        return Err(Error::invalid(
            "traffic split",
            format!("the percentages add up to {total}, not 100"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ModelSpec {
        text.parse().expect("valid spec")
    }

    #[test]
    fn model_specs_read_folder_and_share() {
        assert_eq!(
            spec("models/a=90"),
            ModelSpec {
                target: "models/a".into(),
                percent: Some(90)
            }
        );
        assert_eq!(spec("0.0.2").percent, None);
        assert!("a=101".parse::<ModelSpec>().is_err());
        assert!("a=ten".parse::<ModelSpec>().is_err());
        assert!("=50".parse::<ModelSpec>().is_err());
    }

    #[test]
    fn shares_must_sum_to_100_or_be_split_evenly() {
        assert_eq!(
            traffic_shares(&[spec("a=90"), spec("b=10")]).expect("accepted"),
            vec![90, 10]
        );
        assert!(traffic_shares(&[spec("a=90"), spec("b=20")]).is_err());
        assert!(traffic_shares(&[spec("a=90"), spec("b")]).is_err());
        assert_eq!(
            traffic_shares(&[spec("a"), spec("b"), spec("c")]).expect("accepted"),
            vec![34, 33, 33]
        );
        assert!(traffic_shares(&[]).is_err());
    }

    #[test]
    fn auto_stop_takes_the_cloud_choices_and_custom_durations_up_to_a_day() {
        for ok in ["1h", "2h", "4h", "6h", "90m", "24h", "30s"] {
            assert!(parse_auto_stop(ok).is_ok(), "{ok}");
        }
        for bad in ["25h", "0", "soon", ""] {
            assert!(parse_auto_stop(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_check_names_the_bad_option() {
        let bad = ServeConfig {
            api_key: Some("short".into()),
            ..ServeConfig::default()
        };
        assert!(bad
            .check()
            .expect_err("refused")
            .to_string()
            .contains("--api-key"));
        let bad = ServeConfig {
            replicas: 0,
            ..ServeConfig::default()
        };
        assert!(bad
            .check()
            .expect_err("refused")
            .to_string()
            .contains("--replicas"));
        assert!(ServeConfig::default().check().is_ok());
    }
}
