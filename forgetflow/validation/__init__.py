"""Forget-set validation with Great Expectations 1.x (suites built in code, ephemeral context).

`validate_request(settings, request_id)` resolves a recorded request against the current dataset
version, runs the request-, forget-set-, safety- and dataset-level suites, records a summary in the
ledger (`validated`, or `rejected` naming the failed expectations) and writes a markdown report
under `<workspace>/reports/validation/`. Great Expectations is imported only when a suite runs.
"""
