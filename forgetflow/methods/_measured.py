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
        "for 16 instances. Last rung of the shipped misclassify/relabel ladders."
    ),
    "svd_projection": (
        "Seed method. Digits class requests: passes the class gate (every alpha config). FMNIST-3k class 2: retain-class "
        "test accuracy 6.6 points under the reference with every config: fails there. Gradient-free, seconds. Second "
        "rung of the shipped classes ladder."
    ),
    "pgu": (
        "Seed method, faithful to the official code. FMNIST-3k random 10 %: the default barely moves the model (forget "
        "accuracy 11 points above the reference, MIA gap -14); lr 0.1 / gamma 0.85 over-forgets and costs 19 points of "
        "retain accuracy; class requests: forget-class accuracy stays 100 %. On digits it passes only where doing "
        "nothing passes. Not a shipped rung; a --method choice and a calibration candidate."
    ),
    "neggrad_plus": (
        "Default under-forgets FMNIST-3k random 10 % (forget +10 points, MIA gap -14). With heldout_stop "
        "(forgetflow's rule) beta 0.9: passed seed 0 (benchmark Avg. Gap 1.66, noise floor 0.64) and seed-3 subjects, "
        "failed seeds 1 and 3 samples on retain accuracy (the ascent costs 3-5 points of a memorised retain set). "
        "Misclassify with flip_to runner_up, beta 0.97: 16 instances all flipped at -1.45 test points."
    ),
    "scrub": "FMNIST-3k random 10 %: the default loses 8.7 points of retain accuracy (its weight decay 0.1 does the forgetting); lr 1e-4 under-forgets.",
    "scrub_rewind": "FMNIST-3k random 10 %: rewinding hits the held-out forget error (13.3 % vs 13.1 %) but the retain accuracy is 8.9 points low (SCRUB's weight decay); third shipped rung.",
    "salun": "FMNIST-3k class requests: the paper default passes the class gate (first shipped rung for classes). Random 10 %: over-forgets (-11.5 retain points).",
    "finetune": "FMNIST-3k random 10 %: under-forgets at lr <= 0.01; lr 0.1 over-forgets (forget -14 points vs the reference).",
    "l1_sparse": "FMNIST-3k random 10 %: under-forgets with every config tried (forget +11 points, MIA gap -14).",
    "random_labels": "FMNIST-3k class request: forget-class accuracy 10 % at the default (the class gate needs <= 1 %).",
}
