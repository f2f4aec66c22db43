"""The benchmark protocol's grids and selection rules live in `forgetflow.protocol`, so that
`forgetflow calibrate` tunes methods on a user's workspace under exactly the protocol the benchmarks
use (selection on validation only). Re-exported here for the benchmark modules."""

from forgetflow.protocol import grid, select_by_avg_gap, select_misclassify, short_grid, within_time

__all__ = ["grid", "select_by_avg_gap", "select_misclassify", "short_grid", "within_time"]
