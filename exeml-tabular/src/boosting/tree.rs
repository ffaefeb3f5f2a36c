//! One regression tree of the booster, grown leaf-wise (best-first, as LightGBM does): the
//! leaf whose best split reduces the loss most is split next, until the leaf limit. Rows are
//! kept partitioned by leaf in one index array; the smaller child's histogram is built and
//! the larger one's is the parent's minus it.

use super::bins::{BinCuts, Binned, MISSING_BIN};
use super::histogram::{self, holds, BinSet, GradPair, Histogram, Layout, Split, SplitRules, Sums};
use crate::features::Matrix;

/// Histograms kept at once are capped at this many bytes; leaves beyond it drop theirs and
/// build both children's when they are split.
const HISTOGRAM_POOL_BYTES: usize = 256 << 20;

/// A fitted tree. Child links `>= 0` are internal nodes, `< 0` are leaves (`!link`); a tree
/// with no internal node is its single leaf 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// Feature tested per internal node.
    pub feature: Vec<u32>,
    /// Raw threshold per internal node: `value <= threshold` goes left.
    pub threshold: Vec<f64>,
    /// Bin threshold per internal node (for binned rows): `bin <= threshold_bin` goes left.
    pub threshold_bin: Vec<u8>,
    /// Where a missing value goes, per internal node.
    pub missing_left: Vec<bool>,
    /// Left child per internal node.
    pub left: Vec<i32>,
    /// Right child per internal node.
    pub right: Vec<i32>,
    /// Output per leaf (shrinkage included).
    pub leaf_value: Vec<f64>,
    /// Per internal node, the index into `category_sets` of a categorical split (whose
    /// threshold fields are unused); `None` for a threshold split.
    pub category_set: Vec<Option<u32>>,
    /// The sets of the tree's categorical splits.
    pub category_sets: Vec<CategorySet>,
}

/// What a categorical split sends left: category codes (raw values) and the value bins that
/// hold them (binned rows). Other codes, values that are not codes and missing values go right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategorySet {
    /// Codes `0..256` that go left.
    pub codes: BinSet,
    /// Value bins that go left.
    pub bins: BinSet,
}

impl CategorySet {
    /// Whether raw value `v` goes left.
    pub fn takes_value(&self, v: f64) -> bool {
        (0.0..256.0).contains(&v) && v.fract() == 0.0 && holds(&self.codes, v as usize)
    }
}

impl Tree {
    /// A tree of one leaf.
    pub fn constant(value: f64) -> Self {
        Tree {
            feature: Vec::new(),
            threshold: Vec::new(),
            threshold_bin: Vec::new(),
            missing_left: Vec::new(),
            left: Vec::new(),
            right: Vec::new(),
            leaf_value: vec![value],
            category_set: Vec::new(),
            category_sets: Vec::new(),
        }
    }

    /// The output for row `r` of `x` (raw values).
    pub fn predict(&self, x: &Matrix, r: usize) -> f64 {
        self.walk(|node| {
            let v = x.get(r, self.feature[node] as usize);
            match self.category_set[node] {
                Some(set) => self.category_sets[set as usize].takes_value(v),
                None if v.is_nan() => self.missing_left[node],
                None => v <= self.threshold[node],
            }
        })
    }

    /// The output for row `r` of binned rows.
    pub fn predict_binned(&self, x: &Binned, r: usize) -> f64 {
        self.walk(|node| {
            let b = x.bins[self.feature[node] as usize * x.rows + r];
            match self.category_set[node] {
                Some(set) => holds(&self.category_sets[set as usize].bins, usize::from(b)),
                None if b == MISSING_BIN => self.missing_left[node],
                None => b <= self.threshold_bin[node],
            }
        })
    }

    fn walk(&self, mut goes_left: impl FnMut(usize) -> bool) -> f64 {
        if self.feature.is_empty() {
            return self.leaf_value[0];
        }
        let mut node = 0usize;
        loop {
            let next = if goes_left(node) {
                self.left[node]
            } else {
                self.right[node]
            };
            if next < 0 {
                return self.leaf_value[!next as usize];
            }
            node = next as usize;
        }
    }

    /// Number of leaves.
    pub fn leaves(&self) -> usize {
        self.leaf_value.len()
    }
}

/// How trees grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrowRules {
    /// Most leaves per tree.
    pub max_leaves: usize,
    /// Deepest a leaf may be (the root is depth 0).
    pub max_depth: usize,
    /// Shrinkage applied to leaf values.
    pub learning_rate: f64,
    /// What a split must satisfy.
    pub split: SplitRules,
}

