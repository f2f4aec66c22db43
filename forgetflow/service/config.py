"""The `service:` section of params.yaml: when batches run and how often the inbox is read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator



class ServiceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_cron: str = Field("0 2 * * *", description="Cron of the periodic batch (default nightly at 02:00).")
    timezone: str = "UTC"
    # Overrides the cron when set: a batch every N seconds (demos and tests; the cron's floor is 1 min).
    batch_interval_s: float | None = Field(None, gt=0)
    inbox_poll_s: float = Field(10.0, gt=0)
    # When set, `forgetflow serve` also runs `forgetflow calibrate` on this cron (e.g. weekly
    # "0 3 * * 0"), so the method ladders follow the champion as batches change it.
    calibration_cron: str | None = None

    @model_validator(mode="after")
    def _valid_schedule(self) -> "ServiceParams":
        # Validated by the schedule class Prefect itself uses, so what passes here also deploys.
        from prefect.client.schemas.schedules import CronSchedule

        for name, cron in (("batch_cron", self.batch_cron), ("calibration_cron", self.calibration_cron)):
            if cron is None:
                continue
            try:
                CronSchedule(cron=cron, timezone=self.timezone)
            except ValidationError as exc:
                reasons = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
                raise ValueError(f"{name} {cron!r} / timezone {self.timezone!r}: {reasons}") from None
        return self


def service_params(params) -> ServiceParams:
    """Validate the `service:` section of a loaded Params (defaults where it is absent)."""
    from forgetflow.params import params_section

    return params_section(params, "service", ServiceParams)
