//! A booster in one safetensors file: the nodes of all trees in one table, the leaf values in
//! another, where each tree starts, and the starting scores; read back with every index
//! checked, so that a damaged file is an error rather than a crash or an endless walk.

use super::{Booster, Objective, Tree};
use crate::family::{read_f64_tensor, TensorFile};
use exeml_core::{Error, Result};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// A 1-D or 2-D f64 tensor over `data`.
fn view(
    shape: Vec<usize>,
    data: &[u8],
) -> std::result::Result<TensorView<'_>, safetensors::SafeTensorError> {
    TensorView::new(Dtype::F64, shape, data)
}

/// Columns of the node table: feature, threshold, bin threshold, missing-left, left, right.
const NODE_COLUMNS: usize = 6;
/// Columns of the category table, one row per categorical split: its node (row of the node
/// table), then the codes and the bins that go left, each as eight 32-bit words (f64 holds
/// them exactly).
const CATEGORY_COLUMNS: usize = 17;

/// A 256-bit set as eight 32-bit words.
fn set_words(set: &[u64; 4]) -> impl Iterator<Item = f64> + '_ {
    set.iter()
        .flat_map(|&w| [f64::from(w as u32), f64::from((w >> 32) as u32)])
}

/// The 256-bit set of eight 32-bit words, `None` when one is not such a word.
fn words_set(words: &[f64]) -> Option<[u64; 4]> {
    let mut set = [0u64; 4];
    for (i, &w) in words.iter().enumerate() {
        if !(w >= 0.0 && w <= f64::from(u32::MAX) && w.fract() == 0.0) {
            return None;
        }
        set[i / 2] |= (w as u64) << (32 * (i % 2));
    }
    Some(set)
}

