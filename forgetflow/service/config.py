"""The `service:` section of params.yaml: when batches run and how often the inbox is read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_s(value) -> float:
    """Seconds in a duration: a number (seconds) or a string like \"7d\", \"12h\", \"30m\", \"45s\", \"2w\"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raw = str(value).strip().lower()
        try:
            seconds = float(raw[:-1]) * _UNITS[raw[-1]] if raw and raw[-1] in _UNITS else float(raw)
        except ValueError:
            raise ValueError(f"{value!r} is not a duration: use seconds or a number with s, m, h, d or w (e.g. 7d)") from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{value!r}: a duration must be positive and finite")
    return seconds



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
    # Two clocks: a provisional champion's forget sets wait in quarantine until a reference verifies
    # them, at most this long ("7d", "12h", "30m" or seconds); a verification is forced once the
    # oldest pending batch is within `verification_margin` of that deadline.
    max_verification_delay: str | float = "7d"
    verification_margin: str | float = "1d"

    @field_validator("max_verification_delay", "verification_margin")
    @classmethod
    def _valid_duration(cls, value):
        duration_s(value)
        return value

    @property
    def max_verification_delay_s(self) -> float:
        return duration_s(self.max_verification_delay)

    @property
    def verification_margin_s(self) -> float:
        return min(duration_s(self.verification_margin), self.max_verification_delay_s)

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
