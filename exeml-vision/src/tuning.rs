//! The fine-tuning search: successive halving over fine-tuning configurations ("arms": how many
//! blocks to unfreeze, learning rate, mixing). Every arm trains one epoch, the better half goes
//! on to two, then four…, until one is left, which trains to its end (or early stop). Epochs are
//! the fidelity, so a weak configuration costs one epoch, not a full run; an epoch is only
//! started when the budget can afford it at the arm's measured speed.
//!
//! The schedule is fitted to the budget with the epoch costs it measures: a further arm joins the
//! first rung only while the whole halving would still leave its winner half of its planned epochs
//! (four at most), fewer arms go on at a rung when the budget cannot afford half of them, and the
//! runs that go on are shortened to what the budget affords, so that their learning rate decays to
//! zero by the end instead of being cut off. A long budget runs the whole plan; a short one fewer
//! arms with complete schedules. The converse holds too: when the budget affords more than the plan
//! (a GPU, where an epoch takes seconds, or a long limit), the runs that go on to their end are
//! lengthened, up to a preference's multiple of their planned epochs, with the time the rest of the
//! plan does not need. Time the halving leaves over (its runs stopped early on validation) goes to
//! the arms it stopped, then to those it left out.
//!
//! When the models it returns are to be refitted on every image afterwards (`refit_full`), the
//! schedule counts that too: every run that goes on to its end will be trained again for all
//! its epochs, at [`RefitCost::per_epoch`] times the cost of a search epoch, after a one-off
//! [`RefitCost::setup`] (extracting the validation images' views), so those runs are sized to
//! leave their refit the time it needs (rather than the search taking a fixed share). A run
//! whose refit is then skipped (too little time for both) has the setup's time too.

use crate::backbone::Backbone;
use crate::finetune::{Activations, FineTuneParams, FineTuner, Snapshot};
use crate::head::LinearHead;
use crate::nn::{candle_error, on_workers};
use exeml_core::{Budget, Progress, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What happened to one arm.
#[derive(Debug, Clone)]
pub struct ArmOutcome {
    /// Its configuration.
    pub params: FineTuneParams,
    /// Its best state (none if not a single epoch finished).
    pub best: Option<Snapshot>,
    /// The backbone's first trained block.
    pub first_block: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// `ok`, or why it stopped.
    pub status: String,
}

/// How the halving fits the runs that go on to their end to the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fitting {
    /// A run may be lengthened to at most this multiple of its planned epochs when the budget
    /// affords it (1: never; an unlimited budget never does).
    pub stretch: usize,
    /// What refitting such a run afterwards costs ([`RefitCost::NONE`] when nothing is).
    pub refit: RefitCost,
}

/// What refitting a run on every image after the search costs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RefitCost {
    /// An epoch of the refit, as a multiple of the run's search epoch (its rows over the
    /// search's, e.g. 1.25 with a fifth of the images held out for validation); 0 when nothing
    /// is refitted.
    pub per_epoch: f64,
    /// Seconds spent once before any refit, however many runs are refitted: extracting the
    /// validation images' augmented views to train on.
    pub setup: f64,
}

impl RefitCost {
    /// Nothing is refitted.
    pub const NONE: Self = Self {
        per_epoch: 0.0,
        setup: 0.0,
    };

    /// Whether anything is refitted.
    fn is_none(&self) -> bool {
        self.per_epoch <= 0.0
    }

    /// Seconds to refit a run of `epochs` epochs of `epoch_seconds` each (none without epochs).
    fn seconds(&self, epoch_seconds: f64, epochs: usize) -> f64 {
        if self.is_none() || epochs == 0 {
            0.0
        } else {
            self.setup + epoch_seconds * self.per_epoch * epochs as f64
        }
    }
}

/// Activations entering the first trained block of each arm, computed once per block.
struct Cache<'a> {
    backbone: &'a Backbone,
    split: usize,
    train: &'a Activations,
    valid: &'a Activations,
    at: BTreeMap<usize, (Activations, Activations)>,
}

impl Cache<'_> {
    fn ensure(&mut self, first: usize) -> Result<()> {
        if first != self.split && !self.at.contains_key(&first) {
            let t = self.train.advance(self.backbone, self.split, first)?;
            let v = self.valid.advance(self.backbone, self.split, first)?;
            self.at.insert(first, (t, v));
        }
        Ok(())
    }

    fn get(&self, first: usize) -> (&Activations, &Activations) {
        match self.at.get(&first) {
            Some((t, v)) => (t, v),
            None => (self.train, self.valid),
        }
    }
}

