//! Gradient histograms of a leaf (per feature and bin: sums of gradients, hessians and rows)
//! and the best split they allow.

use super::bins::{BinCuts, Binned};
use rayon::prelude::*;

/// Leaves with fewer (rows × features) than this build their histogram on one thread.
const PARALLEL_WORK: usize = 64 * 1024;
/// Histograms with at least this many slots are searched for splits on the thread pool.
const PARALLEL_SPLIT_SLOTS: usize = 16 * 1024;

/// First and second derivative of the loss at one row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GradPair {
    /// Gradient.
    pub g: f64,
    /// Hessian.
    pub h: f64,
}

impl GradPair {
    fn add(&mut self, other: GradPair) {
        self.g += other.g;
        self.h += other.h;
    }
}

/// Sums over the rows of a leaf or a side of a split.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    /// Sum of gradients.
    pub g: f64,
    /// Sum of hessians.
    pub h: f64,
    /// Rows.
    pub n: f64,
}

impl Sums {
    /// `self - other`.
    pub fn minus(self, other: Sums) -> Sums {
        Sums {
            g: self.g - other.g,
            h: self.h - other.h,
            n: self.n - other.n,
        }
    }

    /// Sums of `grads` over `rows`.
    pub fn of(rows: &[u32], grads: &[GradPair]) -> Sums {
        let mut s = GradPair::default();
        for &r in rows {
            s.add(grads[r as usize]);
        }
        Sums {
            g: s.g,
            h: s.h,
            n: rows.len() as f64,
        }
    }
}

/// Where each feature's slots lie in a histogram: one per value bin, and slot 0 for missing
/// values. Features with few distinct values take few slots, so building, clearing and
/// subtracting histograms touches only the bins that exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    offsets: Vec<usize>,
    /// Per feature, whether its bins are categories (split into sets, not at a threshold).
    categorical: Vec<bool>,
}

impl Layout {
    /// The layout of histograms over the features cut by `cuts`.
    pub fn new(cuts: &BinCuts) -> Self {
        let mut offsets = vec![0];
        for f in 0..cuts.cuts.len() {
            offsets.push(offsets[f] + cuts.value_bins(f) + 1);
        }
        let categorical = (0..cuts.cuts.len())
            .map(|f| cuts.is_categorical(f))
            .collect();
        Layout {
            offsets,
            categorical,
        }
    }

    /// Slots of a histogram.
    pub fn len(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// A new, zeroed histogram.
    pub fn empty(&self) -> Histogram {
        vec![GradPair::default(); self.len()]
    }

    /// Feature `f`'s slots.
    fn slots<'h>(&self, hist: &'h [GradPair], f: usize) -> &'h [GradPair] {
        &hist[self.offsets[f]..self.offsets[f + 1]]
    }

    /// Every feature's slots of `hist`, mutably, in feature order.
    fn split_mut<'h>(&self, mut hist: &'h mut [GradPair]) -> Vec<&'h mut [GradPair]> {
        let mut parts = Vec::with_capacity(self.offsets.len() - 1);
        for w in self.offsets.windows(2) {
            let (part, rest) = hist.split_at_mut(w[1] - w[0]);
            parts.push(part);
            hist = rest;
        }
        parts
    }
}

/// One histogram: per feature and bin, the sums of gradients and hessians (row counts are
/// estimated from hessians, as LightGBM does, which keeps a slot at 16 bytes).
pub type Histogram = Vec<GradPair>;

/// Fill `hist` with the sums of the rows `rows`, whose gradients are `ordered` (gathered in the
/// same order, so that the inner loop reads them sequentially), for the features marked in
/// `active` (the other features' slots are left as they were); on the thread pool when
/// `parallel` and the leaf is large.
pub fn build(
    hist: &mut [GradPair],
    layout: &Layout,
    binned: &Binned,
    (rows, ordered): (&[u32], &[GradPair]),
    active: &[bool],
    parallel: bool,
) {
    let fill = |(f, slots): (usize, &mut &mut [GradPair])| {
        if !active[f] {
            return;
        }
        // Sum into a full 256-slot array on the stack: a u8 bin always indexes it, so the
        // inner loop has no bounds check on the histogram.
        // Two arrays, alternating rows: consecutive rows in the same bin would otherwise wait
        // on each other's read-modify-write of one slot.
        let mut even = [GradPair::default(); 256];
        let mut odd = [GradPair::default(); 256];
        let column = binned.column(f);
        let mut pairs = rows.chunks_exact(2).zip(ordered.chunks_exact(2));
        for (r, p) in &mut pairs {
            even[usize::from(column[r[0] as usize])].add(p[0]);
            odd[usize::from(column[r[1] as usize])].add(p[1]);
        }
        if rows.len() % 2 == 1 {
            let last = rows.len() - 1;
            even[usize::from(column[rows[last] as usize])].add(ordered[last]);
        }
        for ((slot, e), o) in slots.iter_mut().zip(&even).zip(&odd) {
            *slot = GradPair {
                g: e.g + o.g,
                h: e.h + o.h,
            };
        }
    };
    let mut parts = layout.split_mut(hist);
    let work = rows.len() * binned.cols;
    if !parallel || work < PARALLEL_WORK {
        parts.iter_mut().enumerate().for_each(fill);
    } else {
        parts
            .par_iter_mut()
            .enumerate()
            .with_min_len((PARALLEL_WORK / rows.len().max(1)).max(1))
            .for_each(fill);
    }
}

