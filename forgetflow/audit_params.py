"""The `audit:` section of params.yaml: where the ledger head is anchored besides MLflow.

    audit:
      git_anchor: auto         # auto (when the workspace is a Git repository) | off
      anchor_command: null     # e.g. "curl -fsS -X POST --data-binary @- https://notary.example/anchor"

What happens to superseded weights is `unlearning.superseded` (`superseded_policy`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from forgetflow.settings import Settings


class AuditParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    git_anchor: Literal["auto", "off"] = "auto"
    anchor_command: str | None = Field(None, description="shell command that receives each anchor as JSON on stdin (an external notary)")


def audit_params(settings: Settings) -> AuditParams:
    from forgetflow.params import load_params, params_section

    return params_section(load_params(settings.params_path), "audit", AuditParams)


def superseded_policy(settings: Settings) -> str:
    """`unlearning.superseded`: keep | quarantine | delete (weights of versions trained on erased data)."""
    from forgetflow.deletion.policy import unlearning_policy
    from forgetflow.params import load_params

    return unlearning_policy(load_params(settings.params_path)).superseded
