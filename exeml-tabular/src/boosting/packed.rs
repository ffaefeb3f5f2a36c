//! The booster's trees packed for prediction: every internal node of every tree in one array
//! of 24-byte nodes (threshold, feature, kind, children), every leaf value in another. A
//! [`Tree`] keeps its nodes as parallel arrays, which suits growing it but costs a walk five
//! memory streams and a branch on the node kind per step; packed, a step reads one cache
//! line, and a missing value needs no branch of its own (the comparison decides it, see
//! [`NUMERIC_MISSING_LEFT`]). Built once when a booster is made or loaded.

use super::tree::{CategorySet, Tree};
use crate::features::Matrix;
use std::cmp::Ordering;

/// A threshold split whose missing values go right: `value <= threshold` goes left (false
/// for NaN).
const NUMERIC_MISSING_RIGHT: u32 = 0;

/// A threshold split whose missing values go left: `value <= threshold` or missing goes left.
const NUMERIC_MISSING_LEFT: u32 = 1;

/// Kinds from this value on are categorical splits: `kind - FIRST_SET` indexes the sets.
const FIRST_SET: u32 = 2;

/// One internal node.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Node {
    threshold: f64,
    feature: u32,
    kind: u32,
    /// Children, left then right: `>= 0` an index into the nodes, `< 0` a leaf (`!link` into
    /// the leaves). An array, so that the walk picks one by index rather than by a branch the
    /// processor would mispredict on half of the rows.
    children: [i32; 2],
}

/// Every tree of a booster, packed (see the module docs).
#[derive(Clone, PartialEq, Default)]
pub struct PackedTrees {
    nodes: Vec<Node>,
    leaves: Vec<f64>,
    sets: Vec<CategorySet>,
    /// Per tree, its root link (a leaf link when the tree is a single leaf).
    roots: Vec<i32>,
}

impl std::fmt::Debug for PackedTrees {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedTrees")
            .field("trees", &self.roots.len())
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

/// A link of a tree's own numbering moved by the offsets of the packed arrays.
fn relink(link: i32, node_offset: usize, leaf_offset: usize) -> i32 {
    let moved = if link >= 0 {
        link as usize + node_offset
    } else {
        (!link) as usize + leaf_offset
    };
    // More than 2^31 nodes or leaves would not fit a model folder's tensors either.
    let moved = i32::try_from(moved).unwrap_or(i32::MAX);
    if link >= 0 {
        moved
    } else {
        !moved
    }
}

impl PackedTrees {
    /// Pack `trees` (in order).
    pub fn new(trees: &[Tree]) -> Self {
        let mut packed = PackedTrees {
            nodes: Vec::with_capacity(trees.iter().map(|t| t.feature.len()).sum()),
            leaves: Vec::with_capacity(trees.iter().map(|t| t.leaf_value.len()).sum()),
            sets: Vec::new(),
            roots: Vec::with_capacity(trees.len()),
        };
        for tree in trees {
            let (node_offset, leaf_offset) = (packed.nodes.len(), packed.leaves.len());
            let set_offset = packed.sets.len();
            packed.roots.push(if tree.feature.is_empty() {
                relink(!0, node_offset, leaf_offset)
            } else {
                relink(0, node_offset, leaf_offset)
            });
            for n in 0..tree.feature.len() {
                let kind = match tree.category_set[n] {
                    Some(set) => FIRST_SET + set + set_offset as u32,
                    None if tree.missing_left[n] => NUMERIC_MISSING_LEFT,
                    None => NUMERIC_MISSING_RIGHT,
                };
                packed.nodes.push(Node {
                    threshold: tree.threshold[n],
                    feature: tree.feature[n],
                    kind,
                    children: [
                        relink(tree.left[n], node_offset, leaf_offset),
                        relink(tree.right[n], node_offset, leaf_offset),
                    ],
                });
            }
            packed.leaves.extend_from_slice(&tree.leaf_value);
            packed.sets.extend_from_slice(&tree.category_sets);
        }
        packed
    }

    /// Trees packed.
    pub fn tree_count(&self) -> usize {
        self.roots.len()
    }

    /// The output of tree `t` for row `r` of `x` (the same as [`Tree::predict`]).
    #[inline]
    pub fn predict(&self, t: usize, x: &Matrix, r: usize) -> f64 {
        let mut link = self.roots[t];
        while link >= 0 {
            let node = &self.nodes[link as usize];
            let v = x.get(r, node.feature as usize);
            let left = match node.kind {
                NUMERIC_MISSING_RIGHT => v <= node.threshold,
                // Not greater: at most the threshold, or missing (NaN compares as nothing).
                NUMERIC_MISSING_LEFT => v.partial_cmp(&node.threshold) != Some(Ordering::Greater),
                set => self.sets[(set - FIRST_SET) as usize].takes_value(v),
            };
            link = node.children[usize::from(!left)];
        }
        self.leaves[(!link) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boosting::histogram::BinSet;

    /// x0 <= 1 (missing left) → leaf 0, else x1 in {2, 5} → leaf 1, else leaf 2.
    fn two_splits() -> Tree {
        let mut codes: BinSet = [0; 4];
        for code in [2usize, 5] {
            codes[code / 64] |= 1 << (code % 64);
        }
        Tree {
            feature: vec![0, 1],
            threshold: vec![1.0, 0.0],
            threshold_bin: vec![0, 0],
            missing_left: vec![true, false],
            left: vec![!0, !1],
            right: vec![1, !2],
            leaf_value: vec![10.0, 20.0, 30.0],
            category_set: vec![None, Some(0)],
            category_sets: vec![CategorySet {
                codes,
                bins: BinSet::default(),
            }],
        }
    }

    #[test]
    fn packed_trees_predict_as_their_trees_do() {
        let single = Tree::constant(-1.5);
        let trees = vec![two_splits(), single, two_splits()];
        let packed = PackedTrees::new(&trees);
        assert_eq!(packed.tree_count(), 3);
        let x = Matrix::from_rows(&[
            &[0.5, 9.0],
            &[f64::NAN, 9.0],
            &[3.0, 5.0],
            &[3.0, 4.0],
            &[3.0, f64::NAN],
            &[1.0, 2.0],
        ]);
        for r in 0..x.rows {
            for (t, tree) in trees.iter().enumerate() {
                assert_eq!(
                    packed.predict(t, &x, r),
                    tree.predict(&x, r),
                    "tree {t} row {r}"
                );
            }
        }
        assert_eq!(packed.predict(0, &x, 1), 10.0, "missing goes left");
        assert_eq!(packed.predict(2, &x, 2), 20.0, "code 5 is in the set");
        assert_eq!(packed.predict(2, &x, 4), 30.0, "missing is not in the set");
        assert_eq!(packed.predict(1, &x, 0), -1.5);
    }
}
