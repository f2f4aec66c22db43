"""Prefect tasks, one module per pipeline stage. Thin: retries, cache keys, artifacts; the work is a
call into `forgetflow`. Tasks take and return small JSON-able values (paths, IDs, md5s), never
tensors or data frames, so nothing personal lands in Prefect's result storage or database."""
