"""The ONNX Runtime setup a device's application uses, which health checks must use too.

A release names execution providers and session options per model
(``health.providers``, ``health.provider_fallback``, ``health.session``).
A device whose application runs differently (an NPU board, fewer threads)
says so once, in ``agent.yaml``, and every check on it uses that instead::

    airlock-agent config --providers OpenVINOExecutionProvider,CPUExecutionProvider \\
        --no-provider-fallback --intra-op-threads 2

    runtime = DeviceRuntime.from_config(raw.get("runtime"))   # strict: UsageError (exit 2)
    chosen = runtime.choose(model.health)    # airlock.quality.health.Runtime: providers, fallback, session
    chosen.source                            # "device" or "release"

The device's settings win key by key: providers (and the fallback policy)
from the device when it names them, each session option from the device
when it sets it, the release's otherwise. Values follow the release's own
rules (``keys.evaluation_fields``), so a config a check could not use is
refused when it is written and when it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from airlock.errors import UsageError
from keys.evaluation_fields import SessionOptions, valid_providers, valid_session
from keys.signed_fields import FieldError

if TYPE_CHECKING:  # airlock.quality.health (psutil) is loaded only by commands that check
    from airlock.quality.health import Runtime
    from keys.release import HealthSpec  # python-tuf: not for reading agent.yaml

__all__ = ["DeviceRuntime"]


@dataclass(frozen=True)
class DeviceRuntime:
    providers: tuple[str, ...] | None = None
    provider_fallback: bool | None = None
    session: SessionOptions = field(default_factory=SessionOptions)

    def is_empty(self) -> bool:
        return self == DeviceRuntime()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.providers is not None:
            out["providers"] = list(self.providers)
        if self.provider_fallback is not None:
            out["provider_fallback"] = self.provider_fallback
        if self.session.to_json():
            out["session"] = self.session.to_json()
        return out

    @classmethod
    def from_config(cls, raw: object, where: str = "agent.yaml") -> DeviceRuntime:
        """``runtime:`` of agent.yaml (absent: the releases decide)."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise UsageError(f"{where}: 'runtime' must be a mapping")
        unknown = sorted(set(raw) - {"providers", "provider_fallback", "session"})
        if unknown:
            raise UsageError(f"{where}: 'runtime.{unknown[0]}' is not a setting; expected "
                             "providers, provider_fallback, session")
        fallback = raw.get("provider_fallback")
        if fallback is not None and not isinstance(fallback, bool):
            raise UsageError(f"{where}: 'runtime.provider_fallback' must be true or false")
        try:
            providers = (None if raw.get("providers") is None
                         else valid_providers(raw["providers"]))
        except FieldError as e:
            raise UsageError(f"{where}: '{e.where('runtime.providers')}' {e}") from None
        try:
            session = valid_session(raw.get("session") or {})
        except FieldError as e:
            raise UsageError(f"{where}: '{e.where('runtime.session')}' {e}") from None
        return cls(providers, fallback, session)

    def choose(self, health: HealthSpec) -> Runtime:
        """What a check of a model with ``health`` runs with (``airlock.quality.health.check_model``)."""
        from airlock.quality.health import Runtime

        session = replace(health.session, **self.session.to_json()).to_json()
        fallback = (self.provider_fallback if self.provider_fallback is not None
                    else health.provider_fallback)
        if self.providers is not None:
            return Runtime(self.providers, fallback, session, "device")
        return Runtime(health.providers or ("CPUExecutionProvider",), fallback, session,
                       "release")
