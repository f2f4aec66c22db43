"""What the benchmarks measured for each method on this project's models, shown by `forgetflow
methods` beside the paper defaults. A method's paper is no promise that its candidate passes the gate
on a given model; these are the measured limits (BENCHMARKS.md has the tables and commands).
Settings: "FMNIST-3k" is the discriminative Fashion-MNIST setting of the method-ladder benchmark
(3,000-image pool, small CNN width 16, 60 epochs: the original memorises); "FMNIST-1.8k" and
"digits" are the methods benchmark's settings."""

MEASURED: dict[str, str] = {
    "l2ul": (
        "Seed method, faithful to the official code. Uses the forget set only: on digits and FMNIST-1.8k it either flips "
        "nothing or wrecks the model (misclassify 16 on digits: test drop 67 points at the default, nothing flipped at "
        "smaller steps; ~60 s for 16 instances). Kept as a rung and a --method choice; the shipped misclassify/relabel "
        "ladders put neggrad_plus with its stop rule first."
    ),
    "svd_projection": (
        "Seed method. Class requests: passes the class gate on digits (calibration, every config tried) and is the "
        "shipped first rung for classes; gradient-free and about a second on small models."
    ),
    "pgu": (
        "Seed method, faithful to the official code. Barely moves a small model: on FMNIST-1.8k random 10 % its Avg. Gap "
        "(3.96) equals the original's (4.01); on digits it 'passes' only where doing nothing passes. Not a shipped rung; "
        "a --method choice and a calibration candidate."
    ),
    "scrub": "Passes the sample/subject gate on digits at the paper default; over-forgets (MIA gap) with larger lr/msteps.",
    "neggrad_plus": (
        "Passes the sample/subject gate on digits at the default and short configs; with goal misclassify/relabel "
        "(forgetflow's stop rule + retain term) it is the working instance-wise rung."
    ),
    "salun": "Over-forgets at its default on digits samples/subjects (MIA-efficacy gap 22-71 points); passes class requests.",
    "finetune": "Passes the digits sample gate only because doing nothing passes there; does not forget on its own.",
}
