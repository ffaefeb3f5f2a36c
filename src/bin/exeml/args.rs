//! The command line of `exeml` (the contract in docs/cli.md).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Embeddable AutoML: train, evaluate, version and serve models on your own machine.
#[derive(Debug, Parser)]
#[command(name = "exeml", version, about, long_about = None)]
pub struct Cli {
    /// The workspace folder of the project store (default: $EXEML_HOME or ./exeml-workspace).
    #[arg(long, global = true, env = "EXEML_HOME")]
    pub workspace: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model automatically on a data file or folder.
    Train(Box<TrainArgs>),
    /// Predict with a saved model; writes CSV or JSON lines.
    Predict(PredictArgs),
    /// Write the embedding of every image in a folder with a saved image model (the features
    /// its head reads); CSV or JSON lines.
    Embed(EmbedArgs),
    /// Write a saved image model as one ONNX file (for onnxruntime, TensorRT, OpenVINO…).
    Export(ExportArgs),
    /// Evaluate a saved model on labelled data.
    Evaluate(EvaluateArgs),
    /// Time a saved model: one-input latency and batch throughput on inputs from a file/folder.
    Speed(SpeedArgs),
    /// Serve model versions over HTTP (real-time predictions, metrics, a test page).
    Serve(ServeArgs),
    /// Run the whole workflow on a built-in data set: project → data → version → model → predict.
    Demo(DemoArgs),
    /// Projects of the workspace: create, list, show, delete.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Data of a project: import, check, label, publish versions, export manifests.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Model versions of a project: train, list, show, compare, delete, export.
    #[command(subcommand)]
    Model(ModelCommand),
}

/// The task of `exeml train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    /// Predictive analytics on a table.
    Tabular,
    /// Image classification.
    Image,
    /// Object detection.
    Detection,
    /// Sound classification.
    Sound,
    /// Text classification.
    Text,
}

/// Whether the CSV has a header row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeaderArg {
    /// Guess from the data.
    Auto,
    /// The first row names the columns.
    Yes,
    /// No header: columns are attr_1 … attr_n.
    No,
}