impl Booster {
    /// Write the booster to `path` + `.zst` (compressed, atomically); returns that file's name.
    pub fn save(&self, path: &Path) -> Result<String> {
        let mut nodes: Vec<f64> = Vec::new();
        let mut leaves: Vec<f64> = Vec::new();
        let mut starts: Vec<f64> = Vec::new();
        let mut categories: Vec<f64> = Vec::new();
        for tree in &self.trees {
            starts.push((nodes.len() / NODE_COLUMNS) as f64);
            starts.push(leaves.len() as f64);
            for i in 0..tree.feature.len() {
                if let Some(set) = tree.category_set[i] {
                    let set = &tree.category_sets[set as usize];
                    categories.push((nodes.len() / NODE_COLUMNS) as f64);
                    categories.extend(set_words(&set.codes));
                    categories.extend(set_words(&set.bins));
                }
                nodes.extend([
                    f64::from(tree.feature[i]),
                    tree.threshold[i],
                    f64::from(tree.threshold_bin[i]),
                    f64::from(u8::from(tree.missing_left[i])),
                    f64::from(tree.left[i]),
                    f64::from(tree.right[i]),
                ]);
            }
            leaves.extend(&tree.leaf_value);
        }
        let bytes = |v: &[f64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (node_bytes, leaf_bytes, start_bytes, initial_bytes) = (
            bytes(&nodes),
            bytes(&leaves),
            bytes(&starts),
            bytes(&self.initial),
        );
        let err = |e: safetensors::SafeTensorError| Error::data(path, e.to_string());
        let category_bytes = bytes(&categories);
        let mut tensors = vec![
            (
                "nodes",
                view(vec![nodes.len() / NODE_COLUMNS, NODE_COLUMNS], &node_bytes).map_err(err)?,
            ),
            (
                "leaves",
                view(vec![leaves.len()], &leaf_bytes).map_err(err)?,
            ),
            (
                "starts",
                view(vec![self.trees.len(), 2], &start_bytes).map_err(err)?,
            ),
            (
                "initial",
                view(vec![self.initial.len()], &initial_bytes).map_err(err)?,
            ),
        ];
        // Only boosters with categorical splits have the table (older readers read the rest).
        if !categories.is_empty() {
            let rows = categories.len() / CATEGORY_COLUMNS;
            tensors.push((
                "categories",
                view(vec![rows, CATEGORY_COLUMNS], &category_bytes).map_err(err)?,
            ));
        }
        let (objective, classes) = match self.objective {
            Objective::Squared => ("squared", 1),
            Objective::Logistic => ("logistic", 2),
            Objective::Softmax(k) => ("softmax", k),
        };
        let metadata = HashMap::from([
            ("objective".to_string(), objective.to_string()),
            ("classes".to_string(), classes.to_string()),
            ("features".to_string(), self.n_features.to_string()),
        ]);
        let serialized = safetensors::serialize(tensors, Some(metadata)).map_err(err)?;
        crate::family::compressed::write(path, &serialized)
    }

    /// Read a booster written by [`Booster::save`].
    pub fn load(path: &Path) -> Result<Booster> {
        let file = TensorFile::read(path)?;
        let bad = |message: String| Error::data(path, message);
        let number = |key: &str| -> Result<usize> {
            file.metadata
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("metadata `{key}` is missing or not a number")))
        };
        let (classes, n_features) = (number("classes")?, number("features")?);
        let objective = match file.metadata.get("objective").map(String::as_str) {
            Some("squared") => Objective::Squared,
            Some("logistic") => Objective::Logistic,
            Some("softmax") if classes >= 2 => Objective::Softmax(classes),
            other => return Err(bad(format!("unknown objective {other:?}"))),
        };
        let tensors = file.tensors()?;
        let (nodes, _) = read_f64_tensor(&tensors, "nodes", path)?;
        let (leaves, _) = read_f64_tensor(&tensors, "leaves", path)?;
        let (starts, _) = read_f64_tensor(&tensors, "starts", path)?;
        let (initial, _) = read_f64_tensor(&tensors, "initial", path)?;
        let categories = match tensors.tensor("categories") {
            Ok(_) => read_f64_tensor(&tensors, "categories", path)?.0,
            Err(_) => Vec::new(),
        };
        if categories.len() % CATEGORY_COLUMNS != 0 {
            return Err(bad("the category table has the wrong shape".into()));
        }
        let mut category_rows = categories.chunks(CATEGORY_COLUMNS).peekable();
        let outputs = objective.outputs();
        if nodes.len() % NODE_COLUMNS != 0
            || starts.len() % 2 != 0
            || initial.len() != outputs
            || (starts.len() / 2) % outputs != 0
        {
            return Err(bad("the tables have the wrong shape".into()));
        }
        let node_count = nodes.len() / NODE_COLUMNS;
        let index = |v: f64| (v >= 0.0 && v.fract() == 0.0).then_some(v as usize);
        let tree_count = starts.len() / 2;
        let mut trees = Vec::with_capacity(tree_count);
        for t in 0..tree_count {
            let bounds = |column: usize, total: usize| -> Option<(usize, usize)> {
                let begin = index(starts[2 * t + column])?;
                let end = match starts.get(2 * (t + 1) + column) {
                    Some(&s) => index(s)?,
                    None => total,
                };
                (begin <= end && end <= total).then_some((begin, end))
            };
            let (Some((nb, ne)), Some((lb, le))) = (bounds(0, node_count), bounds(1, leaves.len()))
            else {
                return Err(bad(format!("tree {t}: invalid start")));
            };
            let mut tree = read_tree(
                &nodes[nb * NODE_COLUMNS..ne * NODE_COLUMNS],
                &leaves[lb..le],
                n_features,
            )
            .map_err(|m| bad(format!("tree {t}: {m}")))?;
            // The category table lists nodes in order: this tree's rows come next.
            while let Some(row) = category_rows.next_if(|row| index(row[0]).is_some_and(|n| n < ne))
            {
                let node = index(row[0]).filter(|&n| n >= nb).map(|n| n - nb);
                let sets = (words_set(&row[1..9]), words_set(&row[9..17]));
                let (Some(node), (Some(codes), Some(bins))) = (node, sets) else {
                    return Err(bad(format!("tree {t}: invalid category set")));
                };
                if tree.category_set[node].is_some() {
                    return Err(bad(format!("tree {t}: node {node} has two category sets")));
                }
                tree.category_set[node] = Some(tree.category_sets.len() as u32);
                tree.category_sets
                    .push(super::tree::CategorySet { codes, bins });
            }
            trees.push(tree);
        }
        if category_rows.next().is_some() {
            return Err(bad("the category table names a node of no tree".into()));
        }
        Ok(Booster {
            objective,
            initial,
            packed: super::packed::PackedTrees::new(&trees),
            trees,
            n_features,
        })
    }
}

