//! The `Dataset` trait: labelled samples of one task, checked before training.

use crate::checks::CheckReport;
use crate::split::Usage;
use crate::task::TaskKind;

/// A labelled collection of samples of one task, in memory or on disk.
///
/// Tables hold rows, the file tasks (image, detection, sound) hold file paths, text holds lines.
/// What every task shares is what the rest of exeml needs: the task, the size, the class names,
/// the data checks of SPEC §3 and a split into training and validation parts.
pub trait Dataset: Sized {
    /// Which task the samples are for.
    fn task(&self) -> TaskKind;

    /// Number of samples.
    fn len(&self) -> usize;

    /// True if there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class names in model order (empty for regression).
    fn classes(&self) -> &[String];

    /// Run the task's data checks (SPEC §3); errors in the report refuse training.
    fn check(&self) -> CheckReport;

    /// The samples with the given usage of `usage`, as a new dataset of the same kind.
    fn subset(&self, usage: &[Usage], keep: Usage) -> crate::Result<Self>;
}