/// Options shared by every training command.
#[derive(Debug, Clone, Args)]
pub struct FitOptions {
    /// Label column (tables); default: the last column.
    #[arg(long)]
    pub label: Option<String>,
    /// Wall-clock budget: 60s, 10m, 1h (default 60s).
    #[arg(long, default_value = "60s")]
    pub time_limit: String,
    /// performance_first, balance or accuracy_first.
    #[arg(long, default_value = "balance")]
    pub preference: String,
    /// Share of rows used for training; the rest validates.
    #[arg(long, default_value_t = 0.8)]
    pub train_ratio: f64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Force the problem type: binary, multiclass, classification or regression.
    #[arg(long)]
    pub problem: Option<String>,
    /// Whether the CSV has a header row.
    #[arg(long, value_enum, default_value = "auto")]
    pub header: HeaderArg,
    /// Tables: restrict the search to these model families (linear, knn, gbdt, hist_gbdt,
    /// forest, mlp); repeat the flag for several. Default: all.
    #[arg(long = "family", value_name = "NAME")]
    pub families: Vec<String>,
    /// Images: restrict the search to these backbones (mobilenet_v2, efficientnet_lite0, resnet18,
    /// resnet34, resnet50, convnext_atto, convnext_femto, convnext_pico, convnext_nano,
    /// convnext_tiny, vit_tiny_patch16_224, vit_small_patch16_224, vit_base_patch16_224; all but
    /// the first two come from the Hugging Face hub cache or --weights).
    #[arg(long = "backbone")]
    pub backbones: Vec<String>,
    /// Images: fix the square input size in pixels (default: chosen by the search).
    #[arg(long)]
    pub resolution: Option<u32>,
    /// Images: a weights file for a backbone, `NAME=PATH` (.pth or .safetensors); default: the
    /// installed ImageNet weights.
    #[arg(long = "weights", value_name = "BACKBONE=PATH")]
    pub weights: Vec<String>,
    /// Images: only train a linear head on frozen features (no fine-tuning of the backbone's
    /// top blocks).
    #[arg(long)]
    pub no_fine_tune: bool,
    /// Images: keep one fine-tuned model (no ensemble of fine-tuning arms, which costs latency).
    #[arg(long)]
    pub no_ensemble: bool,
    /// Images: fine-tune with the arms listed in this JSON file instead of the preference's
    /// plan: a list of objects like the `fine_tune` entries of a model's leaderboard
    /// (manifest.json), so that a search can be rerun with its arms edited.
    #[arg(long, value_name = "FILE.json")]
    pub fine_tune_arms: Option<PathBuf>,
    /// Only return a model whose median single prediction (one row, one image) takes at most
    /// this many milliseconds on the training device; slower candidates are excluded.
    #[arg(long, value_name = "MS")]
    pub max_latency_ms: Option<f64>,
    /// Only return a model whose saved folder is at most this many megabytes.
    #[arg(long, value_name = "MB")]
    pub max_model_mb: Option<f64>,
    /// Tables: size every fit by counts instead of the time left, so that the same data, seed
    /// and options give identical predictions (the time limit still stops the search).
    #[arg(long)]
    pub deterministic: bool,
    /// Tables: the search fits its trials on at most this many training rows (a stratified
    /// sample; the chosen model is refitted on all rows when the time allows). Default: enough
    /// rows for 20 million feature cells, at least 20,000.
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u64).range(100..))]
    pub search_rows: Option<u64>,
    /// Tables: bag the chosen models over K folds (each fitted K times on all rows but one
    /// fold; the validation metrics are then out of fold over every row). 0 turns bagging off.
    /// Default: 5 folds under accuracy_first, and under balance up to 20,000 rows.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(0..=20))]
    pub bag_folds: Option<u64>,
    /// Tables: refit a bagged model's configurations once each on all rows (AutoGluon's
    /// refit_full: K times faster to predict and about K times smaller; weights and validation
    /// metrics stay those chosen out of fold), or keep the K fits of each. Default: true under
    /// balance and performance_first, false under accuracy_first. Images: refit the chosen
    /// fine-tuned model(s) on training + validation images for the epochs validation chose (the
    /// search sizes its runs to leave the refit its time). Default: true under balance and
    /// accuracy_first, false under performance_first.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub refit_full: Option<bool>,
    /// Tables: try one stacking layer over a bagged model (a regularised linear model on every
    /// bagged model's out-of-fold predictions, kept when it beats the weighted average in
    /// cross-validation). Needs bagging. Default: true under accuracy_first, else false.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub stack: Option<bool>,
    /// Tables: trials fitted at the same time, each on an equal share of the cores. Default:
    /// one per core (at most 4) on a small table, else 1; 1 with --deterministic.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parallel_trials: Option<u64>,
}

impl FitOptions {
    /// The deployment constraints, validated.
    pub fn constraints(&self) -> exeml::core::Result<exeml::core::Constraints> {
        exeml::core::Constraints {
            max_latency_ms: self.max_latency_ms,
            max_model_mb: self.max_model_mb,
        }
        .check()
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The task.
    #[arg(long, value_enum)]
    pub task: TaskArg,
    /// The training data: a CSV or Parquet file for tables, a folder for images.
    #[arg(long)]
    pub data: PathBuf,
    /// A model folder to warm-start from (its best configuration is tried first).
    #[arg(long = "from")]
    pub from: Option<PathBuf>,
    /// Where to write the model folder.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub fit: FitOptions,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// The data to predict (the label column may be present; it is ignored).
    #[arg(long)]
    pub data: PathBuf,
    /// PREDS.csv or PREDS.jsonl.
    #[arg(long)]
    pub output: PathBuf,
    /// Whether the CSV has a header row.
    #[arg(long, value_enum, default_value = "auto")]
    pub header: HeaderArg,
    /// Rows read, predicted and checkpointed at a time (the CSV is streamed, never loaded whole).
    #[arg(long, default_value_t = 50_000)]
    pub chunk_rows: usize,
    /// Continue an interrupted run of the same data, model and output from its checkpoint.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// An image model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// A folder of images (every JPG, PNG and BMP under it).
    #[arg(long)]
    pub data: PathBuf,
    /// EMBEDDINGS.csv (`id,emb_0,…`) or EMBEDDINGS.jsonl (`{"id", "embedding"}` per line).
    #[arg(long)]
    pub output: PathBuf,
    /// Continue an interrupted run of the same folder, model and output from its checkpoint.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// An image model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// The ONNX file to write (MODEL.onnx).
    #[arg(long)]
    pub output: PathBuf,
    /// Store the weights as 8-bit integers (a quarter of the size; probabilities move a little).
    #[arg(long)]
    pub int8: bool,
}

/// What `exeml model export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The model's self-contained folder (every task).
    Folder,
    /// One ONNX file (image models).
    Onnx,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// A model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled data.
    #[arg(long)]
    pub data: PathBuf,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Whether the CSV has a header row.
    #[arg(long, value_enum, default_value = "auto")]
    pub header: HeaderArg,
}