/// `parent -= child`: the histogram of the parent's other child (slots of inactive features
/// hold leftovers that are never read).
pub fn subtract(parent: &mut [GradPair], child: &[GradPair]) {
    for (p, c) in parent.iter_mut().zip(child) {
        p.g -= c.g;
        p.h -= c.h;
    }
}

/// Limits on a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitRules {
    /// L2 penalty on leaf values.
    pub lambda: f64,
    /// Fewest rows in a child.
    pub min_rows: f64,
    /// Smallest hessian sum in a child.
    pub min_hessian: f64,
    /// Smallest gain worth a split.
    pub min_gain: f64,
}

impl SplitRules {
    /// A leaf's contribution to the loss reduction: G² / (H + λ).
    fn score(&self, s: Sums) -> f64 {
        s.g * s.g / (s.h + self.lambda)
    }

    /// The value of a leaf with sums `s`, before shrinkage: −G / (H + λ).
    pub fn leaf_value(&self, s: Sums) -> f64 {
        if s.h + self.lambda > 0.0 {
            -s.g / (s.h + self.lambda)
        } else {
            0.0
        }
    }
}

/// A set of value bins (bit `b` of word `b / 64`): the bins a categorical split sends left.
pub type BinSet = [u64; 4];

/// Whether `set` holds bin `b`.
pub fn holds(set: &BinSet, b: usize) -> bool {
    b < 256 && set[b / 64] >> (b % 64) & 1 == 1
}

/// The best split of a leaf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// The feature tested.
    pub feature: usize,
    /// Value bins `1..=bin` go left (a threshold split).
    pub bin: usize,
    /// For a split of a categorical feature: the value bins that go left (the others and
    /// missing values go right); `bin` is unused then.
    pub left_bins: Option<BinSet>,
    /// Where missing values go.
    pub missing_left: bool,
    /// Loss reduction.
    pub gain: f64,
    /// Sums of the left child.
    pub left: Sums,
    /// Sums of the right child.
    pub right: Sums,
}

/// The best split of a leaf with sums `parent` and histogram `hist` over the active features,
/// or `None` when no split satisfies `rules`. Missing values are tried on both sides; when the
/// leaf has none, they are sent to the side with more hessian (where unseen missing values are
/// most likely to belong). Of equal gains, the lowest feature and bin win (on any thread count).
/// Wide histograms are searched on the thread pool when `parallel`.
pub fn best_split(
    hist: &[GradPair],
    layout: &Layout,
    parent: Sums,
    (active, rules): (&[bool], &SplitRules),
    parallel: bool,
) -> Option<Split> {
    let features = (0..active.len()).filter(|&f| active[f]);
    let of_feature = |f: usize| {
        if layout.categorical[f] {
            best_category_set(f, layout.slots(hist, f), parent, rules)
        } else {
            best_of_feature(f, layout.slots(hist, f), parent, rules)
        }
    };
    let better = |a: Option<Split>, b: Option<Split>| match (a, b) {
        (Some(x), Some(y)) => Some(
            if y.gain > x.gain || (y.gain == x.gain && y.feature < x.feature) {
                y
            } else {
                x
            },
        ),
        (x, None) => x,
        (None, y) => y,
    };
    if !parallel || layout.len() < PARALLEL_SPLIT_SLOTS {
        features.map(of_feature).fold(None, better)
    } else {
        features
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(of_feature)
            .reduce(|| None, better)
    }
}