/// A leaf while the tree grows.
struct Leaf {
    /// Its rows are `order[begin..end]`.
    begin: usize,
    end: usize,
    depth: usize,
    sums: Sums,
    /// Slot of its histogram in the pool, when it has one.
    hist: Option<usize>,
    best: Option<Split>,
    /// The internal node pointing at it and whether it is that node's left child.
    parent: Option<(usize, bool)>,
}

/// Histogram pools passed between growers: a grower holds one only while it grows a tree, so
/// the classes' growers of a softmax booster need as many pools as trees grow at once (the
/// threads), not one each.
#[derive(Default)]
pub struct PoolStash(std::sync::Mutex<Vec<Vec<Histogram>>>);

impl PoolStash {
    fn take(&self) -> Option<Vec<Histogram>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put(&self, pool: Vec<Histogram>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(pool);
    }
}

/// Grows trees over one binned training set, reusing its buffers between trees.
pub struct Grower<'a> {
    binned: &'a Binned,
    cuts: &'a BinCuts,
    layout: Layout,
    rules: GrowRules,
    /// Whether histograms are built and searched on the thread pool.
    parallel: bool,
    /// Row indices, partitioned by leaf.
    order: Vec<u32>,
    scratch: Vec<u32>,
    ordered: Vec<GradPair>,
    pool: Vec<Histogram>,
    free: Vec<usize>,
    pool_capacity: usize,
    /// Where the pool comes from and goes back to around each tree, when shared.
    stash: Option<&'a PoolStash>,
    /// Each leaf's rows in `order` after the last [`Grower::grow`], by leaf index.
    leaf_ranges: Vec<(usize, usize)>,
}

impl<'a> Grower<'a> {
    /// A grower for `binned` (cut by `cuts`); `parallel` spreads each tree's work over the
    /// thread pool (off when several trees grow at once).
    pub fn new(binned: &'a Binned, cuts: &'a BinCuts, rules: GrowRules, parallel: bool) -> Self {
        let layout = Layout::new(cuts);
        let hist_bytes = layout.len().max(1) * size_of::<GradPair>();
        Grower {
            binned,
            cuts,
            layout,
            rules,
            parallel,
            order: Vec::with_capacity(binned.rows),
            scratch: Vec::new(),
            ordered: Vec::new(),
            pool: Vec::new(),
            free: Vec::new(),
            pool_capacity: (HISTOGRAM_POOL_BYTES / hist_bytes).max(3),
            stash: None,
            leaf_ranges: Vec::new(),
        }
    }

    /// Take the histogram pool from `stash` for each tree and give it back after (see
    /// [`PoolStash`]).
    pub fn drawing_pools_from(mut self, stash: &'a PoolStash) -> Self {
        self.stash = Some(stash);
        self
    }

    /// Share the cap on histogram memory with the other growers running at once (`growers` in
    /// all), so that several trees growing side by side stay within one cap.
    pub fn sharing_memory_with(mut self, growers: usize) -> Self {
        let hist_bytes = self.layout.len().max(1) * size_of::<GradPair>();
        self.pool_capacity = (HISTOGRAM_POOL_BYTES / growers.max(1) / hist_bytes).max(3);
        self
    }

    /// The rows of each leaf of the last tree grown (indices into the rows it was grown on).
    pub fn leaf_rows(&self) -> impl Iterator<Item = &[u32]> {
        self.leaf_ranges.iter().map(|&(b, e)| &self.order[b..e])
    }

    /// Grow one tree on the rows `rows` (all rows, or a bag) with the per-row derivatives
    /// `grads`, splitting only on the features marked in `active`.
    pub fn grow(&mut self, grads: &[GradPair], rows: &[u32], active: &[bool]) -> Tree {
        if let Some(pool) = self.stash.and_then(PoolStash::take) {
            self.pool = pool;
        }
        let tree = self.grow_tree(grads, rows, active);
        if let Some(stash) = self.stash {
            stash.put(std::mem::take(&mut self.pool));
        }
        tree
    }

