"""Replay rules that pick the fine-tuned model, and keep an ensemble, over dumped arms.

    python selection_rules.py RUN.json ...   (files written by the dump_arms.patch build,
                                              see selection_rules.sh)

Each file holds every fine-tuning arm's best state of one `exeml train --task image` run: its
probabilities on the validation images the search chose on, and on held-out test images. For
each rule this prints which arms it returns and their test accuracy / log loss, then the same
averaged over 200 bootstrap resamples of the validation rows (what the rule returns when the
validation images are drawn again, the arms held fixed), and the means over all runs.

Rules (the standard error is that of the best validation accuracy, sqrt(p (1 - p) / n)):
- strict: exeml's rule up to 2026-12-06: the arm with the best validation accuracy, log loss
  breaking ties; an ensemble is kept when its validation accuracy is not lower than that arm's.
- ens-halfse: exeml's rule since: the same arm; an ensemble is kept within half a standard error
  of its accuracy.
- halfse / se: the arm with the lowest validation log loss among those within half / one
  standard error of the best accuracy; an ensemble is kept within the same distance.
- loss: log loss alone (an ensemble is kept whenever greedy selection adds a member).
The last line is the single arm with the best test accuracy of each run: what no rule can beat
without an ensemble.
"""

import json
import re
import sys

import numpy as np

# ensemble_limits(Balance) in exeml-vision/src/search.rs: picks, distinct members.
ROUNDS, MAX_MEMBERS = 10, 3
# name: (standard errors an arm may trail the best accuracy by and still be chosen on its lower
# log loss, None = accuracy first; standard errors an ensemble may lose and still be kept)
RULES = {
    "strict": (None, 0.0),
    "ens-halfse": (None, 0.5),
    "halfse": (0.5, 0.5),
    "se": (1.0, 1.0),
    "loss": (float("inf"), float("inf")),
}
BOOTSTRAPS = 200


def score(proba, truth):
    """Accuracy and mean log loss, as exeml's `proba_score` computes them."""
    accuracy = float((proba.argmax(1) == truth).mean())
    p_true = np.clip(proba[np.arange(len(truth)), truth], 1e-7, 1)
    return accuracy, float(-np.log(p_true).mean())


def select(probas, truth, start):
    """exeml's greedy ensemble selection (ensemble.rs), from candidate `start`: pick counts and
    the accuracy of the weighted average."""
    counts = [0] * len(probas)
    counts[start] = 1
    total = probas[start].copy()
    accuracy, loss = score(total, truth)
    for picks in range(1, ROUNDS):
        members = sum(c > 0 for c in counts)
        best = None
        for c, proba in enumerate(probas):
            if counts[c] == 0 and members >= MAX_MEMBERS:
                continue
            a, l = score((total + proba) / (picks + 1), truth)
            if best is None or l < best[2]:
                best = (c, a, l)
        if best is None or best[2] >= loss - 1e-9:
            break
        counts[best[0]] += 1
        total = total + probas[best[0]]
        accuracy, loss = best[1], best[2]
    return counts, accuracy


def unfrozen_blocks(params):
    return int(re.search(r"unfrozen_blocks: (\d+)", params).group(1))


def decide(arms, valid, truth, rule):
    """The weight the rule gives each arm, from the validation probabilities `valid`."""
    scores = [score(p, truth) for p in valid]
    by_accuracy = max(range(len(arms)), key=lambda i: (scores[i][0], -scores[i][1]))
    arm_k, ensemble_k = RULES[rule]
    best = scores[by_accuracy][0]
    standard_error = np.sqrt(best * (1 - best) / len(truth))
    chosen = by_accuracy
    if arm_k is not None:
        within = [i for i in range(len(arms)) if scores[i][0] >= best - arm_k * standard_error - 1e-9]
        chosen = min(within, key=lambda i: scores[i][1])
    tolerance = ensemble_k * standard_error + 1e-9
    weights = np.zeros(len(arms))
    weights[chosen] = 1
    # Ensembles are over the arms that tuned the same blocks, the chosen one first.
    blocks = unfrozen_blocks(arms[chosen]["params"])
    pool = [chosen] + [
        i for i in range(len(arms)) if i != chosen and unfrozen_blocks(arms[i]["params"]) == blocks
    ]
    if len(pool) < 2:
        return weights
    counts, accuracy = select([valid[i] for i in pool], truth, 0)
    kept = sum(c > 0 for c in counts) >= 2 and counts[0] > 0
    if not kept or accuracy < scores[chosen][0] - tolerance:
        return weights
    return np.bincount(pool, weights=np.array(counts) / sum(counts), minlength=len(arms))


