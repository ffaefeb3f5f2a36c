//! `exeml serve`: load the models, bind, print the URL, serve until Ctrl-C, SIGTERM or the
//! auto-stop, then finish the requests in flight.

use crate::args::ServeArgs;
use crate::registry::open_store;
use exeml::core::budget::parse_duration;
use exeml::core::store::Store;
use exeml::core::{Error, Result};
use exeml::serve::{
    load_servable, parse_auto_stop, traffic_shares, DeployedModel, Deployment, ModelSpec,
    ServeConfig, Service,
};
use std::path::{Path, PathBuf};

/// A model version of a project that this service marks as deployed while it runs.
struct StoreVersion {
    project: String,
    version: String,
}

/// Run `exeml serve`.
pub fn run(workspace: Option<PathBuf>, args: ServeArgs) -> Result<()> {
    let config = config(&args)?;
    let specs = args
        .models
        .iter()
        .map(|m| m.parse::<ModelSpec>())
        .collect::<Result<Vec<_>>>()?;
    let shares = traffic_shares(&specs)?;
    let mut store: Option<Store> = None;
    let mut marked = Vec::new();
    let mut models = Vec::with_capacity(specs.len());
    for (spec, percent) in specs.iter().zip(shares) {
        let (name, dir) = if Path::new(&spec.target).is_dir() {
            (
                folder_model_name(Path::new(&spec.target)),
                PathBuf::from(&spec.target),
            )
        } else {
            let project = args.project.as_deref().ok_or_else(|| {
                Error::not_found(
                    "model folder",
                    format!(
                        "{} (to serve a model version of a project, add --project NAME)",
                        spec.target
                    ),
                )
            })?;
            if store.is_none() {
                store = Some(open_store(workspace.clone())?);
            }
            let store = store.as_ref().expect("opened above");
            let version = store.model_version(project, &spec.target)?;
            marked.push(StoreVersion {
                project: project.to_string(),
                version: spec.target.clone(),
            });
            (spec.target.clone(), version.artifact_dir)
        };
        let model = load_servable(&dir)?;
        models.push(DeployedModel::new(
            name,
            dir.display().to_string(),
            model,
            percent,
        ));
    }
    let deployment = Deployment::new(models)?;
    let service = Service::new(config)?;
    service.deploy(deployment);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    let address = format!("{}:{}", args.host, args.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(address.as_str()))
        .map_err(|e| Error::io(&address, e))?;
    let bound = listener.local_addr().map_err(|e| Error::io(&address, e))?;
    if let Some(store) = &store {
        for v in &marked {
            store.set_deployed(&v.project, &v.version, true)?;
        }
    }
    for m in service.deployment().models() {
        eprintln!(
            "serving {} ({} {}, {}% of /v1/predict) from {}",
            m.name, m.info.task, m.info.problem, m.percent, m.source
        );
    }
    if let Some(left) = service.auto_stop_remaining() {
        eprintln!("auto-stop in {:.0} s", left.as_secs_f64());
    }
    // The contract: the URL on stdout once the service accepts connections.
    println!("listening on http://{bound}");
    let result = runtime.block_on(async {
        let stopper = service.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("stopping: finishing the requests in flight");
            stopper.stop();
        });
        service.run(listener).await
    });
    if let Some(store) = &store {
        for v in &marked {
            if let Err(e) = store.set_deployed(&v.project, &v.version, false) {
                eprintln!(
                    "warning: could not mark {} of {} as undeployed: {e}",
                    v.version, v.project
                );
            }
        }
    }
    result?;
    eprintln!("stopped");
    Ok(())
}

fn config(args: &ServeArgs) -> Result<ServeConfig> {
    let defaults = ServeConfig::default();
    let config = ServeConfig {
        replicas: args.replicas.unwrap_or(defaults.replicas),
        max_pending: args.max_pending,
        max_body_bytes: args.max_body_mb.saturating_mul(1024 * 1024),
        request_timeout: parse_duration(&args.request_timeout)
            .map_err(|e| Error::invalid("--request-timeout", e.to_string()))?,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        auto_stop: args.auto_stop.as_deref().map(parse_auto_stop).transpose()?,
    };
    config.check()?;
    Ok(config)
}

/// A served folder's name: its last component, with characters URLs and metrics dislike
/// replaced by `-`.
fn folder_model_name(dir: &Path) -> String {
    let raw = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "model".into()
    } else {
        name
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
