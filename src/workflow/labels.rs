//! Labelling a project's samples (SPEC §1): list, add, change, rename and delete labels, delete
//! samples. Thin steps over the store's operations that also record that the project is being
//! labelled; deletions say what they remove (see [`Project::plan_delete_label`]).

use super::Project;
use exeml_core::store::{
    DeleteLabelMode, DeletionPlan, ProjectStatus, Sample, SampleFilter, WorkflowStep,
};
use exeml_core::{Error, Result, TaskKind};
use std::collections::BTreeMap;

impl Project {
    /// The project's samples matching `filter`, by id.
    pub fn samples(&self, filter: SampleFilter) -> Result<Vec<Sample>> {
        self.store.samples(&self.name, filter)
    }

    /// Labelled samples per label.
    pub fn label_counts(&self) -> Result<BTreeMap<String, usize>> {
        self.store.label_counts(&self.name)
    }

    /// Add `label` to each sample of `ids`; returns how many did not carry it yet.
    pub fn add_label(&self, ids: &[i64], label: &str) -> Result<usize> {
        self.require_samples()?;
        let added = self.store.add_label(&self.name, ids, label)?;
        self.labelled()?;
        Ok(added)
    }

    /// Replace the labels of one sample (an empty list leaves it unlabelled).
    pub fn set_labels(&self, id: i64, labels: &[String]) -> Result<()> {
        self.require_samples()?;
        self.store.set_labels(&self.name, id, labels)?;
        self.labelled()
    }

    /// Rename a label on every sample that carries it; returns how many samples changed.
    pub fn rename_label(&self, old: &str, new: &str) -> Result<usize> {
        self.require_samples()?;
        let renamed = self.store.rename_label(&self.name, old, new)?;
        self.labelled()?;
        Ok(renamed)
    }

    /// What [`Project::delete_label`] would remove, without removing anything.
    pub fn plan_delete_label(&self, label: &str, mode: DeleteLabelMode) -> Result<DeletionPlan> {
        self.require_samples()?;
        self.store.plan_delete_label(&self.name, label, mode)
    }

    /// Delete a label in `mode` and return what was removed. This cannot be undone: show
    /// [`Project::plan_delete_label`] first.
    pub fn delete_label(&self, label: &str, mode: DeleteLabelMode) -> Result<DeletionPlan> {
        self.require_samples()?;
        let plan = self.store.delete_label(&self.name, label, mode)?;
        self.labelled()?;
        Ok(plan)
    }

    /// Delete samples (their files stay in the data folder); returns how many were deleted.
    pub fn delete_samples(&self, ids: &[i64]) -> Result<usize> {
        self.require_samples()?;
        let deleted = self.store.delete_samples(&self.name, ids)?;
        self.labelled()?;
        Ok(deleted)
    }

    /// Refuse label operations on a tabular project: its samples are rows of a table, labelled
    /// by its label column.
    fn require_samples(&self) -> Result<()> {
        if self.task()? == TaskKind::Tabular {
            return Err(Error::invalid(
                "project",
                format!(
                    "`{}` is a tabular project: its labels are the table's label column; \
                     label operations are for projects of files (images, sound, text)",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// After a change of samples or labels, the next step: labelling while some samples have
    /// no label, else checking the data before a version is published.
    pub(super) fn labelled(&self) -> Result<()> {
        let unlabelled = self.samples(SampleFilter::Unlabelled)?;
        let step = if unlabelled.is_empty() {
            WorkflowStep::Check
        } else {
            WorkflowStep::Label
        };
        self.set_state(ProjectStatus::Created, step)
    }
}
