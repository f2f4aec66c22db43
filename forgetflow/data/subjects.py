"""Synthetic data subjects for datasets that carry no person IDs.

Rule (documented in the README): shuffle all sample indices with a generator seeded by
`split_seed + 1`, then give consecutive runs of `samples_per_subject` indices one subject each,
named `subj-000000`, `subj-000001`, ... A subject can own samples in every split, as a real
person's photos could; deleting a subject deletes them everywhere. Same inputs, same subjects.
"""

from __future__ import annotations

import numpy as np


def assign_subjects(n_samples: int, samples_per_subject: int, seed: int) -> np.ndarray:
    order = np.random.default_rng(seed + 1).permutation(n_samples)
    subject_of = np.empty(n_samples, dtype=np.int64)
    subject_of[order] = np.arange(n_samples) // samples_per_subject
    width = max(6, len(str(int(subject_of.max(initial=0)))))
    return np.array([f"subj-{s:0{width}d}" for s in subject_of], dtype=object)