    fn grow_tree(&mut self, grads: &[GradPair], rows: &[u32], active: &[bool]) -> Tree {
        self.order.clear();
        self.order.extend_from_slice(rows);
        self.free.clear();
        self.free.extend(0..self.pool.len());
        let mut tree = Tree::constant(0.0);
        tree.leaf_value.clear();
        let root_sums = Sums::of(rows, grads);
        let mut leaves = vec![Leaf {
            begin: 0,
            end: rows.len(),
            depth: 0,
            sums: root_sums,
            hist: None,
            best: None,
            parent: None,
        }];
        let slot = self.take_slot(&mut leaves, usize::MAX);
        self.fill(slot, 0, rows.len(), grads, active);
        leaves[0].hist = Some(slot);
        self.consider(&mut leaves[0], active);

        while leaves.len() < self.rules.max_leaves {
            let Some(chosen) = leaves
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.best.map(|s| (i, s.gain)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
            else {
                break;
            };
            self.split(&mut leaves, chosen, &mut tree, grads, active);
        }

        self.leaf_ranges.clear();
        for leaf in &leaves {
            tree.leaf_value
                .push(self.rules.split.leaf_value(leaf.sums) * self.rules.learning_rate);
            self.leaf_ranges.push((leaf.begin, leaf.end));
        }
        tree
    }

    /// Split leaf `index` along its best split: it becomes the left child, a new leaf the right.
    fn split(
        &mut self,
        leaves: &mut Vec<Leaf>,
        index: usize,
        tree: &mut Tree,
        grads: &[GradPair],
        active: &[bool],
    ) {
        let split = leaves[index]
            .best
            .take()
            .expect("only leaves with a split are chosen");
        let (begin, end) = (leaves[index].begin, leaves[index].end);
        let middle = self.partition(begin, end, &split);

        let node = tree.feature.len();
        tree.feature.push(split.feature as u32);
        match split.left_bins {
            Some(bins) => {
                tree.threshold.push(0.0);
                tree.threshold_bin.push(0);
                let mut codes: BinSet = [0; 4];
                for b in (1..256).filter(|&b| holds(&bins, b)) {
                    for code in self.cuts.codes_of_bin(split.feature, b) {
                        codes[code / 64] |= 1 << (code % 64);
                    }
                }
                tree.category_set
                    .push(Some(tree.category_sets.len() as u32));
                tree.category_sets.push(CategorySet { codes, bins });
            }
            None => {
                tree.threshold
                    .push(self.cuts.threshold(split.feature, split.bin));
                tree.threshold_bin.push(split.bin as u8);
                tree.category_set.push(None);
            }
        }
        tree.missing_left.push(split.missing_left);
        let left_leaf = index;
        let right_leaf = leaves.len();
        tree.left.push(!(left_leaf as i32));
        tree.right.push(!(right_leaf as i32));
        if let Some((p, is_left)) = leaves[index].parent {
            let link = node as i32;
            if is_left {
                tree.left[p] = link;
            } else {
                tree.right[p] = link;
            }
        }

        let depth = leaves[index].depth + 1;
        let parent_hist = leaves[index].hist.take();
        // The split estimated its sides' rows from hessians; the partition counted them.
        let (mut left_sums, mut right_sums) = (split.left, split.right);
        left_sums.n = (middle - begin) as f64;
        right_sums.n = (end - middle) as f64;
        leaves[index] = Leaf {
            begin,
            end: middle,
            depth,
            sums: left_sums,
            hist: None,
            best: None,
            parent: Some((node, true)),
        };
        leaves.push(Leaf {
            begin: middle,
            end,
            depth,
            sums: right_sums,
            hist: None,
            best: None,
            parent: Some((node, false)),
        });

        let can_split =
            |n: f64| depth < self.rules.max_depth && n >= 2.0 * self.rules.split.min_rows;
        let wanted = [can_split(left_sums.n), can_split(right_sums.n)];
        if wanted == [false, false] {
            if let Some(slot) = parent_hist {
                self.free.push(slot);
            }
            return;
        }
        let (small, large) = if middle - begin <= end - middle {
            (left_leaf, right_leaf)
        } else {
            (right_leaf, left_leaf)
        };
        let small_slot = self.take_slot(leaves, small);
        let (sb, se) = (leaves[small].begin, leaves[small].end);
        self.fill(small_slot, sb, se, grads, active);
        let large_slot = match parent_hist {
            Some(slot) => {
                let (parent, child) = two_slots(&mut self.pool, slot, small_slot);
                histogram::subtract(parent, child);
                slot
            }
            None => {
                let slot = self.take_slot(leaves, large);
                let (lb, le) = (leaves[large].begin, leaves[large].end);
                self.fill(slot, lb, le, grads, active);
                slot
            }
        };
        leaves[small].hist = Some(small_slot);
        leaves[large].hist = Some(large_slot);
        for (child, want) in [(left_leaf, wanted[0]), (right_leaf, wanted[1])] {
            if want {
                self.consider(&mut leaves[child], active);
            }
            if leaves[child].best.is_none() {
                if let Some(slot) = leaves[child].hist.take() {
                    self.free.push(slot);
                }
            }
        }
    }

    /// Find a leaf's best split from its histogram.
    fn consider(&self, leaf: &mut Leaf, active: &[bool]) {
        leaf.best = None;
        if leaf.depth >= self.rules.max_depth {
            return;
        }
        if let Some(slot) = leaf.hist {
            leaf.best = histogram::best_split(
                &self.pool[slot],
                &self.layout,
                leaf.sums,
                (active, &self.rules.split),
                self.parallel,
            );
        }
    }

    /// Build the histogram of `order[begin..end]` into pool slot `slot`.
    fn fill(&mut self, slot: usize, begin: usize, end: usize, grads: &[GradPair], active: &[bool]) {
        let rows = &self.order[begin..end];
        self.ordered.clear();
        self.ordered.extend(rows.iter().map(|&r| grads[r as usize]));
        histogram::build(
            &mut self.pool[slot],
            &self.layout,
            self.binned,
            (rows, &self.ordered),
            active,
            self.parallel,
        );
    }

    /// A free histogram slot; when the pool is full, the slot of the leaf (other than `keep`)
    /// with the smallest pending gain is taken from it.
    fn take_slot(&mut self, leaves: &mut [Leaf], keep: usize) -> usize {
        if let Some(slot) = self.free.pop() {
            return slot;
        }
        if self.pool.len() < self.pool_capacity {
            self.pool.push(self.layout.empty());
            return self.pool.len() - 1;
        }
        let victim = leaves
            .iter()
            .enumerate()
            .filter(|(i, l)| *i != keep && l.hist.is_some())
            .min_by(|a, b| {
                let gain = |l: &Leaf| l.best.map_or(f64::NEG_INFINITY, |s| s.gain);
                gain(a.1).total_cmp(&gain(b.1))
            })
            .map(|(i, _)| i)
            .expect("the pool holds at least three slots, at most two are being filled");
        leaves[victim].hist.take().expect("the victim holds a slot")
    }

    /// Partition `order[begin..end]` by `split` (stable on both sides); returns where the
    /// right side starts.
    fn partition(&mut self, begin: usize, end: usize, split: &Split) -> usize {
        let column = self.binned.column(split.feature);
        let (bin, missing_left) = (split.bin as u8, split.missing_left);
        // Per bin, whether it goes left: a threshold split or a set of categories alike.
        let mut to_left = [false; 256];
        for (b, left) in to_left.iter_mut().enumerate() {
            *left = match &split.left_bins {
                Some(set) => holds(set, b),
                None if b == usize::from(MISSING_BIN) => missing_left,
                None => b <= usize::from(bin),
            };
        }
        let rows = &mut self.order[begin..end];
        self.scratch.resize(rows.len(), 0);
        // Branch-free: every row is written to both sides and only the matching cursor moves
        // (left or right is a coin flip the branch predictor cannot learn). Writing at
        // `left <= read` never overwrites a row not yet read.
        let (mut left, mut right) = (0, 0);
        for read in 0..rows.len() {
            let r = rows[read];
            let goes_left = to_left[usize::from(column[r as usize])];
            rows[left] = r;
            self.scratch[right] = r;
            left += usize::from(goes_left);
            right += usize::from(!goes_left);
        }
        rows[left..].copy_from_slice(&self.scratch[..right]);
        begin + left
    }
}

/// Mutable access to slot `a` and shared access to slot `b` (`a != b`) of the pool.
fn two_slots(pool: &mut [Histogram], a: usize, b: usize) -> (&mut Histogram, &Histogram) {
    if a < b {
        let (low, high) = pool.split_at_mut(b);
        (&mut low[a], &high[0])
    } else {
        let (low, high) = pool.split_at_mut(a);
        (&mut high[0], &low[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(max_leaves: usize) -> GrowRules {
        GrowRules {
            max_leaves,
            max_depth: 10,
            learning_rate: 1.0,
            split: SplitRules {
                lambda: 0.0,
                min_rows: 1.0,
                min_hessian: 0.0,
                min_gain: 0.0,
            },
        }
    }

    /// y = 1 in the square x0 > 0.5, x1 > 0.5, else 0 (needs two levels of splits).
    fn square(n: usize) -> (Matrix, Vec<f64>) {
        let mut data = vec![0.0; 2 * n];
        let mut y = vec![0.0; n];
        for r in 0..n {
            let a = ((r * 37) % 101) as f64 / 100.0;
            let b = ((r * 53) % 97) as f64 / 96.0;
            data[r] = a;
            data[n + r] = b;
            y[r] = if a > 0.5 && b > 0.5 { 1.0 } else { 0.0 };
        }
        (
            Matrix {
                data,
                rows: n,
                cols: 2,
            },
            y,
        )
    }

    #[test]
    fn a_tree_fits_an_interaction_and_both_walks_agree() {
        let (x, y) = square(400);
        let cuts = BinCuts::fit(&x, 255, 1);
        let binned = cuts.apply(&x);
        // Squared loss at 0: g = −y, h = 1; the leaf value is the mean of y.
        let grads: Vec<GradPair> = y.iter().map(|&y| GradPair { g: -y, h: 1.0 }).collect();
        let rows: Vec<u32> = (0..400).collect();
        let mut grower = Grower::new(&binned, &cuts, rules(4), true);
        let tree = grower.grow(&grads, &rows, &[true, true]);
        assert!(tree.leaves() <= 4);
        for (r, &target) in y.iter().enumerate() {
            let p = tree.predict(&x, r);
            assert!((p - target).abs() < 1e-9, "row {r}: {p} vs {target}");
            assert_eq!(p, tree.predict_binned(&binned, r));
        }
        // Each row sits in the leaf whose value it gets.
        let covered: usize = grower.leaf_rows().map(<[u32]>::len).sum();
        assert_eq!(covered, 400);
        for (leaf, rows) in grower.leaf_rows().enumerate() {
            for &r in rows {
                assert_eq!(tree.predict(&x, r as usize), tree.leaf_value[leaf]);
            }
        }
    }

    #[test]
    fn missing_values_follow_the_learned_side_and_limits_hold() {
        let n = 200;
        let mut data: Vec<f64> = (0..n).map(|r| r as f64).collect();
        let mut y: Vec<f64> = (0..n).map(|r| if r < 100 { -1.0 } else { 1.0 }).collect();
        for r in (0..n).step_by(10) {
            data[r] = f64::NAN;
            y[r] = 1.0;
        }
        let x = Matrix {
            data,
            rows: n,
            cols: 1,
        };
        let cuts = BinCuts::fit(&x, 255, 1);
        let binned = cuts.apply(&x);
        let grads: Vec<GradPair> = y.iter().map(|&y| GradPair { g: -y, h: 1.0 }).collect();
        let rows: Vec<u32> = (0..n as u32).collect();
        let tree = Grower::new(&binned, &cuts, rules(2), true).grow(&grads, &rows, &[true]);
        assert_eq!(tree.leaves(), 2);
        assert!(!tree.missing_left[0]);
        let missing = Matrix {
            data: vec![f64::NAN],
            rows: 1,
            cols: 1,
        };
        assert!(tree.predict(&missing, 0) > 0.0);
        // A depth limit of 0 gives a single leaf; inactive features are never split.
        let stump = Grower::new(
            &binned,
            &cuts,
            GrowRules {
                max_depth: 0,
                ..rules(31)
            },
            false,
        )
        .grow(&grads, &rows, &[true]);
        assert_eq!(stump.leaves(), 1);
        let none = Grower::new(&binned, &cuts, rules(31), true).grow(&grads, &rows, &[false]);
        assert_eq!(none.leaves(), 1);
    }

    #[test]
    fn a_full_histogram_pool_still_grows_the_same_tree() {
        let (x, y) = square(300);
        let cuts = BinCuts::fit(&x, 255, 1);
        let binned = cuts.apply(&x);
        let grads: Vec<GradPair> = y
            .iter()
            .enumerate()
            .map(|(r, &y)| GradPair {
                g: (r % 7) as f64 * 0.1 - y,
                h: 1.0,
            })
            .collect();
        let rows: Vec<u32> = (0..300).collect();
        let mut roomy = Grower::new(&binned, &cuts, rules(16), true);
        let mut tight = Grower::new(&binned, &cuts, rules(16), true);
        tight.pool_capacity = 3;
        let a = roomy.grow(&grads, &rows, &[true, true]);
        let b = tight.grow(&grads, &rows, &[true, true]);
        assert_eq!(a.feature, b.feature);
        assert_eq!(a.threshold_bin, b.threshold_bin);
        for (p, q) in a.leaf_value.iter().zip(&b.leaf_value) {
            assert!((p - q).abs() < 1e-9);
        }
    }
}
