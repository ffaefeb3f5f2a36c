//! Projects: one task, one dataset and one folder each, listed and filtered by state.

use super::{files, names, now, Store};
use crate::{Error, Result, TaskKind};
use rusqlite::{OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An enum stored and printed as its snake_case name.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in workflow order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling on the command line and in the store.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let expected: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        Error::invalid($what, format!("`{s}`: expected one of {}", expected.join(", ")))
                    })
            }
        }
    };
}

named_enum!(
    /// Where a project stands.
    ProjectStatus, "project status", {
        /// Created, nothing run yet.
        Created => "created",
        /// A step is running.
        Running => "running",
        /// Waiting for the user (e.g. for labelling).
        Paused => "paused",
        /// The workflow finished.
        Completed => "completed",
        /// The last step failed.
        Failed => "failed",
    }
);

named_enum!(
    /// The workflow step a project is at (SPEC §1).
    WorkflowStep, "workflow step", {
        /// Importing data.
        Import => "import",
        /// Labelling samples.
        Label => "label",
        /// Publishing a dataset version.
        Publish => "publish",
        /// Checking the data.
        Check => "check",
        /// Training.
        Train => "train",
        /// Evaluating a model version.
        Evaluate => "evaluate",
        /// Registering a model version.
        Register => "register",
        /// Deploying a model version.
        Deploy => "deploy",
    }
);

/// What is needed to create a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProject {
    /// 1–64 ASCII letters, digits, `_` or `-`, starting with a letter; unique in the workspace.
    pub name: String,
    /// Free text, at most 500 characters.
    #[serde(default)]
    pub description: String,
    /// The one task of the project.
    pub task: TaskKind,
}

impl NewProject {
    /// A project without description.
    pub fn new(name: impl Into<String>, task: TaskKind) -> Self {
        NewProject {
            name: name.into(),
            description: String::new(),
            task,
        }
    }

    /// Set the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
}

/// A project as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Its unique name.
    pub name: String,
    /// Its description (may be empty).
    pub description: String,
    /// Its task.
    pub task: TaskKind,
    /// Where it stands.
    pub status: ProjectStatus,
    /// The step it is at.
    pub step: WorkflowStep,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// Which projects to list; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectFilter {
    /// Names containing this text (ASCII case ignored).
    pub name_contains: Option<String>,
    /// Projects of this task.
    pub task: Option<TaskKind>,
    /// Projects in this status.
    pub status: Option<ProjectStatus>,
    /// Projects at this step.
    pub step: Option<WorkflowStep>,
}

const PROJECT_COLUMNS: &str = "name, description, task, status, step, created_at, updated_at";

type ProjectRow = (String, String, String, String, String, i64, i64);