/// One tree from its rows of the node table and its leaf values. Links to internal nodes must
/// point forward (so walks end) and every leaf must exist.
fn read_tree(
    nodes: &[f64],
    leaves: &[f64],
    n_features: usize,
) -> std::result::Result<Tree, String> {
    let count = nodes.len() / NODE_COLUMNS;
    if leaves.len() != count + 1 {
        return Err(format!(
            "{count} nodes need {} leaves, not {}",
            count + 1,
            leaves.len()
        ));
    }
    let mut tree = Tree::constant(0.0);
    tree.leaf_value = leaves.to_vec();
    for (i, row) in nodes.chunks(NODE_COLUMNS).enumerate() {
        let feature = row[0];
        if !(feature >= 0.0 && feature.fract() == 0.0 && (feature as usize) < n_features) {
            return Err(format!("node {i}: feature {feature} out of range"));
        }
        let bin = row[2];
        if !(bin.fract() == 0.0 && (0.0..=255.0).contains(&bin)) || row[1].is_nan() {
            return Err(format!("node {i}: invalid threshold"));
        }
        let link = |v: f64| -> Option<i32> {
            if v.fract() != 0.0 || v.abs() > f64::from(i32::MAX) {
                return None;
            }
            let l = v as i32;
            let fine = if l < 0 {
                ((!l) as usize) < leaves.len()
            } else {
                (l as usize) > i && (l as usize) < count
            };
            fine.then_some(l)
        };
        let (Some(left), Some(right)) = (link(row[4]), link(row[5])) else {
            return Err(format!("node {i}: invalid child"));
        };
        tree.feature.push(feature as u32);
        tree.threshold.push(row[1]);
        tree.threshold_bin.push(bin as u8);
        tree.missing_left.push(row[3] != 0.0);
        tree.left.push(left);
        tree.right.push(right);
        tree.category_set.push(None);
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{coded, params, rings};
    use super::*;
    use crate::boosting::BoostParams;

    #[test]
    fn a_booster_round_trips_and_a_damaged_file_is_an_error() {
        let (x, y) = rings(300, 0);
        let booster = Booster::fit(
            (&x, &[]),
            &y,
            None,
            Objective::Softmax(3),
            &BoostParams {
                max_rounds: 5,
                ..params()
            },
            &mut |_, _| true,
        )
        .expect("fit");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("booster.safetensors");
        let written = dir.path().join(booster.save(&path).expect("save"));
        let loaded = Booster::load(&path).expect("load");
        assert_eq!(loaded, booster);
        assert_eq!(loaded.predict(&x), booster.predict(&x));

        let mut bytes = std::fs::read(&written).expect("read");
        let n = bytes.len();
        bytes.truncate(n / 2);
        std::fs::write(&written, &bytes).expect("write");
        let err = Booster::load(&path).expect_err("truncated");
        assert!(err.to_string().contains("booster.safetensors"), "{err}");
    }

    #[test]
    fn category_sets_round_trip_and_a_stray_one_is_an_error() {
        let (x, y) = coded(1300);
        let booster = Booster::fit(
            (&x, &[0]),
            &y,
            None,
            Objective::Logistic,
            &BoostParams {
                max_rounds: 3,
                ..params()
            },
            &mut |_, _| true,
        )
        .expect("fit");
        assert!(booster.trees.iter().any(|t| !t.category_sets.is_empty()));
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("booster.safetensors");
        booster.save(&path).expect("save");
        let loaded = Booster::load(&path).expect("load");
        assert_eq!(loaded, booster);
        assert_eq!(loaded.predict(&x), booster.predict(&x));

        // A category set naming a node past the last tree is refused.
        let file = TensorFile::read(&path).expect("read");
        let tensors = file.tensors().expect("tensors");
        let mut categories = read_f64_tensor(&tensors, "categories", &path)
            .expect("table")
            .0;
        categories[0] = 1e6;
        let bytes: Vec<u8> = categories.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut views: Vec<(String, TensorView<'_>)> = tensors
            .tensors()
            .into_iter()
            .filter(|(name, _)| name != "categories")
            .map(|(name, v)| {
                (
                    name,
                    TensorView::new(v.dtype(), v.shape().to_vec(), v.data()).expect("view"),
                )
            })
            .collect();
        let shape = vec![categories.len() / CATEGORY_COLUMNS, CATEGORY_COLUMNS];
        views.push(("categories".into(), view(shape, &bytes).expect("view")));
        let damaged =
            safetensors::serialize(views, Some(file.metadata.clone())).expect("serialize");
        crate::family::compressed::write(&path, &damaged).expect("write");
        let err = Booster::load(&path).expect_err("stray set");
        assert!(err.to_string().contains("category"), "{err}");
    }

    #[test]
    fn a_backward_link_is_refused() {
        // Node 1 pointing back at node 0 would walk forever.
        let nodes = [0.0, 0.5, 1.0, 0.0, 1.0, -1.0, 0.0, 0.5, 1.0, 0.0, 0.0, -2.0];
        let err = read_tree(&nodes, &[0.0, 1.0, 2.0], 1).expect_err("loop");
        assert!(err.contains("node 1"), "{err}");
        assert!(
            read_tree(&nodes[..6], &[0.0, 1.0], 1).is_err(),
            "a link to a missing node"
        );
    }
}
