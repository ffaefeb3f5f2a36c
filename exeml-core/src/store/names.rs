//! The naming rules of SPEC §1: project names, labels, descriptions and paths inside a project.

use crate::{Error, Result};
use std::path::{Component, Path};

/// Longest project name, in characters.
pub const MAX_PROJECT_NAME_CHARS: usize = 64;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 32;
/// Longest project description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// Check a project name: 1–64 ASCII letters, digits, `_` or `-`, starting with a letter.
pub fn validate_project_name(name: &str) -> Result<()> {
    let bad = |why: String| Err(Error::invalid("project name", format!("`{name}` {why}")));
    let n = name.chars().count();
    if n == 0 {
        return Err(Error::invalid("project name", "the name is empty"));
    }
    if n > MAX_PROJECT_NAME_CHARS {
        return bad(format!(
            "has {n} characters; at most {MAX_PROJECT_NAME_CHARS} are allowed"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return bad("must start with a letter (A–Z or a–z)".into());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return bad(format!(
            "contains `{c}`; only ASCII letters, digits, `_` and `-` are allowed"
        ));
    }
    Ok(())
}

/// Check a label: 1–32 letters of any script (Chinese too), digits, `-` or `_`.
pub fn validate_label(label: &str) -> Result<()> {
    let bad = |why: String| Err(Error::invalid("label", format!("`{label}` {why}")));
    let n = label.chars().count();
    if n == 0 {
        return Err(Error::invalid("label", "the label is empty"));
    }
    if n > MAX_LABEL_CHARS {
        return bad(format!(
            "has {n} characters; at most {MAX_LABEL_CHARS} are allowed"
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|&c| !(c.is_alphanumeric() || c == '_' || c == '-'))
    {
        return bad(format!(
            "contains `{}`; only letters, digits, `_` and `-` are allowed",
            c.escape_debug()
        ));
    }
    Ok(())
}

/// Check a project description: at most 500 characters.
pub(super) fn validate_description(description: &str) -> Result<()> {
    let n = description.chars().count();
    if n > MAX_DESCRIPTION_CHARS {
        return Err(Error::invalid(
            "description",
            format!("has {n} characters; at most {MAX_DESCRIPTION_CHARS} are allowed"),
        ));
    }
    Ok(())
}

/// Validate and sort a sample's labels, dropping repeats.
pub(super) fn normalize_labels(labels: &[String]) -> Result<Vec<String>> {
    for label in labels {
        validate_label(label)?;
    }
    let mut labels = labels.to_vec();
    labels.sort();
    labels.dedup();
    Ok(labels)
}

/// A path inside a project folder, in its stored spelling (`/`-separated, no `.` parts).
///
/// Absolute paths and `..` are refused with [`Error::InvalidParameter`] named `what`, so nothing
/// can read or write outside the folder. `\` counts as a separator on every platform, so a
/// workspace moves between systems.
pub(super) fn relative_path(path: &str, what: &str) -> Result<String> {
    let escapes = || {
        Error::invalid(
            what,
            format!(
                "`{path}` is not a relative path inside the project's data folder \
                 (absolute paths and `..` are not allowed)"
            ),
        )
    };
    let portable = path.replace('\\', "/");
    let mut parts = Vec::new();
    for component in Path::new(&portable).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(escapes)?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(escapes())
            }
        }
    }
    if parts.is_empty() {
        return Err(Error::invalid(what, format!("`{path}` names no file")));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_named(result: Result<impl std::fmt::Debug>, field: &str, needle: &str) {
        match result {
            Err(Error::InvalidParameter { name, message }) => {
                assert_eq!(name, field);
                assert!(message.contains(needle), "{message}");
            }
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_good_project_names() {
        for name in ["a", "flowers", "Bank-Marketing_2", &"x".repeat(64)] {
            validate_project_name(name).expect(name);
        }
    }

    #[test]
    fn rejects_bad_project_names_and_names_them() {
        invalid_named(validate_project_name(""), "project name", "empty");
        invalid_named(validate_project_name("1abc"), "project name", "`1abc`");
        invalid_named(validate_project_name("_abc"), "project name", "start");
        invalid_named(validate_project_name("a b"), "project name", "` `");
        invalid_named(validate_project_name("a/b"), "project name", "`/`");
        invalid_named(validate_project_name("花"), "project name", "start");
        invalid_named(validate_project_name(&"x".repeat(65)), "project name", "65");
    }

    #[test]
    fn accepts_labels_in_any_script() {
        for label in [
            "cat",
            "向日葵",
            "猫-1",
            "Straße",
            "a_b-c",
            "7",
            &"字".repeat(32),
        ] {
            validate_label(label).expect(label);
        }
    }

    #[test]
    fn rejects_bad_labels_and_names_them() {
        invalid_named(validate_label(""), "label", "empty");
        invalid_named(validate_label("two words"), "label", "`two words`");
        invalid_named(validate_label("a,b"), "label", "`,`");
        invalid_named(validate_label("a.b"), "label", "`.`");
        invalid_named(validate_label(&"字".repeat(33)), "label", "33");
    }

    #[test]
    fn limits_description_length() {
        validate_description(&"d".repeat(500)).expect("500 chars");
        invalid_named(validate_description(&"d".repeat(501)), "description", "501");
    }

    #[test]
    fn normalizes_paths_inside_the_folder() {
        assert_eq!(relative_path("a/./b.jpg", "source").expect("ok"), "a/b.jpg");
        assert_eq!(relative_path("a\\b.jpg", "source").expect("ok"), "a/b.jpg");
        assert_eq!(relative_path("./c.txt", "source").expect("ok"), "c.txt");
    }

    #[test]
    fn rejects_paths_escaping_the_folder() {
        for path in ["../x.jpg", "a/../../x", "/etc/passwd", "..\\x", "", "."] {
            assert!(
                matches!(
                    relative_path(path, "file name"),
                    Err(Error::InvalidParameter { ref name, .. }) if name == "file name"
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn sorts_and_dedups_labels() {
        let labels = ["b", "a", "b"].map(String::from);
        assert_eq!(normalize_labels(&labels).expect("valid"), ["a", "b"]);
        assert!(normalize_labels(&["ok".into(), "not ok".into()]).is_err());
    }
}