def main(paths):
    rng = np.random.default_rng(0)
    as_run = {r: [] for r in RULES}
    resampled = {r: [] for r in RULES}
    oracle = []
    arm_tests = []
    for path in paths:
        d = json.load(open(path))
        arms = d["arms"]
        truth = np.array([l[0] for l in d["valid_labels"]])
        test_truth = np.array([l[0] for l in d["test_labels"]])
        valid = [np.array(a["valid_proba"], dtype=np.float64) for a in arms]
        test = [np.array(a["test_proba"], dtype=np.float64) for a in arms]
        print(f"== {path}: {len(truth)} validation rows, {len(test_truth)} test images")
        for arm, proba in zip(arms, test):
            a, l = score(proba, test_truth)
            params = re.sub(r"\s+", " ", arm["params"])
            blocks, lr = unfrozen_blocks(params), re.search(r"learning_rate: ([\d.e-]+)", params)[1]
            mixing = re.search(r"mixing: (None|\w+ \{ \w+: [\d.]+ \})", params)[1]
            print(
                f"  row {arm['trial']:2d}: {blocks} blocks, lr {lr}, {mixing}, "
                f"epoch {arm['epoch']:2d}: validation {arm['score']:.4f} / {arm['loss']:.4f}, "
                f"test {a:.4f} / {l:.4f}"
            )
        arm_tests.append([score(p, test_truth)[0] for p in test])
        oracle.append(max((score(p, test_truth) for p in test), key=lambda s: s[0]))
        for rule in RULES:
            weights = decide(arms, valid, truth, rule)
            a, l = score(sum(w * p for w, p in zip(weights, test)), test_truth)
            as_run[rule].append((a, l))
            rows = [arms[i]["trial"] for i in range(len(arms)) if weights[i] > 0]
            print(f"  {rule:10s} returns rows {rows}: test {a:.4f} / {l:.4f}")
        for rule in RULES:
            results = []
            for _ in range(BOOTSTRAPS):
                idx = rng.integers(0, len(truth), len(truth))
                weights = decide(arms, [p[idx] for p in valid], truth[idx], rule)
                results.append(score(sum(w * p for w, p in zip(weights, test)), test_truth))
            mean = np.mean(results, axis=0)
            resampled[rule].append(mean)
            print(f"  resampled validation, {rule:10s}: test {mean[0]:.4f} / {mean[1]:.4f}")
    print(f"== means over {len(paths)} runs: as run | over resampled validation sets")
    for rule in RULES:
        a, b = np.mean(as_run[rule], axis=0), np.mean(resampled[rule], axis=0)
        print(f"  {rule:10s}: {a[0]:.4f} / {a[1]:.4f} | {b[0]:.4f} / {b[1]:.4f}")
    a = np.mean(oracle, axis=0)
    print(f"  the arm that tests best, in hindsight: {a[0]:.4f} / {a[1]:.4f}")
    names = " / ".join(RULES)
    print(f"\n| run | each arm's test accuracy | as run: {names} | resampled: {names} |")
    print("| --- | --- | --- | --- |")
    for i, path in enumerate(paths):
        arms = ", ".join(f"{a:.3f}" for a in arm_tests[i])
        run = " / ".join(f"{as_run[r][i][0]:.3f} ({as_run[r][i][1]:.3f})" for r in RULES)
        res = " / ".join(f"{resampled[r][i][0]:.4f} ({resampled[r][i][1]:.3f})" for r in RULES)
        print(f"| {path.rsplit('/', 1)[-1].removesuffix('.json')} | {arms} | {run} | {res} |")


if __name__ == "__main__":
    main(sys.argv[1:])