/// The best split on feature `f`, whose histogram slots are `slots`.
///
/// Written as straight passes over fixed-size arrays (prefix sums, then every candidate's gain
/// with invalid ones set to −∞, then the first maximum) so that the gain pass vectorises: a
/// leaf's split search costs about as much as a small histogram build.
fn best_of_feature(
    f: usize,
    slots: &[GradPair],
    parent: Sums,
    rules: &SplitRules,
) -> Option<Split> {
    // Slot 0 (missing) plus at least two value bins, or nothing can be split.
    if slots.len() < 3 {
        return None;
    }
    // Candidate `b` sends value bins 1..=b left; the last value bin cannot be a left end.
    let candidates = slots.len() - 2;
    let mut left_g = [0.0f64; 256];
    let mut left_h = [0.0f64; 256];
    let mut acc = GradPair::default();
    for (i, slot) in slots[1..=candidates].iter().enumerate() {
        acc.add(*slot);
        left_g[i] = acc.g;
        left_h[i] = acc.h;
    }
    // Rows per unit of hessian: a side's row count is estimated from its hessian sum (exact
    // when every hessian is equal, as for squared error).
    let rows_per_hessian = if parent.h > 0.0 {
        parent.n / parent.h
    } else {
        0.0
    };
    let parent_score = rules.score(parent);
    let missing = slots[0];
    let has_missing = missing.h != 0.0 || missing.g != 0.0;
    let sides: &[bool] = if has_missing {
        &[true, false]
    } else {
        &[false]
    };
    let mut best: Option<Split> = None;
    let mut gains = [f64::NEG_INFINITY; 256];
    for &missing_left in sides {
        let (extra_g, extra_h) = if missing_left {
            (missing.g, missing.h)
        } else {
            (0.0, 0.0)
        };
        for ((gain, &lg), &lh) in gains[..candidates]
            .iter_mut()
            .zip(&left_g[..candidates])
            .zip(&left_h[..candidates])
        {
            let (lg, lh) = (lg + extra_g, lh + extra_h);
            let (rg, rh) = (parent.g - lg, parent.h - lh);
            let ln = lh * rows_per_hessian;
            let rn = parent.n - ln;
            let valid = ln >= rules.min_rows
                && rn >= rules.min_rows
                && lh >= rules.min_hessian
                && rh >= rules.min_hessian;
            let g = lg * lg / (lh + rules.lambda) + rg * rg / (rh + rules.lambda) - parent_score;
            *gain = if valid { g } else { f64::NEG_INFINITY };
        }
        let mut top = (f64::NEG_INFINITY, 0usize);
        for (i, &g) in gains[..candidates].iter().enumerate() {
            if g > top.0 {
                top = (g, i);
            }
        }
        let (gain, i) = top;
        if gain > rules.min_gain && best.is_none_or(|b| gain > b.gain) {
            let left = Sums {
                g: left_g[i] + extra_g,
                h: left_h[i] + extra_h,
                n: ((left_h[i] + extra_h) * rows_per_hessian).min(parent.n),
            };
            let right = parent.minus(left);
            best = Some(Split {
                feature: f,
                bin: i + 1,
                left_bins: None,
                missing_left: if has_missing {
                    missing_left
                } else {
                    left.h >= right.h
                },
                gain,
                left,
                right,
            });
        }
    }
    best
}

/// LightGBM's defaults for categorical splits: a category needs this many rows (estimated
/// from its hessian) to be ordered among the many-category candidates, and its G / (H + this)
/// orders them (`cat_smooth`); …
const CATEGORY_SMOOTHING: f64 = 10.0;
/// … each candidate set adds at least this many rows to the previous one, and the right side
/// keeps as many (`min_data_per_group`); …
const MIN_ROWS_PER_GROUP: f64 = 100.0;
/// … the gain of a many-category split adds this to the L2 penalty (`cat_l2`); …
const CATEGORY_L2: f64 = 10.0;
/// … at most this many categories go left (`max_cat_threshold`); …
const MAX_CATEGORIES_LEFT: usize = 32;
/// … and with at most this many categories each is tried alone against the rest
/// (`max_cat_to_onehot`).
const ONE_VS_REST_CATEGORIES: usize = 4;