/// Run successive halving over `arms`, starting from `backbone` and the linear-probe `head`;
/// `train`/`valid` are the activations entering block `split` (arms unfreezing fewer blocks
/// start deeper; arms unfreezing more are left out). `fitting` says how far a run that goes on
/// to its end may be lengthened and what its refit will cost. Returns every arm's outcome.
#[allow(clippy::too_many_arguments)]
pub fn successive_halving(
    backbone: &Backbone,
    head: &LinearHead,
    arms: &[FineTuneParams],
    split: usize,
    train: &Activations,
    valid: &Activations,
    classes: usize,
    seed: u64,
    fitting: Fitting,
    budget: &Budget,
    progress: &dyn Progress,
) -> Result<Vec<ArmOutcome>> {
    let blocks = backbone.blocks().len();
    let mut cache = Cache {
        backbone,
        split,
        train,
        valid,
        at: BTreeMap::new(),
    };
    let arms: Vec<FineTuneParams> = arms
        .iter()
        .filter(|a| (1..=blocks.saturating_sub(split)).contains(&a.unfrozen_blocks))
        .copied()
        .collect();
    for arm in &arms {
        cache.ensure(blocks - arm.unfrozen_blocks)?;
    }
    let mut runs: Vec<Run<'_>> = Vec::new();
    for (i, arm) in arms.iter().enumerate() {
        let (t, v) = cache.get(blocks - arm.unfrozen_blocks);
        let tuner = FineTuner::new(backbone, head, *arm, t, v, classes, seed ^ i as u64)?;
        runs.push(Run::new(tuner));
    }
    // Rung 1, arm by arm: a further arm joins only while the whole halving, with the epoch
    // costs measured so far, still leaves its winner `winner_floor` epochs.
    let costs_of_blocks = if runs.len() > 1 {
        BlockCosts::measure(backbone, split, train)?
    } else {
        BlockCosts(Vec::new()) // no other arm to estimate
    };
    let seconds_at_start = budget.remaining().as_secs_f64();
    let mut alive: Vec<usize> = Vec::new();
    let mut out_of_budget = false;
    for i in 0..runs.len() {
        if !alive.is_empty() {
            best_first(&runs, &mut alive);
            let mut costs: Vec<ArmCost> = alive.iter().map(|&j| runs[j].cost()).collect();
            let timed: Vec<(usize, f64)> = alive
                .iter()
                .filter_map(|&j| {
                    let seconds = runs[j].tuner.seconds_per_epoch()?;
                    Some((arms[j].unfrozen_blocks, seconds))
                })
                .collect();
            costs.push(ArmCost {
                seconds: estimated_epoch_seconds(&timed, arms[i].unfrozen_blocks, &costs_of_blocks),
                max_epochs: runs[i].tuner.params().max_epochs,
            });
            let floor = winner_floor(&costs, 0);
            if halving_seconds(&costs, 0, 1, floor, fitting.refit) > seconds_at_start {
                runs[i].status = format!("{LEFT_OUT_OF_HALVING} over {} arm(s)", alive.len());
                continue;
            }
        }
        alive.push(i);
        if !runs[i].train(Some(1), budget, progress)? {
            out_of_budget = true;
            break;
        }
    }
    let mut rung_epochs = 1usize;
    while alive.len() > 1 && !out_of_budget {
        // Keep the better half (by validation score, then loss), fewer if the budget cannot
        // afford half of them, and shorten their runs to what it affords.
        best_first(&runs, &mut alive);
        let half = alive.len().div_ceil(2);
        let costs: Vec<ArmCost> = alive[..half].iter().map(|&i| runs[i].cost()).collect();
        let (keep, cap) = fit_to_budget(
            &costs,
            rung_epochs,
            rung_epochs * 2,
            budget.remaining().as_secs_f64(),
            fitting.refit,
        );
        for (n, &i) in alive[keep..].iter().enumerate() {
            runs[i].status = format!(
                "stopped after {rung_epochs} epoch(s): successive halving{}",
                if keep + n < half {
                    ", to fit the budget"
                } else {
                    ""
                }
            );
        }
        alive.truncate(keep);
        for &i in &alive {
            runs[i].tuner.shorten(cap);
        }
        rung_epochs *= 2;
        if alive.len() == 1 {
            break;
        }
        for &i in &alive {
            if !runs[i].train(Some(rung_epochs), budget, progress)? {
                out_of_budget = true;
                break;
            }
        }
    }
    if let ([only], false) = (&alive[..], out_of_budget) {
        // A single arm (the last, or the only one admitted) trains to its end, lengthened
        // with what resuming the halted arms (below) leaves over.
        let i = *only;
        let halted = halted_best_first(&runs);
        let others = halted.iter().copied().filter(|&j| j != i);
        let room = Room {
            reserve: resume_reserve(&runs, others, fitting.refit),
            held: 0.0,
            may_skip_refit: true,
        };
        fit_run_to_budget(&mut runs[i], budget, room, fitting);
        out_of_budget = !runs[i].train(None, budget, progress)?;
    }
    if !out_of_budget {
        out_of_budget = resume_halted(&mut runs, fitting, budget, progress)?;
    }
    if !out_of_budget {
        out_of_budget = start_left_out(&mut runs, &costs_of_blocks, fitting, budget, progress)?;
    }
    Ok(runs
        .into_iter()
        .map(
            |Run {
                 tuner,
                 seconds,
                 status,
                 lengthened_from,
             }| {
                // Arms the budget did not reach, or stopped between rungs, say so.
                let status = match (
                    out_of_budget && status == "ok" && !tuner.finished(),
                    tuner.epochs(),
                ) {
                    (false, _) => status,
                    (true, 0) => format!("skipped: {}", budget.stop_reason()),
                    (true, _) => format!("stopped: {}", budget.stop_reason()),
                };
                let status = match lengthened_from {
                    None => status,
                    Some(from) => {
                        let lengthened = format!(
                            "lengthened from {from} to {} epochs with the budget left",
                            tuner.params().max_epochs
                        );
                        if status == "ok" {
                            lengthened
                        } else {
                            format!("{status}; {lengthened}")
                        }
                    }
                };
                ArmOutcome {
                    params: *tuner.params(),
                    best: tuner.best().cloned(),
                    first_block: tuner.first_block(),
                    epochs: tuner.epochs(),
                    seconds,
                    status,
                }
            },
        )
        .collect())
}