#[derive(Debug, Args)]
pub struct SpeedArgs {
    /// A model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Inputs to predict: a CSV for tables (the label column may be present), a folder of
    /// images for image models.
    #[arg(long)]
    pub data: PathBuf,
    /// Single-input predictions timed (after 5 warm-up calls).
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Inputs in the batch whose throughput is timed (the first ones of --data).
    #[arg(long, default_value_t = 10_000)]
    pub batch_size: usize,
    /// Batch predictions timed (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub batch_runs: usize,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Whether the CSV has a header row.
    #[arg(long, value_enum, default_value = "auto")]
    pub header: HeaderArg,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A model folder, or a model version of --project, with an optional traffic share:
    /// `--model 0.0.1=90 --model 0.0.2=10`. Repeat for a traffic split (shares sum to 100).
    #[arg(
        long = "model",
        required = true,
        value_name = "MODEL_DIR_OR_VERSION[=PERCENT]"
    )]
    pub models: Vec<String>,
    /// The project whose versions --model names.
    #[arg(long)]
    pub project: Option<String>,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Prediction workers, in-process, sharing each loaded model (default: the number of cores).
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Require this key on every request but /, /health and /ready.
    #[arg(long, env = "EXEML_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Stop by itself after this long: 1h, 2h, 4h, 6h, or any duration up to 24h.
    #[arg(long)]
    pub auto_stop: Option<String>,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 16)]
    pub max_body_mb: usize,
    /// Longest time one request may take.
    #[arg(long, default_value = "30s")]
    pub request_timeout: String,
    /// Requests inside the service at once before new ones get 503 + Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_pending: usize,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Training budget of the demo.
    #[arg(long, default_value = "20s")]
    pub time_limit: String,
    /// Project name used in the workspace.
    #[arg(long, default_value = "demo")]
    pub project: String,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project.
    Create {
        /// 1–64 letters, digits, _ or -, starting with a letter.
        name: String,
        /// The task.
        #[arg(long, value_enum)]
        task: TaskArg,
        /// Up to 500 characters.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List projects, optionally filtered.
    List {
        /// Names containing this text.
        #[arg(long)]
        name: Option<String>,
        /// Only this task.
        #[arg(long, value_enum)]
        task: Option<TaskArg>,
        /// Only this status (created, running, paused, completed, failed).
        #[arg(long)]
        status: Option<String>,
        /// Only this workflow step (import, label, publish, check, train, evaluate, register, deploy).
        #[arg(long)]
        step: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a project with its data, versions and models.
    Show {
        /// The project.
        name: String,
    },
    /// Delete a project and everything it holds.
    Delete {
        /// The project.
        name: String,
        /// Confirm: deletion cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Import data into the project: a table (tabular projects; replaces the current one) or a
    /// folder of images in any layout (image projects; adds what is new).
    Import {
        #[arg(long)]
        project: String,
        /// A CSV or Parquet file, or a folder of images.
        #[arg(long)]
        data: PathBuf,
        /// The label column (tables; default: the last).
        #[arg(long)]
        label: Option<String>,
        /// Whether the CSV has a header row (tables; default: auto).
        #[arg(long, value_enum)]
        header: Option<HeaderArg>,
        /// Print what was imported as JSON (image projects).
        #[arg(long)]
        json: bool,
    },
    /// List the samples (files) of a project with their ids and labels.
    Samples {
        #[arg(long)]
        project: String,
        /// Only the labelled samples.
        #[arg(long, conflicts_with_all = ["unlabelled", "label"])]
        labelled: bool,
        /// Only the samples without a label.
        #[arg(long, conflicts_with = "label")]
        unlabelled: bool,
        /// Only the samples carrying this label.
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Label samples: add, set, rename or delete labels.
    #[command(subcommand)]
    Label(LabelCommand),
    /// Delete samples by id (their files stay in the workspace while a dataset version uses
    /// them; labels go with the samples).
    DeleteSamples {
        #[arg(long)]
        project: String,
        /// Sample ids (comma-separated or repeated), as `exeml dataset samples` lists them.
        #[arg(long = "samples", value_delimiter = ',', required = true, num_args = 1..)]
        samples: Vec<i64>,
        /// Confirm: deletion cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Run the data checks on the project's current data.
    Check {
        #[arg(long)]
        project: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publish an immutable dataset version with a train/validation split.
    Publish {
        #[arg(long)]
        project: String,
        #[arg(long, default_value_t = 0.8)]
        train_ratio: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// List the dataset versions.
    Versions {
        #[arg(long)]
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Export a version's manifest (JSON lines: source, labels, usage).
    Export {
        #[arg(long)]
        project: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Label counts and labelled/unlabelled sample counts.
    Labels {
        #[arg(long)]
        project: String,
    },
}

/// How much `exeml dataset label delete` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeleteModeArg {
    /// Only the label: its samples stay (some become unlabelled).
    Label,
    /// The label, and the samples whose only label it was (their files stay).
    Samples,
    /// As `samples`, and those samples' files too (except files a dataset version uses).
    Files,
}

#[derive(Debug, Subcommand)]
pub enum LabelCommand {
    /// Add a label to one or many samples.
    Add {
        #[arg(long)]
        project: String,
        /// The label (1–32 letters of any script, digits, `-`, `_`).
        #[arg(long)]
        label: String,
        /// Sample ids (comma-separated or repeated).
        #[arg(long = "samples", value_delimiter = ',', required = true, num_args = 1..)]
        samples: Vec<i64>,
    },
    /// Replace one sample's labels (none: the sample becomes unlabelled).
    Set {
        #[arg(long)]
        project: String,
        /// The sample id.
        #[arg(long)]
        sample: i64,
        /// Its labels (comma-separated or repeated); leave out to remove every label.
        #[arg(long = "labels", value_delimiter = ',', num_args = 0..)]
        labels: Vec<String>,
    },
    /// Rename a label on every sample that carries it.
    Rename {
        #[arg(long)]
        project: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Delete a label: prints what goes, and deletes only with --yes.
    Delete {
        #[arg(long)]
        project: String,
        #[arg(long)]
        label: String,
        /// What goes besides the label.
        #[arg(long, value_enum, default_value = "label")]
        mode: DeleteModeArg,
        /// Confirm: deletion cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Train a new model version from a dataset version (publishing one if needed).
    Train {
        #[arg(long)]
        project: String,
        /// The dataset version (default: the current data, published now unless the latest
        /// version already holds it).
        #[arg(long)]
        version: Option<String>,
        /// A model version of the project to warm-start from.
        #[arg(long = "from")]
        from: Option<String>,
        #[command(flatten)]
        fit: Box<FitOptions>,
    },
    /// List model versions.
    List {
        #[arg(long)]
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a model version: metrics, chosen configuration and leaderboard.
    Show {
        #[arg(long)]
        project: String,
        version: String,
        #[arg(long)]
        json: bool,
    },
    /// Compare model versions' metrics side by side.
    Compare {
        #[arg(long)]
        project: String,
        versions: Vec<String>,
    },
    /// Delete a model version.
    Delete {
        #[arg(long)]
        project: String,
        version: String,
        #[arg(long)]
        yes: bool,
    },
    /// Mark a model version as deployed (`exeml serve --project` does this while it runs).
    Deploy {
        #[arg(long)]
        project: String,
        version: String,
    },
    /// Clear a version's deployed mark (e.g. after a service was killed).
    Undeploy {
        #[arg(long)]
        project: String,
        version: String,
    },
    /// Copy a model version's folder elsewhere (self-contained), or write it as an ONNX file.
    Export {
        #[arg(long)]
        project: String,
        version: String,
        /// The folder to write (`--format folder`), or the ONNX file (`--format onnx`).
        #[arg(long)]
        out: PathBuf,
        /// `folder` (default) or `onnx` (image models).
        #[arg(long, value_enum, default_value_t = ExportFormat::Folder)]
        format: ExportFormat,
        /// With `--format onnx`: store the weights as 8-bit integers.
        #[arg(long)]
        int8: bool,
    },
}
