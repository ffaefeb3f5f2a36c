//! A forest's trees packed for prediction, as the booster's are (`boosting::packed`): every
//! split node of every tree in one array of 24-byte nodes (threshold, feature, missing side,
//! children), every leaf's values in another. A walk step reads one cache line and picks the
//! child by index: no branch on the node kind, none on a missing value. Built once when a
//! forest is fitted or loaded; the grown trees stay the form that is saved.

use crate::features::Matrix;
use std::ops::Range;

/// One split node.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Node {
    threshold: f64,
    feature: u32,
    /// 1 when missing values go left, else 0.
    missing_left: u32,
    /// Children, left then right: `>= 0` an index into the nodes, `< 0` a leaf (`!link` is
    /// where its values start).
    children: [i32; 2],
}

/// A link to a node or a leaf, as [`PackedForest::push_tree`] is given it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A split node, by its index in the tree.
    Split(usize),
    /// A leaf, by where its values start in the tree's values.
    Leaf(usize),
}

/// A split as [`PackedForest::push_tree`] is given it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// The feature compared.
    pub feature: u32,
    /// `value <= threshold` goes left.
    pub threshold: f64,
    /// Where missing values go.
    pub missing_left: bool,
    /// Where `value <= threshold` goes.
    pub left: Link,
    /// Where the other values go.
    pub right: Link,
}

/// Every tree of a forest, packed (see the module docs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PackedForest {
    nodes: Vec<Node>,
    values: Vec<f64>,
    /// Per tree, its root link (a leaf link when the tree is a single leaf).
    roots: Vec<i32>,
}

/// A link moved by the offsets of the packed arrays. More than 2^31 nodes or values would not
/// fit a model folder's tensors either; such a link saturates.
fn relink(link: Link, node_offset: usize, value_offset: usize) -> i32 {
    match link {
        Link::Split(i) => i32::try_from(i + node_offset).unwrap_or(i32::MAX),
        Link::Leaf(v) => !i32::try_from(v + value_offset).unwrap_or(i32::MAX),
    }
}

impl PackedForest {
    /// Add a tree: its root, its splits (indexed as [`Link::Split`] counts them) and its leaf
    /// values (indexed as [`Link::Leaf`] counts them).
    pub fn push_tree(&mut self, root: Link, splits: &[Split], values: &[f64]) {
        let (node_offset, value_offset) = (self.nodes.len(), self.values.len());
        self.roots.push(relink(root, node_offset, value_offset));
        self.nodes.extend(splits.iter().map(|s| Node {
            threshold: s.threshold,
            feature: s.feature,
            missing_left: u32::from(s.missing_left),
            children: [
                relink(s.left, node_offset, value_offset),
                relink(s.right, node_offset, value_offset),
            ],
        }));
        self.values.extend_from_slice(values);
    }

    /// Trees packed.
    pub fn tree_count(&self) -> usize {
        self.roots.len()
    }

    /// Where the values of the leaf that row `r` of `x` reaches in tree `t` start (a feature
    /// beyond `x`'s columns reads as missing).
    #[inline]
    fn leaf_start(&self, t: usize, x: &Matrix, r: usize) -> usize {
        let mut link = self.roots[t];
        while link >= 0 {
            let node = &self.nodes[link as usize];
            let f = node.feature as usize;
            let v = if f < x.cols { x.get(r, f) } else { f64::NAN };
            // NaN compares false, so it goes left only where missing values do.
            let left = (v <= node.threshold) | (node.missing_left == 1 && v.is_nan());
            link = node.children[usize::from(!left)];
        }
        (!link) as usize
    }

    /// Add every tree's leaf values for the rows `rows` of `x`, each divided by `divisor`, to
    /// `out` (`width` values per row, rows in order). Tree by tree: a block of rows walks one
    /// tree while its nodes are in cache. Each row still adds its trees in tree order, so a
    /// row's sums do not depend on the block it is in.
    #[inline]
    pub fn accumulate_rows(
        &self,
        x: &Matrix,
        rows: Range<usize>,
        width: usize,
        divisor: f64,
        out: &mut [f64],
    ) {
        for t in 0..self.roots.len() {
            for (r, row_out) in rows.clone().zip(out.chunks_exact_mut(width)) {
                let at = self.leaf_start(t, x, r);
                for (o, v) in row_out.iter_mut().zip(&self.values[at..at + width]) {
                    *o += v / divisor;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tree A: x0 <= 1 (missing left) → [1, 0], else x1 <= 5 (missing right) → [0, 1], else
    /// [0.5, 0.5]. Tree B: a single leaf [0.25, 0.75].
    fn forest() -> PackedForest {
        let mut packed = PackedForest::default();
        let splits = [
            Split {
                feature: 0,
                threshold: 1.0,
                missing_left: true,
                left: Link::Leaf(0),
                right: Link::Split(1),
            },
            Split {
                feature: 1,
                threshold: 5.0,
                missing_left: false,
                left: Link::Leaf(2),
                right: Link::Leaf(4),
            },
        ];
        packed.push_tree(Link::Split(0), &splits, &[1.0, 0.0, 0.0, 1.0, 0.5, 0.5]);
        packed.push_tree(Link::Leaf(0), &[], &[0.25, 0.75]);
        packed
    }

    #[test]
    fn rows_reach_the_leaves_their_splits_and_missing_sides_say() {
        let packed = forest();
        assert_eq!(packed.tree_count(), 2);
        let x = Matrix::from_rows(&[
            &[0.5, 9.0],
            &[f64::NAN, 9.0],
            &[2.0, 5.0],
            &[2.0, f64::NAN],
            &[2.0, 6.0],
        ]);
        let expected = [
            [1.25, 0.75],
            [1.25, 0.75],
            [0.25, 1.75],
            [0.75, 1.25],
            [0.75, 1.25],
        ];
        for (r, want) in expected.iter().enumerate() {
            let mut out = [0.0; 2];
            packed.accumulate_rows(&x, r..r + 1, 2, 1.0, &mut out);
            assert_eq!(&out, want, "row {r}");
        }
        // A block of rows gets what each row gets alone.
        let mut block = [0.0; 6];
        packed.accumulate_rows(&x, 2..5, 2, 1.0, &mut block);
        assert_eq!(block.as_slice(), expected[2..].concat().as_slice());
        // A feature the matrix lacks reads as missing: x1 absent goes right.
        let narrow = Matrix::from_rows(&[&[2.0]]);
        let mut out = [0.0; 2];
        packed.accumulate_rows(&narrow, 0..1, 2, 2.0, &mut out);
        assert_eq!(out, [0.375, 0.625]);
    }
}