/// With budget left after the halving (the last arm early-stopped or finished), train the arms
/// it stopped on to their own end, best first, while the budget affords their next epoch.
/// Halving judges every arm after one epoch, which favours arms that learn fast over those that
/// learn better (mixup, cutmix, low learning rates): Hyperband's reason for its later brackets,
/// here paid for only by time that would otherwise be returned unused. An arm is lengthened
/// (within `fitting`) with what the arms after it, and the refits, do not need. With refits to
/// come, an arm is resumed only when it affords an epoch and then either its own refit or that
/// of the best run that has finished (likely the model returned): only the better of the two
/// is refitted, so the larger refit is kept, not both. Returns true when the budget ran out.
fn resume_halted(
    runs: &mut [Run<'_>],
    fitting: Fitting,
    budget: &Budget,
    progress: &dyn Progress,
) -> Result<bool> {
    let halted = halted_best_first(runs);
    for (n, &i) in halted.iter().enumerate() {
        let room = Room {
            reserve: resume_reserve(runs, halted[n + 1..].iter().copied(), fitting.refit),
            held: refit_seconds_of_best_finished(runs, fitting.refit),
            may_skip_refit: false,
        };
        let run = &mut runs[i];
        if !fit_run_to_budget(run, budget, room, fitting) {
            continue; // its refit would not fit: left as halving stopped it
        }
        let (before, halted_status) = (run.tuner.epochs(), run.status.clone());
        let completed = run.train(None, budget, progress)?;
        run.status = if run.tuner.epochs() == before {
            halted_status
        } else {
            format!(
                "resumed after {before} epoch(s) of successive halving, with the budget left{}",
                if completed {
                    String::new()
                } else {
                    format!("; stopped: {}", budget.stop_reason())
                }
            )
        };
        if !completed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How the status of an arm that rung 1 left out begins.
const LEFT_OUT_OF_HALVING: &str = "skipped: the budget affords successive halving";

/// The fewest epochs an arm rung 1 left out is started for after the halving (see
/// [`start_left_out`]): a run of two epochs still warms up and decays its learning rate.
const LATE_ARM_MIN_EPOCHS: usize = 2;

/// With budget left after the halving and the resumed arms, start the arms rung 1 left out, in
/// the plan's order, each fitted to the time left at its estimated epoch cost (its refit, or
/// that of the best run that has finished, kept) when that affords at least
/// [`LATE_ARM_MIN_EPOCHS`]. The halving admits arms by what the whole plan would cost, so when
/// its runs stop early on validation (or an estimate was high), time is left that no arm
/// would otherwise use: at 2 minutes an `accuracy_first` run returned at 61 s after its only
/// arm early-stopped, with the arm that won the same plan's other runs never tried. Returns
/// true when the budget ran out.
fn start_left_out(
    runs: &mut [Run<'_>],
    costs_of_blocks: &BlockCosts,
    fitting: Fitting,
    budget: &Budget,
    progress: &dyn Progress,
) -> Result<bool> {
    for i in 0..runs.len() {
        if runs[i].tuner.epochs() > 0 || !runs[i].status.starts_with(LEFT_OUT_OF_HALVING) {
            continue;
        }
        let timed: Vec<(usize, f64)> = runs
            .iter()
            .filter_map(|r| {
                let seconds = r.tuner.seconds_per_epoch()?;
                Some((r.tuner.params().unfrozen_blocks, seconds))
            })
            .collect();
        let blocks = runs[i].tuner.params().unfrozen_blocks;
        let pace = Pace {
            seconds: estimated_epoch_seconds(&timed, blocks, costs_of_blocks),
            refit: fitting.refit,
            held: refit_seconds_of_best_finished(runs, fitting.refit),
        };
        if pace.seconds <= 0.0 {
            continue;
        }
        let remaining = budget.remaining().as_secs_f64().max(0.0) * (1.0 - EPOCH_TIME_SLACK);
        let epochs = pace.affordable(0, remaining);
        if epochs < LATE_ARM_MIN_EPOCHS {
            continue;
        }
        let room = Room {
            reserve: Reserve::default(),
            held: pace.held,
            may_skip_refit: false,
        };
        let run = &mut runs[i];
        run.tuner.shorten(epochs);
        let started = "started with the budget left after successive halving";
        // Fitted to the budget again once its first epoch is timed.
        let completed = run.train(Some(1), budget, progress)?
            && if fit_run_to_budget(run, budget, room, fitting) {
                run.train(None, budget, progress)?
            } else {
                run.status = format!("{started}; stopped after 1 epoch: no time for its refit");
                continue;
            };
        if !completed {
            run.status = format!("{started}; stopped: {}", budget.stop_reason());
            return Ok(true);
        }
        run.status = started.to_string();
    }
    Ok(false)
}

/// Seconds to refit, at the cost of `refit`, the best run that has finished its schedule (for
/// the epochs of its best state); 0 when none has.
fn refit_seconds_of_best_finished(runs: &[Run<'_>], refit: RefitCost) -> f64 {
    let mut finished: Vec<usize> = (0..runs.len())
        .filter(|&i| runs[i].tuner.finished() && runs[i].tuner.best().is_some())
        .collect();
    best_first(runs, &mut finished);
    finished.first().map_or(0.0, |&i| {
        let tuner = &runs[i].tuner;
        let epochs = tuner.best().map_or(0, |b| b.epoch);
        refit.seconds(tuner.seconds_per_epoch().unwrap_or(0.0), epochs)
    })
}

/// The arms halving stopped before their end that have a state to resume from, best first.
fn halted_best_first(runs: &[Run<'_>]) -> Vec<usize> {
    let mut halted: Vec<usize> = (0..runs.len())
        .filter(|&i| !runs[i].tuner.finished() && runs[i].tuner.best().is_some())
        .collect();
    best_first(runs, &mut halted);
    halted
}

/// What the arms `indices` of `runs` need to be resumed after a run (see [`Reserve::of`]).
fn resume_reserve(
    runs: &[Run<'_>],
    indices: impl Iterator<Item = usize>,
    refit: RefitCost,
) -> Reserve {
    Reserve::of(
        indices.map(|i| {
            let tuner = &runs[i].tuner;
            let seconds = tuner.seconds_per_epoch().unwrap_or(0.0);
            (seconds, tuner.epochs(), tuner.params().max_epochs)
        }),
        refit,
    )
}

/// One arm under search: its tuner, the seconds it has taken, its status, and the planned
/// epochs it had when it was lengthened (if it was).
struct Run<'a> {
    tuner: FineTuner<'a>,
    seconds: f64,
    status: String,
    lengthened_from: Option<usize>,
}

impl<'a> Run<'a> {
    /// An arm not yet trained, status `ok`.
    fn new(tuner: FineTuner<'a>) -> Self {
        Run {
            tuner,
            seconds: 0.0,
            status: "ok".to_string(),
            lengthened_from: None,
        }
    }

    /// Train until the arm finishes or has `until` epochs (`None`: to its end). Returns false
    /// when the budget stopped it.
    fn train(
        &mut self,
        until: Option<usize>,
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<bool> {
        let tuner = &mut self.tuner;
        while !tuner.finished() && until.is_none_or(|n| tuner.epochs() < n) {
            // An epoch costs what the last one did; an arm's first is estimated from its size
            // relative to the others (or allowed once while nothing else is known).
            let estimate = tuner.seconds_per_epoch().unwrap_or(0.0);
            if budget.exhausted() || !budget.allows(Duration::from_secs_f64(estimate)) {
                self.status = format!("stopped: {}", budget.stop_reason());
                return Ok(false);
            }
            progress.phase(&format!(
                "fine-tuning the last {}: epoch {}",
                tuner.params().short_description(),
                tuner.epochs() + 1
            ));
            let t0 = Instant::now();
            let completed = tuner.epoch(budget)?;
            self.seconds += t0.elapsed().as_secs_f64();
            progress.fraction(budget.fraction_used());
            if !completed {
                self.status = format!("stopped: {}", budget.stop_reason());
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The arm's measured cost, as the schedule sees it.
    fn cost(&self) -> ArmCost {
        ArmCost {
            seconds: self.tuner.seconds_per_epoch().unwrap_or(0.0),
            // An arm that stopped early trains no further.
            max_epochs: if self.tuner.finished() {
                self.tuner.epochs()
            } else {
                self.tuner.params().max_epochs
            },
        }
    }
}

/// The share of the time left that fitting a run to the budget does not plan on: epochs vary
/// by a few percent on a busy CPU, and a plan fitted to the last second is stopped before its
/// last epoch, its learning rate not annealed (at 2 minutes, 2 of 3 planned epochs: 0.855 on
/// the benchmark, where a 2-epoch plan run to its end tested 0.861).
const EPOCH_TIME_SLACK: f64 = 0.05;

/// Seconds the halted arms still to be resumed need: to train to their end, and the largest of
/// their refits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Reserve {
    training: f64,
    refit: f64,
}

impl Reserve {
    /// For arms given as (seconds an epoch, epochs done, epochs planned): each trained to the
    /// end of its plan, and the largest refit among them, for all its planned epochs at the
    /// cost of `refit`. Only the run returned is sure to be refitted (an ensemble's other
    /// members are as far as the time left affords), so one refit is kept for, not one per arm.
    fn of(arms: impl Iterator<Item = (f64, usize, usize)>, refit: RefitCost) -> Self {
        arms.fold(Self::default(), |reserve, (seconds, done, planned)| Self {
            training: reserve.training + seconds * planned.saturating_sub(done) as f64,
            refit: reserve.refit.max(refit.seconds(seconds, planned)),
        })
    }
}

/// What a run fitted to the budget leaves to others.
#[derive(Debug, Clone, Copy)]
struct Room {
    /// What the runs after it need: it is lengthened only with the time beyond their training
    /// and the largest of its own refit, `held` and theirs.
    reserve: Reserve,
    /// Seconds kept for the refit of the best run that has finished, made instead of the
    /// run's own should that one stay the better: the run needs the larger of the two.
    held: f64,
    /// Whether the run may take the time its refit needs when the budget cannot afford half of
    /// its plan and the refit (the run the halving goes on with), or is then not resumed.
    may_skip_refit: bool,
}

/// Fit the rest of `run` to the budget left at its measured speed: shorten it to the epochs
/// that time affords when it affords at least one more (otherwise the budget stops the run with
/// its plan unchanged); or, when the time beyond the training in `room.reserve` affords more
/// than the run's plan, lengthen it (see [`lengthened_epochs`]). The time afforded leaves the
/// run's refit what it needs, or `room.held` should another run be refitted instead (see
/// [`Pace::affordable`], [`shortened_epochs`]); lengthened, it leaves the reserve's refit
/// instead when that is the larger. Returns false when the run may not skip its refit and
/// cannot afford another epoch with it.
fn fit_run_to_budget(run: &mut Run<'_>, budget: &Budget, room: Room, fitting: Fitting) -> bool {
    let Some(seconds) = run.tuner.seconds_per_epoch().filter(|&s| s > 0.0) else {
        return true;
    };
    let remaining = budget.remaining().as_secs_f64().max(0.0) * (1.0 - EPOCH_TIME_SLACK);
    let (done, planned) = (run.tuner.epochs(), run.tuner.params().max_epochs);
    let pace = Pace {
        seconds,
        refit: fitting.refit,
        held: room.held,
    };
    if pace.affordable(done, remaining) < planned {
        let epochs = shortened_epochs(done, planned, remaining, pace, room.may_skip_refit);
        if let Some(epochs) = epochs {
            run.tuner.shorten(epochs);
        }
        return epochs.is_some() || room.may_skip_refit || pace.refit.is_none();
    }
    if budget.is_unlimited() || run.tuner.finished() {
        return true;
    }
    // Lengthened, the run still leaves the later arms their training and the largest refit
    // (only one is sure to be made): held beside its own, like the finished run's.
    let spare = (remaining - room.reserve.training).max(0.0);
    let pace = Pace {
        held: pace.held.max(room.reserve.refit),
        ..pace
    };
    let longer = lengthened_epochs(done, planned, spare, pace, fitting.stretch);
    if longer > planned {
        run.lengthened_from.get_or_insert(planned);
        run.tuner.lengthen(longer);
    }
    true
}

/// What the epochs of a run cost: `seconds` each, and then `refit` to refit them afterwards;
/// `held` seconds are kept for the refit of another run (the best that has finished) should
/// that one be refitted instead.
#[derive(Debug, Clone, Copy)]
struct Pace {
    seconds: f64,
    refit: RefitCost,
    held: f64,
}

impl Pace {
    /// The epochs in all a run `done` epochs in can have with `spare` seconds when either it is
    /// refitted afterwards or the other run is, for which `held` seconds stay: only one of the
    /// two refits is made (the better run's), so the run needs time for the larger of the two,
    /// not for both.
    fn affordable(&self, done: usize, spare: f64) -> usize {
        let refitted = affordable_epochs(done, spare, self.seconds, self.refit);
        refitted.min(affordable_epochs(
            done,
            spare - self.held,
            self.seconds,
            RefitCost::NONE,
        ))
    }
}

/// The epochs a run `done` epochs into a plan of `planned` is shortened to when `remaining`
/// seconds at its `pace` cannot afford the plan and its refit: what affords both. When the run
/// `may_skip_refit` and that would leave it less than half of its plan, what affords the run
/// alone (its refit is then skipped and the search's model kept: a much shorter run is worth
/// less than a fifth more images). `None` when that is not at least one more epoch, or the
/// whole plan.
fn shortened_epochs(
    done: usize,
    planned: usize,
    remaining: f64,
    pace: Pace,
    may_skip_refit: bool,
) -> Option<usize> {
    let with_refit = pace.affordable(done, remaining);
    let epochs = if !may_skip_refit || with_refit >= planned.div_ceil(2).max(done + 1) {
        with_refit
    } else {
        affordable_epochs(done, remaining - pace.held, pace.seconds, RefitCost::NONE)
    };
    (epochs > done && epochs < planned).then_some(epochs)
}

/// The epochs in all a run `done` epochs in can have with `spare` seconds at `seconds` an
/// epoch, when they are to be refitted afterwards at the cost of `refit` (never fewer than
/// `done`).
fn affordable_epochs(done: usize, spare: f64, seconds: f64, refit: RefitCost) -> usize {
    let (spare, per_epoch) = if refit.is_none() {
        (spare, 0.0)
    } else {
        (spare - refit.setup, refit.per_epoch)
    };
    let all = (done as f64 + spare.max(0.0) / seconds) / (1.0 + per_epoch);
    (all.floor() as usize).max(done)
}

/// The epochs a run `done` epochs into a plan of `planned` may be lengthened to with `spare`
/// seconds at its `pace`: as many as the time affords (their refit included), at most
/// `stretch` times the plan, and only by a quarter of the plan or more (a few epochs more
/// would barely change its schedule). Otherwise `planned`.
fn lengthened_epochs(done: usize, planned: usize, spare: f64, pace: Pace, stretch: usize) -> usize {
    if pace.seconds <= 0.0 || !spare.is_finite() {
        return planned;
    }
    let affordable = pace.affordable(done, spare);
    let longer = affordable.min(planned.saturating_mul(stretch.max(1)));
    if longer >= planned + planned.div_ceil(4) {
        longer
    } else {
        planned
    }
}

/// An epoch of an arm training the top `blocks` blocks, not yet timed, estimated from the
/// `timed` arms' (blocks, seconds per epoch): one that trains as many blocks costs the same;
/// otherwise each timed arm's epoch scaled by the forward cost of the blocks trained, averaged
/// (a backward costs about twice its forward in every block alike; the head and validation are
/// cheap beside them). Zero while nothing is timed.
fn estimated_epoch_seconds(timed: &[(usize, f64)], blocks: usize, costs: &BlockCosts) -> f64 {
    if let Some(&(_, s)) = timed.iter().find(|(b, _)| *b == blocks) {
        return s;
    }
    let scaled = timed
        .iter()
        .map(|&(b, s)| s * costs.top(blocks) / costs.top(b).max(f64::MIN_POSITIVE))
        .sum::<f64>();
    scaled / timed.len().max(1) as f64
}

/// The forward cost of each block from the search's split on, in seconds for a few rows: what
/// scales one arm's measured epoch to another's. Blocks differ by several times, so a cost per
/// block would misjudge arms of different depths: for MobileNetV2 at 224 px on the CPU, the
/// whole network's epoch measured 6.8× that of the top five blocks (183 s against 27 s), its
/// forward passes timed here 6.2–6.6×, and five times the top blocks' cost per block 3.8×.
#[derive(Debug, Clone, PartialEq)]
struct BlockCosts(Vec<f64>);

impl BlockCosts {
    /// Rows timed: enough to weigh blocks against each other, few enough to cost nothing.
    const ROWS: usize = 8;
    /// Passes timed; each block keeps its fastest, which leaves out the first pass's page
    /// faults and cold caches.
    const PASSES: usize = 3;

    /// Time each block of `backbone` from `split` on over the first rows of `train`. Without
    /// rows every block costs 1.
    fn measure(backbone: &Backbone, split: usize, train: &Activations) -> Result<Self> {
        let blocks = &backbone.blocks()[split.min(backbone.blocks().len())..];
        if train.is_empty() {
            return Ok(BlockCosts(vec![1.0; blocks.len()]));
        }
        let rows = Self::ROWS.min(train.len());
        let input = train.x.narrow(0, 0, rows).map_err(candle_error)?;
        // Timed on the pool's workers, where training runs them.
        on_workers(|| {
            let mut seconds = vec![f64::INFINITY; blocks.len()];
            for _pass in 0..Self::PASSES {
                let mut y = input.clone();
                for (cost, block) in seconds.iter_mut().zip(blocks) {
                    let t0 = Instant::now();
                    y = block.forward(&y)?;
                    y.device().synchronize()?;
                    *cost = cost.min(t0.elapsed().as_secs_f64());
                }
            }
            Ok(BlockCosts(seconds))
        })
        .map_err(candle_error)
    }

    /// The cost of the top `blocks` blocks (all of them when there are fewer).
    fn top(&self, blocks: usize) -> f64 {
        self.0.iter().rev().take(blocks).sum()
    }
}

/// One arm as the schedule sees it: seconds per epoch and planned epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ArmCost {
    seconds: f64,
    max_epochs: usize,
}

/// Seconds the rest of a successive halving takes. `arms` go on, best first, each having trained
/// `done` epochs and none beyond `cap`: the next rung trains them to `next` epochs, the better
/// half then goes on to twice that, and so on until the last arm trains to its end, and is then
/// refitted for all its epochs at the cost of `refit`. (Which arms survive is not known in
/// advance: the current order stands in for it.)
fn halving_seconds(
    arms: &[ArmCost],
    done: usize,
    next: usize,
    cap: usize,
    refit: RefitCost,
) -> f64 {
    let (mut alive, mut done, mut next) = (arms.len(), done, next);
    let mut total = 0.0;
    while alive > 0 {
        let last = alive == 1;
        for arm in &arms[..alive] {
            let end = arm.max_epochs.min(cap);
            let target = if last { end } else { next.min(end) };
            total += arm.seconds * target.saturating_sub(done) as f64;
            if last {
                total += refit.seconds(arm.seconds, target);
            }
        }
        if last {
            break;
        }
        (alive, done, next) = (alive.div_ceil(2), next, next * 2);
    }
    total
}

/// The most epochs [`winner_floor`] asks for, whatever the plan: a run of four epochs already
/// warms up, trains and decays its learning rate, and a floor that grows with the plan made a
/// longer plan try fewer arms at the same budget. At 2 minutes on Fashion-MNIST (this 2-core
/// CPU, seeds 1–3) `accuracy_first`'s 15-epoch arms (a floor of 8) admitted one arm to the
/// first rung where `balance`'s 8-epoch arms (a floor of 4) admitted two, and the second (5
/// blocks) won two of `balance`'s three runs: 0.866–0.877 against 0.876–0.881.
const WINNER_FLOOR_CAP: usize = 4;

/// The fewest epochs the halving's winner must be left to train for another arm to be worth
/// its place: half of the planned epochs, at most [`WINNER_FLOOR_CAP`], and more than the
/// `done` ones.
fn winner_floor(arms: &[ArmCost], done: usize) -> usize {
    let planned = arms.iter().map(|a| a.max_epochs).max().unwrap_or(0);
    planned.div_ceil(2).min(WINNER_FLOOR_CAP).max(done + 1)
}

/// How the rest of a halving fits `seconds`: how many of `arms` (best first, each `done`
/// epochs in) go on to the next rung, which trains them to `next` epochs, and the epoch cap of
/// their runs. Arms are kept while the winner can still train at least [`winner_floor`]
/// epochs; the cap is the largest that fits (the winner's refit at `refit` included). When
/// nothing fits, the best arm goes on alone.
fn fit_to_budget(
    arms: &[ArmCost],
    done: usize,
    next: usize,
    seconds: f64,
    refit: RefitCost,
) -> (usize, usize) {
    let planned = arms.iter().map(|a| a.max_epochs).max().unwrap_or(0);
    if planned <= done {
        // Every arm has finished: the halving only ranks them.
        return (arms.len(), planned);
    }
    for keep in (1..=arms.len()).rev() {
        let lowest = if keep > 1 {
            winner_floor(&arms[..keep], done)
        } else {
            done + 1
        };
        for cap in (lowest..=planned).rev() {
            if halving_seconds(&arms[..keep], done, next, cap, refit) <= seconds {
                return (keep, cap);
            }
        }
    }
    (1, done + 1)
}

/// Sort the arms `indices` of `runs` best first (see [`rank`]).
fn best_first(runs: &[Run<'_>], indices: &mut [usize]) {
    indices.sort_by(|&a, &b| rank(runs[b].tuner.best()).total_cmp(&rank(runs[a].tuner.best())));
}

/// A single number ordering snapshots: score first, validation loss breaking ties.
pub fn rank(best: Option<&Snapshot>) -> f64 {
    best.map_or(f64::NEG_INFINITY, |s| s.score * 1e6 - s.loss.min(1e5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::{toy, Mixing};

    /// Refitted at `per_epoch` times a search epoch's cost, without setup.
    fn refit(per_epoch: f64) -> RefitCost {
        RefitCost {
            per_epoch,
            setup: 0.0,
        }
    }

    /// One second an epoch, refitted at `per_epoch` times that, `held` seconds kept for
    /// another's.
    fn pace(per_epoch: f64, held: f64) -> Pace {
        Pace {
            seconds: 1.0,
            refit: refit(per_epoch),
            held,
        }
    }

    fn arms(seconds: &[f64], max_epochs: usize) -> Vec<ArmCost> {
        seconds
            .iter()
            .map(|&seconds| ArmCost {
                seconds,
                max_epochs,
            })
            .collect()
    }

    #[test]
    fn the_cost_of_a_halving_counts_every_rung_and_the_winners_run_to_its_end() {
        // 4 arms × 1 epoch, 2 × 1 more, then the winner 6 more: 12 epochs of 1 s.
        assert_eq!(
            halving_seconds(&arms(&[1.0; 4], 8), 0, 1, usize::MAX, RefitCost::NONE),
            12.0
        );
        // Capped at 4 epochs, the winner trains 2 more after the second rung.
        assert_eq!(
            halving_seconds(&arms(&[1.0; 4], 8), 0, 1, 4, RefitCost::NONE),
            8.0
        );
        // The order stands for who survives: the first arm pays for the last rung.
        assert_eq!(
            halving_seconds(&arms(&[2.0, 1.0], 3), 0, 1, 9, RefitCost::NONE),
            2.0 + 1.0 + 4.0
        );
        assert_eq!(halving_seconds(&[], 0, 1, 9, RefitCost::NONE), 0.0);
    }

    #[test]
    fn the_rest_of_a_halving_is_fitted_to_the_seconds_left() {
        // Two survivors, one epoch in, 8 planned: the full rest costs 2 + 6 = 8 s.
        let two = arms(&[1.0, 1.0], 8);
        assert_eq!(
            fit_to_budget(&two, 1, 2, 8.0, RefitCost::NONE),
            (2, 8),
            "everything fits"
        );
        // Both go on while the winner gets at least half its 8 epochs: a cap of 5 costs 5 s.
        assert_eq!(fit_to_budget(&two, 1, 2, 5.5, RefitCost::NONE), (2, 5));
        // Below that, the better arm goes on alone with what is left (3 more epochs).
        assert_eq!(fit_to_budget(&two, 1, 2, 3.0, RefitCost::NONE), (1, 4));
        // Nothing fits: the better arm tries one more epoch (the budget then stops it).
        assert_eq!(fit_to_budget(&two, 1, 2, 0.5, RefitCost::NONE), (1, 2));
        // Arms that have all finished are only ranked.
        assert_eq!(
            fit_to_budget(&arms(&[1.0; 3], 2), 2, 4, 0.0, RefitCost::NONE),
            (3, 2)
        );
        assert_eq!(winner_floor(&two, 1), 4);
        assert_eq!(winner_floor(&two, 6), 7);
        // A longer plan asks no more of the winner than four epochs.
        assert_eq!(winner_floor(&arms(&[1.0, 1.0], 15), 1), 4);
        assert_eq!(winner_floor(&arms(&[1.0, 1.0], 5), 0), 3);
    }

    #[test]
    fn a_run_is_lengthened_to_what_the_spare_time_affords_within_the_stretch() {
        // 2 epochs done of 8 at 1 s: 30 spare seconds afford 32 epochs, capped at 4 × 8.
        assert_eq!(lengthened_epochs(2, 8, 30.0, pace(0.0, 0.0), 4), 32);
        assert_eq!(lengthened_epochs(2, 8, 100.0, pace(0.0, 0.0), 4), 32);
        assert_eq!(lengthened_epochs(2, 8, 12.5, pace(0.0, 0.0), 4), 14);
        // Less than a quarter of the plan more, no stretch allowed, or no time: unchanged.
        assert_eq!(lengthened_epochs(2, 8, 7.0, pace(0.0, 0.0), 4), 8);
        assert_eq!(lengthened_epochs(2, 8, 30.0, pace(0.0, 0.0), 1), 8);
        assert_eq!(lengthened_epochs(2, 8, 0.0, pace(0.0, 0.0), 4), 8);
        assert_eq!(lengthened_epochs(2, 8, f64::INFINITY, pace(0.0, 0.0), 4), 8);
    }

    #[test]
    fn a_refit_is_counted_in_the_winners_run_and_in_what_the_budget_affords() {
        // 4 arms × 1 epoch, 2 × 1 more, the winner 6 more (12 s), then its refit: 8 epochs at
        // 1.25 s.
        let four = arms(&[1.0; 4], 8);
        assert_eq!(
            halving_seconds(&four, 0, 1, usize::MAX, refit(1.25)),
            12.0 + 10.0
        );
        // The refit leaves two survivors a cap of 3 epochs in 5.5 s, not 5.
        let two = arms(&[1.0, 1.0], 8);
        assert_eq!(fit_to_budget(&two, 1, 2, 5.5, refit(1.25)), (1, 2));
        assert_eq!(fit_to_budget(&two, 1, 2, 20.0, refit(1.25)), (2, 8));
        // Epochs in all, each refitted at 1.25 times its cost: (2 + 16.0 / 1) / 2.25 = 8.
        assert_eq!(affordable_epochs(2, 16.0, 1.0, refit(1.25)), 8);
        assert_eq!(affordable_epochs(2, 16.0, 1.0, RefitCost::NONE), 18);
        // Never fewer than those done.
        assert_eq!(affordable_epochs(5, 0.0, 1.0, refit(1.25)), 5);
        // Lengthening leaves the refit its time: 30 s afford 32 epochs alone, 14 refitted.
        assert_eq!(lengthened_epochs(2, 8, 30.0, pace(1.25, 0.0), 4), 14);
        assert_eq!(lengthened_epochs(2, 8, 10.0, pace(1.25, 0.0), 4), 8);
        // Shortened to leave the refit its time while the run keeps half of its plan (8 of
        // 10); below that the run takes the time alone (its refit is then skipped).
        assert_eq!(
            shortened_epochs(2, 10, 16.0, pace(1.25, 0.0), true),
            Some(8)
        );
        assert_eq!(shortened_epochs(2, 10, 7.0, pace(1.25, 0.0), true), Some(9));
        assert_eq!(shortened_epochs(2, 10, 7.0, pace(0.0, 0.0), true), Some(9));
        // A run that may not skip its refit (a resumed arm) keeps to what affords both.
        assert_eq!(
            shortened_epochs(2, 10, 7.0, pace(1.25, 0.0), false),
            Some(4)
        );
        assert_eq!(shortened_epochs(2, 10, 3.0, pace(1.25, 0.0), false), None);
        // Not one more epoch, or the whole plan: unchanged.
        assert_eq!(shortened_epochs(2, 10, 0.5, pace(1.25, 0.0), true), None);
        assert_eq!(shortened_epochs(2, 10, 9.0, pace(0.0, 0.0), false), None);
        // Beside another run's refit, a run needs the larger of the two refits, not both: with
        // 12 s held of 30, (2 + 30) / 2.25 = 14 epochs refitted, or 2 + 18 = 20 without; with
        // 25 s held, 2 + 5 = 7.
        assert_eq!(pace(1.25, 12.0).affordable(2, 30.0), 14);
        assert_eq!(pace(1.25, 25.0).affordable(2, 30.0), 7);
        assert_eq!(pace(1.25, 0.0).affordable(2, 30.0), 14);
        assert_eq!(
            shortened_epochs(2, 20, 30.0, pace(1.25, 25.0), false),
            Some(7)
        );
        assert_eq!(lengthened_epochs(2, 8, 30.0, pace(1.25, 12.0), 4), 14);
        assert_eq!(lengthened_epochs(2, 8, 30.0, pace(1.25, 25.0), 4), 8);
    }

    #[test]
    fn the_refits_setup_is_paid_once_and_only_when_a_refit_is_made() {
        let with_setup = RefitCost {
            per_epoch: 1.25,
            setup: 4.5,
        };
        // 8 epochs of 1 s refitted at 1.25 s, after 4.5 s of setup; no epochs, no refit.
        assert_eq!(with_setup.seconds(1.0, 8), 10.0 + 4.5);
        assert_eq!(with_setup.seconds(1.0, 0), 0.0);
        assert_eq!(RefitCost::NONE.seconds(1.0, 8), 0.0);
        // In a halving, only the winner's refit pays it: 12 s, then 10 + 4.5.
        let four = arms(&[1.0; 4], 8);
        assert_eq!(halving_seconds(&four, 0, 1, usize::MAX, with_setup), 26.5);
        // What a run affords with its refit: (2 + (20.5 - 4.5) / 1) / 2.25 = 8 epochs.
        assert_eq!(affordable_epochs(2, 20.5, 1.0, with_setup), 8);
        // A run that skips its refit has the setup's seconds too: 12 s afford 2 + 12 epochs
        // alone (with the refit: (2 + 7.5) / 2.25 = 4, less than half of the 20 planned).
        let pace = Pace {
            seconds: 1.0,
            refit: with_setup,
            held: 0.0,
        };
        assert_eq!(pace.affordable(2, 12.0), 4);
        assert_eq!(shortened_epochs(2, 20, 12.0, pace, true), Some(14));
        assert_eq!(shortened_epochs(2, 20, 12.0, pace, false), Some(4));
        // Arms still to resume keep their largest refit, setup included.
        let reserve = Reserve::of([(2.0, 1, 8)].into_iter(), with_setup);
        assert_eq!(reserve.refit, 2.0 * 1.25 * 8.0 + 4.5);
    }

    #[test]
    fn the_arms_still_to_resume_reserve_their_training_and_their_largest_refit() {
        // 2 s an epoch, 1 of 8 done; 3 s an epoch, 2 of 4 done; refits at 1.25 times.
        let reserve = Reserve::of([(2.0, 1, 8), (3.0, 2, 4)].into_iter(), refit(1.25));
        assert_eq!(
            reserve,
            Reserve {
                training: 2.0 * 7.0 + 3.0 * 2.0,
                refit: 2.0 * 1.25 * 8.0, // not 20 + 15
            }
        );
        assert_eq!(
            Reserve::of(std::iter::empty(), refit(1.25)),
            Reserve::default()
        );
        // A finished arm (or one past its plan) needs no training.
        assert_eq!(
            Reserve::of([(2.0, 9, 8)].into_iter(), RefitCost::NONE).training,
            0.0
        );
    }

    #[test]
    fn with_time_to_spare_the_runs_that_go_on_to_their_end_are_lengthened() {
        let (backbone, head, train, valid) = toy::problem(5);
        let arm = |unfrozen_blocks, learning_rate| FineTuneParams {
            unfrozen_blocks,
            learning_rate,
            max_epochs: 4,
            batch_size: 16,
            patience: 1,
            ..FineTuneParams::default()
        };
        let arms = [arm(2, 1e-2), arm(1, 1e-3)];
        let run = |stretch| {
            successive_halving(
                &backbone,
                &head,
                &arms,
                0,
                &train,
                &valid,
                3,
                0,
                Fitting {
                    stretch,
                    refit: RefitCost::NONE,
                },
                // Epochs of the toy problem take milliseconds: the budget affords any stretch.
                &Budget::new(Duration::from_secs(600)),
                &exeml_core::Silent,
            )
            .expect("search")
        };
        let out = run(3);
        for o in &out {
            // Planned 4 epochs, lengthened to 3 × 4 with the patience in proportion (1 → 3).
            assert!(
                o.status.contains("lengthened from 4 to 12 epochs"),
                "{out:#?}"
            );
            assert_eq!((o.params.max_epochs, o.params.patience), (12, 3), "{o:#?}");
            assert!(o.epochs > 1 && o.epochs <= 12, "{o:#?}");
        }
        assert!(out.iter().any(|o| o.status.starts_with("lengthened")));
        assert!(out.iter().any(|o| o.status.starts_with("resumed after 1")));
        // Without a stretch, the plan is run as given.
        let plain = run(1);
        assert!(plain.iter().all(|o| !o.status.contains("lengthened")));
        assert!(plain.iter().all(|o| o.params.max_epochs == 4));
    }

    #[test]
    fn an_untimed_arm_costs_what_timed_arms_cost_per_unit_of_block_cost() {
        // Eight blocks of equal cost: the cost per trained block.
        let even = BlockCosts(vec![1.0; 8]);
        assert_eq!(estimated_epoch_seconds(&[(5, 60.0)], 5, &even), 60.0);
        assert_eq!(
            estimated_epoch_seconds(&[(2, 20.0), (5, 60.0)], 8, &even),
            88.0
        );
        assert_eq!(estimated_epoch_seconds(&[], 5, &even), 0.0);
        // Early blocks three times as dear as the top two (as at a larger resolution): the
        // whole network costs (3·6 + 2) / 2 = 10 times the top two, not 4 times.
        let uneven = BlockCosts(vec![3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 1.0, 1.0]);
        assert_eq!(estimated_epoch_seconds(&[(2, 20.0)], 8, &uneven), 200.0);
        assert_eq!(estimated_epoch_seconds(&[(8, 200.0)], 2, &uneven), 20.0);
        // Asking for more blocks than were measured costs all of them.
        assert_eq!(uneven.top(100), 20.0);
    }

    #[test]
    fn block_costs_are_measured_for_every_block_from_the_split() {
        let (backbone, _head, train, _valid) = toy::problem(3);
        let blocks = backbone.blocks().len();
        let costs = BlockCosts::measure(&backbone, 0, &train).expect("costs");
        assert_eq!(costs.0.len(), blocks);
        assert!(costs.0.iter().all(|&s| s > 0.0), "{costs:?}");
        let deeper = train.advance(&backbone, 0, 1).expect("advance");
        let costs = BlockCosts::measure(&backbone, 1, &deeper).expect("costs");
        assert_eq!(costs.0.len(), blocks - 1);
    }

    #[test]
    fn arms_left_out_of_the_halving_are_started_when_the_runs_stop_early() {
        let (backbone, head, train, valid) = toy::problem(4);
        // The halving ran one arm, which learnt nothing (learning rate 0) and early-stopped
        // after two epochs; it had left the second out of its first rung.
        let stuck = FineTuneParams {
            unfrozen_blocks: 2,
            learning_rate: 0.0,
            max_epochs: 1_000_000,
            batch_size: 16,
            patience: 0,
            ..FineTuneParams::default()
        };
        let later = FineTuneParams {
            unfrozen_blocks: 1,
            learning_rate: 1e-2,
            max_epochs: 3,
            patience: 3,
            ..stuck
        };
        // `later` tunes the last block alone: it starts from the activations entering it.
        let train_1 = train.advance(&backbone, 0, 1).expect("advance");
        let valid_1 = valid.advance(&backbone, 0, 1).expect("advance");
        let tuner = |params, t, v| FineTuner::new(&backbone, &head, params, t, v, 3, 0);
        let mut runs = vec![
            Run::new(tuner(stuck, &train, &valid).expect("tuner")),
            Run::new(tuner(later, &train_1, &valid_1).expect("tuner")),
        ];
        runs[1].status = format!("{LEFT_OUT_OF_HALVING} over 1 arm(s)");
        let budget = Budget::new(Duration::from_secs(5));
        assert!(runs[0]
            .train(None, &budget, &exeml_core::Silent)
            .expect("train"));
        assert!(runs[0].tuner.epochs() < 10, "the stuck arm early-stopped");
        let costs = BlockCosts::measure(&backbone, 0, &train).expect("block costs");
        let fitting = Fitting {
            stretch: 1,
            refit: RefitCost::NONE,
        };
        let ran_out = start_left_out(&mut runs, &costs, fitting, &budget, &exeml_core::Silent)
            .expect("late arms");
        assert!(!ran_out);
        assert_eq!(
            runs[1].status,
            "started with the budget left after successive halving"
        );
        assert_eq!(runs[1].tuner.epochs(), 3);
        assert!(runs[1].tuner.best().is_some());
    }

    #[test]
    fn halving_keeps_the_better_half_each_rung_then_resumes_the_halted_arms_with_the_budget_left() {
        let (backbone, head, train, valid) = toy::problem(3);
        let arm = |unfrozen_blocks, learning_rate, mixing| FineTuneParams {
            unfrozen_blocks,
            learning_rate,
            mixing,
            max_epochs: 6,
            batch_size: 16,
            patience: 6,
            ..FineTuneParams::default()
        };
        let arms = [
            arm(2, 1e-2, Mixing::None),
            arm(1, 1e-2, Mixing::None),
            arm(2, 1e-5, Mixing::Mixup { alpha: 0.2 }),
            arm(1, 1e-5, Mixing::Cutmix { alpha: 1.0 }),
            // Unfreezes more blocks than the activations allow: left out.
            arm(3, 1e-3, Mixing::None),
        ];
        let out = successive_halving(
            &backbone,
            &head,
            &arms,
            0,
            &train,
            &valid,
            3,
            0,
            // An unlimited budget has no time to fit: nothing is lengthened.
            Fitting {
                stretch: 4,
                refit: RefitCost::NONE,
            },
            &Budget::unlimited(),
            &exeml_core::Silent,
        )
        .expect("search");
        assert_eq!(out.len(), 4, "the 3-block arm is left out");
        // Rung 1: four arms train 1 epoch, two go on to 2 epochs, one finishes all 6. With the
        // budget left, the three arms halving stopped are then resumed to their end.
        let mut resumed_after: Vec<&str> = out
            .iter()
            .filter_map(|o| o.status.strip_prefix("resumed after "))
            .map(|rest| &rest[..1])
            .collect();
        resumed_after.sort_unstable();
        assert_eq!(resumed_after, ["1", "1", "2"], "{out:#?}");
        assert!(out.iter().all(|o| o.epochs == 6), "{out:#?}");
        let winner = out.iter().find(|o| o.status == "ok").expect("winner");
        assert!(
            winner.params.learning_rate > 1e-3,
            "the fast arms win the halving: {out:?}"
        );
        // The one-block arm trained on the activations entering the last block.
        assert!(out.iter().any(|o| o.first_block == 1));
    }
}
