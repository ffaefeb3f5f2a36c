//! The models a service answers with and how traffic is split between them. A deployment is
//! immutable: changing the split builds a new one and swaps it in, so a request in flight keeps
//! the model it started with.

use crate::serve::config::check_shares_sum;
use exeml_core::fsio::read_json;
use exeml_core::serving::{Servable, ServeInfo};
use exeml_core::{Error, Result, TaskKind};
use exeml_tabular::TabularModel;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// One model version being served.
#[derive(Clone)]
pub struct DeployedModel {
    /// Its name in URLs, metrics and responses (a version such as `0.0.2`, or a folder name).
    pub name: String,
    /// Where it was loaded from.
    pub source: String,
    /// The model.
    pub model: Arc<dyn Servable>,
    /// What it says about itself (read once).
    pub info: ServeInfo,
    /// Its share of `/v1/predict` traffic, in percent.
    pub percent: u32,
}

impl std::fmt::Debug for DeployedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployedModel")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("percent", &self.percent)
            .finish_non_exhaustive()
    }
}

impl DeployedModel {
    /// A model to deploy under `name`, with its traffic share.
    pub fn new(
        name: impl Into<String>,
        source: impl Into<String>,
        model: Arc<dyn Servable>,
        percent: u32,
    ) -> Self {
        let info = model.serve_info();
        DeployedModel {
            name: name.into(),
            source: source.into(),
            model,
            info,
            percent,
        }
    }
}

/// The served models with their traffic split.
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    models: Vec<Arc<DeployedModel>>,
}

impl Deployment {
    /// Check and assemble a deployment: unique names, shares summing to 100 (when any model is
    /// given), and one task for all models.
    pub fn new(models: Vec<DeployedModel>) -> Result<Self> {
        for (i, m) in models.iter().enumerate() {
            check_model_name(&m.name)?;
            if models[..i].iter().any(|other| other.name == m.name) {
                return Err(Error::invalid(
                    "--model",
                    format!("two models are named `{}`; serve each version once", m.name),
                ));
            }
        }
        if let Some(first) = models.first() {
            if let Some(other) = models.iter().find(|m| m.info.task != first.info.task) {
                return Err(Error::invalid(
                    "--model",
                    format!(
                        "`{}` is a {} model and `{}` a {} model: one service serves one task",
                        first.name, first.info.task, other.name, other.info.task
                    ),
                ));
            }
            let shares: Vec<u32> = models.iter().map(|m| m.percent).collect();
            check_shares_sum(&shares)?;
        }
        Ok(Deployment {
            models: models.into_iter().map(Arc::new).collect(),
        })
    }

    /// The models, in deployment order.
    pub fn models(&self) -> &[Arc<DeployedModel>] {
        &self.models
    }

    /// The model called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<DeployedModel>> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The model that takes a request whose draw is `ticket` in `[0, 100)`.
    pub fn pick(&self, ticket: u32) -> Option<&Arc<DeployedModel>> {
        let mut upper = 0;
        for m in &self.models {
            upper += m.percent;
            if ticket < upper {
                return Some(m);
            }
        }
        None
    }

    /// The same models with new shares (`name → percent`; every model named exactly once).
    pub fn with_split(&self, split: &[(String, u32)]) -> Result<Deployment> {
        for (name, _) in split {
            if self.get(name).is_none() {
                return Err(Error::invalid(
                    format!("split.{name}"),
                    "no model of this service has that name",
                ));
            }
        }
        let models = self
            .models
            .iter()
            .map(|m| {
                let percent = split
                    .iter()
                    .find(|(name, _)| *name == m.name)
                    .map(|(_, p)| *p)
                    .ok_or_else(|| {
                        Error::invalid(
                            format!("split.{}", m.name),
                            "missing: give every served model a share (0 is allowed)",
                        )
                    })?;
                Ok(DeployedModel {
                    percent,
                    ..(**m).clone()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Deployment::new(models)
    }
}

fn check_model_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(char::is_alphanumeric)
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--model",
            format!("`{name}`: a served model's name is 1–64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"),
        ))
    }
}

/// Load any saved model folder for serving, by the task its manifest names.
pub fn load_servable(dir: &Path) -> Result<Arc<dyn Servable>> {
    #[derive(Deserialize)]
    struct Head {
        task: TaskKind,
    }
    let head: Head = read_json(&dir.join("manifest.json"))?;
    match head.task {
        TaskKind::Tabular => Ok(Arc::new(TabularModel::load(dir)?)),
        TaskKind::Image => Ok(Arc::new(exeml_vision::ImageModel::load(dir)?)),
        other => Err(Error::Format {
            path: dir.to_path_buf(),
            message: format!(
                "serving `{other}` models is not available in exeml {}",
                env!("CARGO_PKG_VERSION")
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exeml_core::serving::{Answer, InputKind, ServeInput};
    use exeml_core::ProblemType;

    struct Fixed(TaskKind);

    impl Servable for Fixed {
        fn serve_info(&self) -> ServeInfo {
            ServeInfo {
                task: self.0,
                problem: ProblemType::Binary,
                input: InputKind::Json,
                labels: vec!["a".into(), "b".into()],
                fields: Vec::new(),
                example: serde_json::Value::Null,
                embedding_dim: None,
            }
        }
        fn respond(&self, _: ServeInput<'_>) -> Result<Answer> {
            Ok(Answer {
                body: serde_json::json!({}),
                predicted: vec!["a".into()],
            })
        }
    }

    fn model(name: &str, percent: u32) -> DeployedModel {
        DeployedModel::new(name, "test", Arc::new(Fixed(TaskKind::Tabular)), percent)
    }

    #[test]
    fn tickets_follow_the_split() {
        let d = Deployment::new(vec![model("v1", 90), model("v2", 10)]).expect("accepted");
        let count = |name: &str| {
            (0..100)
                .filter(|&t| d.pick(t).map(|m| m.name.as_str()) == Some(name))
                .count()
        };
        assert_eq!(count("v1"), 90);
        assert_eq!(count("v2"), 10);
    }

    #[test]
    fn deployments_refuse_bad_splits_names_and_mixed_tasks() {
        assert!(Deployment::new(vec![model("v1", 50), model("v2", 40)]).is_err());
        assert!(Deployment::new(vec![model("v1", 50), model("v1", 50)]).is_err());
        assert!(Deployment::new(vec![model("../x", 100)]).is_err());
        let sound = DeployedModel::new("s", "t", Arc::new(Fixed(TaskKind::Sound)), 50);
        assert!(Deployment::new(vec![model("v1", 50), sound]).is_err());
    }

    #[test]
    fn a_new_split_keeps_the_models() {
        let d = Deployment::new(vec![model("v1", 100), model("v2", 0)]).expect("accepted");
        let d2 = d
            .with_split(&[("v1".into(), 0), ("v2".into(), 100)])
            .expect("accepted");
        assert_eq!(d2.pick(0).expect("accepted").name, "v2");
        assert!(Arc::ptr_eq(&d.models()[0].model, &d2.models()[0].model));
        assert!(d.with_split(&[("v1".into(), 100)]).is_err());
        assert!(d
            .with_split(&[("v1".into(), 50), ("v3".into(), 50)])
            .is_err());
    }
}
