"""Prefect flows: they wire tasks together and decide nothing themselves."""
