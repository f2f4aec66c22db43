"""What the benchmarks measured for each method on this project's models, shown by `forgetflow
methods` beside the paper defaults. A method's paper is no promise that its candidate passes the
gate on a given model; these are the measured limits (BENCHMARKS.md has the tables and commands).

"FMNIST-3k" is the discriminative setting of the method-ladder benchmark: a 3,000-image Fashion-MNIST
pool, small CNN width 16, 60 epochs, so the original memorises (train 99 %, test 86 %); its gate is
params.yaml's. "digits" is the demo's data. Trials are the calibration's (`forgetflow calibrate`,
selection on validation) unless marked "benchmark" (test split, 2nd retrain as noise floor)."""

MEASURED: dict[str, str] = {
    "l2ul": (
        "Seed method, faithful to the official code; uses the forget set only. FMNIST-3k misclassify 16: test accuracy "
        "-66 points at the paper default, nothing flipped at lr 1e-4; digits misclassify 16: -67 points; about a minute "
        "for 16 instances. Not a shipped rung (it never passed the gate); a --method choice and a calibration candidate."
    ),
    "svd_projection": (
        "Seed method. Digits class requests: passes the class gate (every alpha config). FMNIST-3k class requests "
        "(benchmark, 5 seeds): the paper default loses 4.3-6.6 points of retain-class test accuracy against the "
        "reference and fails; followed by forgetflow's repair step (repair_epochs 1) it passed on every seed measured "
        "(Avg. Gap 0.96-1.64). Gradient-free, seconds. First two rungs of the shipped classes ladder (1, then 3 repair epochs)."
    ),
    "pgu": (
        "Seed method, faithful to the official code. FMNIST-3k random 10 %: the default barely moves the model (forget "
        "accuracy 11 points above the reference, MIA gap -14); lr 0.1 / gamma 0.85 over-forgets and costs 19 points of "
        "retain accuracy; class requests: forget-class accuracy stays 100 %. On digits it passes only where doing "
        "nothing passes. Not a shipped rung; a --method choice and a calibration candidate."
    ),
    "neggrad_plus": (
        "Default under-forgets FMNIST-3k random 10 % (forget +10 points, MIA gap -14). With heldout_stop "
        "(forgetflow's rule) beta 0.9 (benchmark, seeds 0-4): random samples, the shipped ladder (3 repair epochs, then "
        "none, then heldout_stop: confidence) promoted a candidate on 5 of 5 seeds, 3 at its first rung (Avg. Gap "
        "1.6-2.4, 1.5x the noise floor); subjects 2 of 5, both at the first rung (no repair). What still fails is the "
        "confidence MIA (forget set 5-9 points more 'member' than for the reference) and, on one seed in five, a gate "
        "that rejects a second retrain too. Misclassify with flip_to runner_up (beta 0.97, then 0.99), seeds 0-4: "
        "16 instances all flipped within 2 test points on 2 of 5 seeds (drops up to 4.1 elsewhere), 64 on none "
        "(2.25-4.0), 128 at most 52 % flipped."
    ),
    "scrub": "FMNIST-3k random 10 %: the default loses 8.7 points of retain accuracy (its weight decay 0.1 does the forgetting); lr 1e-4 under-forgets.",
    "scrub_rewind": "FMNIST-3k random 10 %: rewinding hits the held-out forget error (13.3 % vs 13.1 %) but the retain accuracy is 8.9 points low (SCRUB's weight decay); third shipped rung.",
    "salun": "FMNIST-3k class requests: the paper default lost 4.7-6.1 retain-class points (and left 23 % of the class on one seed): 0 of 2 seeds; with 2 repair epochs 1 of 3. Third rung of the shipped classes ladder. Random 10 %: over-forgets (-11.5 retain points).",
    "finetune": "FMNIST-3k random 10 %: under-forgets at lr <= 0.01; lr 0.1 over-forgets (forget -14 points vs the reference).",
    "l1_sparse": "FMNIST-3k random 10 %: under-forgets with every config tried (forget +11 points, MIA gap -14).",
    "random_labels": "FMNIST-3k class request: forget-class accuracy 10 % at the default (the class gate needs <= 1 %).",
}
