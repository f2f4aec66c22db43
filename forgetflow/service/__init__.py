"""Running forgetflow as a service: a Prefect server, served deployments (a scheduled batch and an
urgent-request trigger), the inbox watcher, concurrency limits and work-pool deployments.

Decisions live here; `forgetflow serve|status|deploy` (forgetflow/cli/service.py) only wires them up.
"""
