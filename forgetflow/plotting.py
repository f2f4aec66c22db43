"""One way to get matplotlib for files: the non-interactive Agg backend, imported on demand."""

from __future__ import annotations


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