/// The best split of a categorical feature `f` into a set of categories (value bins) that go
/// left and the rest (with missing values) that go right, as LightGBM finds it: with few
/// categories each one against the rest; else the categories with enough rows sorted by their
/// smoothed mean gradient G / (H + smoothing), and prefixes of that order, from either end,
/// tried as the left set. The sort makes the best of the 2^k sets for squared error one of k
/// prefixes (Fisher's grouping); the smoothing, the group size and the extra L2 keep small
/// categories from winning on noise.
fn best_category_set(
    f: usize,
    slots: &[GradPair],
    parent: Sums,
    rules: &SplitRules,
) -> Option<Split> {
    let rows_per_hessian = if parent.h > 0.0 {
        parent.n / parent.h
    } else {
        0.0
    };
    // Rounded, as LightGBM rounds them: 100 rows must not count as 99.999….
    let rows = |p: GradPair| (p.h * rows_per_hessian).round();
    let present: Vec<usize> = (1..slots.len()).filter(|&b| slots[b].h > 0.0).collect();
    if present.len() < 2 {
        return None;
    }
    let one_vs_rest = present.len() <= ONE_VS_REST_CATEGORIES;
    let lambda = rules.lambda + if one_vs_rest { 0.0 } else { CATEGORY_L2 };
    let score = |s: GradPair| s.g * s.g / (s.h + lambda);
    let parent_score = score(GradPair {
        g: parent.g,
        h: parent.h,
    });
    let mut best: Option<(f64, Vec<usize>, GradPair)> = None;
    // The gain of sending `left_bins` (sums `left`) left, kept when it is the best so far.
    let mut consider = |left_bins: &[usize], left: GradPair| {
        let right = GradPair {
            g: parent.g - left.g,
            h: parent.h - left.h,
        };
        let valid = rows(left) >= rules.min_rows
            && parent.n - rows(left) >= rules.min_rows
            && left.h >= rules.min_hessian
            && right.h >= rules.min_hessian;
        let gain = score(left) + score(right) - parent_score;
        if valid && gain > rules.min_gain && best.as_ref().is_none_or(|(g, ..)| gain > *g) {
            best = Some((gain, left_bins.to_vec(), left));
        }
    };
    if one_vs_rest {
        for &b in &present {
            consider(&[b], slots[b]);
        }
    } else {
        let mut ordered: Vec<usize> = present
            .into_iter()
            .filter(|&b| rows(slots[b]) >= CATEGORY_SMOOTHING)
            .collect();
        let mean = |b: usize| slots[b].g / (slots[b].h + CATEGORY_SMOOTHING);
        ordered.sort_by(|&a, &b| mean(a).total_cmp(&mean(b)).then(a.cmp(&b)));
        let most = MAX_CATEGORIES_LEFT.min(ordered.len().div_ceil(2));
        let reversed: Vec<usize> = ordered.iter().rev().copied().collect();
        for order in [&ordered, &reversed] {
            let (mut left, mut group) = (GradPair::default(), 0.0);
            for taken in 1..=most {
                let slot = slots[order[taken - 1]];
                left.add(slot);
                group += rows(slot);
                if rows(left) < rules.min_rows {
                    continue;
                }
                let right_rows = parent.n - rows(left);
                if right_rows < rules.min_rows || right_rows < MIN_ROWS_PER_GROUP {
                    break;
                }
                if group < MIN_ROWS_PER_GROUP {
                    continue;
                }
                group = 0.0;
                consider(&order[..taken], left);
            }
        }
    }
    let (gain, bins, left) = best?;
    let mut set: BinSet = [0; 4];
    for b in bins {
        set[b / 64] |= 1 << (b % 64);
    }
    let left = Sums {
        g: left.g,
        h: left.h,
        n: rows(left).min(parent.n),
    };
    Some(Split {
        feature: f,
        bin: 0,
        left_bins: Some(set),
        missing_left: false,
        gain,
        left,
        right: parent.minus(left),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Matrix;

    const RULES: SplitRules = SplitRules {
        lambda: 0.0,
        min_rows: 1.0,
        min_hessian: 0.0,
        min_gain: 0.0,
    };

    #[test]
    fn the_split_separating_the_gradients_is_found_and_subtraction_matches_a_build() {
        // Feature 0 is noise; feature 1 separates negative from positive gradients at 2.5.
        let x = Matrix {
            data: vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 2.0, 3.0, f64::NAN, 4.0],
            rows: 5,
            cols: 2,
        };
        let cuts = BinCuts::fit(&x, 255, 1);
        let binned = cuts.apply(&x);
        let layout = Layout::new(&cuts);
        let grads: Vec<GradPair> = [-1.0, -1.0, 1.0, 1.0, 1.0]
            .iter()
            .map(|&g| GradPair { g, h: 1.0 })
            .collect();
        let rows: Vec<u32> = (0..5).collect();
        let active = [true, true];
        let mut hist = layout.empty();
        build(&mut hist, &layout, &binned, (&rows, &grads), &active, false);
        let parent = Sums::of(&rows, &grads);
        let split = best_split(&hist, &layout, parent, (&active, &RULES), false).expect("a split");
        assert_eq!((split.feature, split.bin), (1, 1));
        assert_eq!(cuts.threshold(1, split.bin), 2.5);
        assert!(
            !split.missing_left,
            "the missing row has a positive gradient"
        );
        assert_eq!(split.left.n, 2.0);
        // 2²/2 + 3²/3 − 1²/5
        assert!((split.gain - 4.8).abs() < 1e-12, "{}", split.gain);

        let left_rows = [0u32, 1];
        let left_grads: Vec<GradPair> = left_rows.iter().map(|&r| grads[r as usize]).collect();
        let mut left = layout.empty();
        build(
            &mut left,
            &layout,
            &binned,
            (&left_rows, &left_grads),
            &active,
            true,
        );
        let right_rows = [2u32, 3, 4];
        let right_grads: Vec<GradPair> = right_rows.iter().map(|&r| grads[r as usize]).collect();
        let mut right = layout.empty();
        build(
            &mut right,
            &layout,
            &binned,
            (&right_rows, &right_grads),
            &active,
            true,
        );
        subtract(&mut hist, &left);
        assert_eq!(hist, right);
    }

    #[test]
    fn categories_are_split_into_the_set_that_separates_their_gradients() {
        // Codes 0..6, 200 rows each; codes 1, 3 and 4 have negative gradients, the others
        // positive: no threshold on the codes separates them, one set does.
        let codes: Vec<f64> = (0..1200).map(|r| (r % 6) as f64).collect();
        let x = Matrix {
            data: codes.clone(),
            rows: 1200,
            cols: 1,
        };
        let cuts = BinCuts::fit_with_categories(&x, 255, 1, &[true]);
        let binned = cuts.apply(&x);
        let layout = Layout::new(&cuts);
        let grads: Vec<GradPair> = codes
            .iter()
            .map(|&c| GradPair {
                g: if [1.0, 3.0, 4.0].contains(&c) {
                    -1.0
                } else {
                    1.0
                },
                h: 1.0,
            })
            .collect();
        let rows: Vec<u32> = (0..1200).collect();
        let mut hist = layout.empty();
        build(&mut hist, &layout, &binned, (&rows, &grads), &[true], false);
        let parent = Sums::of(&rows, &grads);
        let split = best_split(&hist, &layout, parent, (&[true], &RULES), false).expect("a split");
        let set = split.left_bins.expect("a set split");
        let left: Vec<usize> = (1..=6).filter(|&b| holds(&set, b)).collect();
        // Bins are codes + 1; either side of the partition may be the left one.
        assert!(left == [2, 4, 5] || left == [1, 3, 6], "{left:?}");
        assert_eq!(split.left.n, 600.0);
        // 600²/(600 + 10) twice: both sides pure, with LightGBM's extra L2 of 10.
        assert!(
            (split.gain - 2.0 * 360_000.0 / 610.0).abs() < 1e-9,
            "{}",
            split.gain
        );
        // As numbers, the best threshold leaves both sides mixed.
        let numeric = BinCuts::fit(&x, 255, 1);
        let layout = Layout::new(&numeric);
        let mut hist = layout.empty();
        build(
            &mut hist,
            &layout,
            &numeric.apply(&x),
            (&rows, &grads),
            &[true],
            false,
        );
        let threshold =
            best_split(&hist, &layout, parent, (&[true], &RULES), false).expect("split");
        assert!(threshold.left_bins.is_none() && threshold.gain < split.gain / 2.0);
    }

    #[test]
    fn rules_refuse_small_children() {
        let x = Matrix {
            data: vec![1.0, 2.0, 3.0, 4.0],
            rows: 4,
            cols: 1,
        };
        let cuts = BinCuts::fit(&x, 255, 1);
        let binned = cuts.apply(&x);
        let layout = Layout::new(&cuts);
        let grads: Vec<GradPair> = [-5.0, 1.0, 1.0, 1.0]
            .iter()
            .map(|&g| GradPair { g, h: 1.0 })
            .collect();
        let rows: Vec<u32> = (0..4).collect();
        let mut hist = layout.empty();
        build(&mut hist, &layout, &binned, (&rows, &grads), &[true], false);
        let parent = Sums::of(&rows, &grads);
        let free = best_split(&hist, &layout, parent, (&[true], &RULES), false).expect("a split");
        assert_eq!(free.bin, 1);
        let two_rows = SplitRules {
            min_rows: 2.0,
            ..RULES
        };
        let split =
            best_split(&hist, &layout, parent, (&[true], &two_rows), false).expect("a split");
        assert_eq!(split.bin, 2);
        assert!(best_split(&hist, &layout, parent, (&[false], &RULES), false).is_none());
    }
}