fn project_row(row: &Row<'_>) -> rusqlite::Result<ProjectRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

impl Store {
    /// Create a project and its folder. A name already used (ignoring case) is
    /// [`Error::AlreadyExists`]; a bad name or description is [`Error::InvalidParameter`].
    pub fn create_project(&self, new: &NewProject) -> Result<Project> {
        names::validate_project_name(&new.name)?;
        names::validate_description(&new.description)?;
        let tx = self.write_tx()?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT name FROM projects WHERE name = ?1 COLLATE NOCASE",
                [&new.name],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        if let Some(name) = existing {
            return Err(Error::AlreadyExists {
                kind: "project",
                name,
            });
        }
        let t = now();
        tx.execute(
            "INSERT INTO projects (name, description, task, status, step, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            (
                &new.name,
                &new.description,
                new.task.as_str(),
                ProjectStatus::Created.as_str(),
                WorkflowStep::Import.as_str(),
                t,
            ),
        )
        .map_err(self.sql())?;
        let dir = self.project_dir(&new.name);
        for sub in ["data", "versions", "models"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        tx.commit().map_err(self.sql())?;
        self.project(&new.name)
    }

    /// The project of that name, or [`Error::NotFound`].
    pub fn project(&self, name: &str) -> Result<Project> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?1"),
                [name],
                project_row,
            )
            .optional()
            .map_err(self.sql())?
            .ok_or_else(|| Error::not_found("project", name))?;
        self.project_from_row(row)
    }

    /// The projects matching `filter`, by name.
    pub fn list_projects(&self, filter: &ProjectFilter) -> Result<Vec<Project>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {PROJECT_COLUMNS} FROM projects
                 WHERE (?1 IS NULL OR instr(lower(name), lower(?1)) > 0)
                   AND (?2 IS NULL OR task = ?2)
                   AND (?3 IS NULL OR status = ?3)
                   AND (?4 IS NULL OR step = ?4)
                 ORDER BY name"
            ))
            .map_err(self.sql())?;
        let rows = stmt
            .query_map(
                (
                    filter.name_contains.as_deref(),
                    filter.task.map(TaskKind::as_str),
                    filter.status.map(ProjectStatus::as_str),
                    filter.step.map(WorkflowStep::as_str),
                ),
                project_row,
            )
            .map_err(self.sql())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql())?;
        rows.into_iter()
            .map(|row| self.project_from_row(row))
            .collect()
    }

    /// Record a project's status and current step.
    pub fn set_project_state(
        &self,
        name: &str,
        status: ProjectStatus,
        step: WorkflowStep,
    ) -> Result<()> {
        let changed = self
            .conn
            .execute(
                "UPDATE projects SET status = ?2, step = ?3, updated_at = ?4 WHERE name = ?1",
                (name, status.as_str(), step.as_str(), now()),
            )
            .map_err(self.sql())?;
        if changed == 0 {
            return Err(Error::not_found("project", name));
        }
        Ok(())
    }

    /// Delete a project: its samples, labels and versions, and its whole folder. Cannot be undone.
    pub fn delete_project(&self, name: &str) -> Result<()> {
        let tx = self.write_tx()?;
        let changed = tx
            .execute("DELETE FROM projects WHERE name = ?1", [name])
            .map_err(self.sql())?;
        if changed == 0 {
            return Err(Error::not_found("project", name));
        }
        tx.commit().map_err(self.sql())?;
        files::remove_tree(&self.project_dir(name))
    }

    /// Remove what killed processes left behind in every project (staging folders, temporary
    /// files, half-removed folders) once their owner is gone. Returns how many were removed.
    pub fn cleanup_stale(&self) -> Result<usize> {
        let projects = self.root.join("projects");
        let mut removed = files::cleanup_dir(&projects)?;
        for project in self.list_projects(&ProjectFilter::default())? {
            removed += self.cleanup_project(&project.name)?;
        }
        Ok(removed)
    }

    /// [`Store::cleanup_stale`] for one project.
    pub(super) fn cleanup_project(&self, project: &str) -> Result<usize> {
        Ok(files::cleanup_dir(&self.models_dir(project))?
            + files::cleanup_dir(&self.versions_dir(project))?
            + files::cleanup_dir(&self.data_dir(project))?)
    }

    fn project_from_row(&self, row: ProjectRow) -> Result<Project> {
        let (name, description, task, status, step, created_at, updated_at) = row;
        let corrupt = |e: Error| Error::Store {
            path: self.db_path.clone(),
            message: format!("project `{name}`: {e}"),
        };
        Ok(Project {
            task: task.parse().map_err(corrupt)?,
            status: status.parse().map_err(corrupt)?,
            step: step.parse().map_err(corrupt)?,
            name,
            description,
            created_at,
            updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for status in ProjectStatus::ALL {
            assert_eq!(status.as_str().parse::<ProjectStatus>().ok(), Some(*status));
        }
        for step in WorkflowStep::ALL {
            assert_eq!(step.to_string().parse::<WorkflowStep>().ok(), Some(*step));
        }
        assert!("nope".parse::<WorkflowStep>().is_err());
        assert_eq!(
            serde_json::to_string(&WorkflowStep::Evaluate)
                .ok()
                .as_deref(),
            Some("\"evaluate\"")
        );
    }
}
