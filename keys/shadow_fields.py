"""What a model's ``shadow:`` and ``samples:`` fields may hold: one rule each, both sides.

The bundler applies these rules to a spec (exit 2, naming the field and its
line), the device to the signed release (exit 3)::

    shadow = valid_shadow({"samples": 500, "min_agreement": 0.97,
                           "max_latency_ratio": 1.5, "when_too_few": "fail"})
    shadow.to_json()        # as signed into the release
    valid_samples({"export": False})    # SamplesPolicy(export=False)

* ``shadow.samples``: how many of the newest device samples (rows of the
  ``.npz`` files in ``ROOT/samples/MODEL/``) both models run on, 1..``MAX_SHADOW_SAMPLES``;
* ``min_agreement``: share of samples on which they agree, 0..1 (classifiers:
  same argmax; regressors: every value within ``atol + rtol * |running|``);
* ``max_latency_ratio``: candidate p95 / running p95 on the same samples, > 0
  (absent: latency is measured, not judged);
* ``when_too_few``: ``fail`` (default) or ``pass`` when fewer samples are there;
* ``atol``/``rtol``: the regressor tolerance (defaults 1e-3 and 1e-2);
* ``compare``: ``argmax`` (classifier), ``close`` (regressor) or ``auto``
  (default: argmax when the model's first output has more than one value per sample).
* ``samples.export``: false forbids ``airlock-agent samples export`` for the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airlock.limits import MAX_SHADOW_SAMPLES
from keys.signed_fields import FieldError, valid_number

__all__ = ["COMPARE", "WHEN_TOO_FEW", "SamplesPolicy", "ShadowSpec", "valid_samples", "valid_shadow"]

WHEN_TOO_FEW = ("fail", "pass")
COMPARE = ("auto", "argmax", "close")
_SHADOW_KEYS = {"samples", "min_agreement", "max_latency_ratio", "when_too_few", "atol", "rtol",
                "compare"}


@dataclass(frozen=True)
class ShadowSpec:
    """The comparison of a candidate with the running model on the device's own samples."""

    samples: int = 500
    min_agreement: float = 0.97
    max_latency_ratio: float | None = None
    when_too_few: str = "fail"
    atol: float = 1e-3
    rtol: float = 1e-2
    compare: str = "auto"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": self.samples, "min_agreement": self.min_agreement,
                               "when_too_few": self.when_too_few, "atol": self.atol,
                               "rtol": self.rtol, "compare": self.compare}
        if self.max_latency_ratio is not None:
            out["max_latency_ratio"] = self.max_latency_ratio
        return out


@dataclass(frozen=True)
class SamplesPolicy:
    """What the device may do with the model's samples: ``export: false`` keeps them on site."""

    export: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"export": self.export}


def _at(key: str, rule: Any, *args: Any, **kw: Any) -> Any:
    try:
        return rule(*args, **kw)
    except FieldError as e:
        raise FieldError(str(e), (key, *e.at)) from None


def valid_shadow(value: object) -> ShadowSpec:
    """``shadow:`` as written (spec) or signed (release); FieldError naming the sub-field."""
    if not isinstance(value, dict):
        raise FieldError("must be a mapping like {samples: 500, min_agreement: 0.97}")
    unknown = sorted(set(value) - _SHADOW_KEYS)
    if unknown:
        raise FieldError(f"unknown field(s) {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(sorted(_SHADOW_KEYS))}")
    samples = value.get("samples", 500)
    if isinstance(samples, bool) or not isinstance(samples, int) \
            or not 1 <= samples <= MAX_SHADOW_SAMPLES:
        raise FieldError(f"must be an integer between 1 and {MAX_SHADOW_SAMPLES}", ("samples",))
    agreement = _at("min_agreement", valid_number, value.get("min_agreement", 0.97))
    if agreement > 1:
        raise FieldError("must be a share between 0 and 1", ("min_agreement",))
    ratio = value.get("max_latency_ratio")
    if ratio is not None:
        ratio = _at("max_latency_ratio", valid_number, ratio, positive=True)
    when = value.get("when_too_few", "fail")
    if when not in WHEN_TOO_FEW:
        raise FieldError("must be fail or pass", ("when_too_few",))
    compare = value.get("compare", "auto")
    if compare not in COMPARE:
        raise FieldError(f"must be one of {', '.join(COMPARE)}", ("compare",))
    return ShadowSpec(samples, agreement, ratio, str(when),
                      _at("atol", valid_number, value.get("atol", 1e-3)),
                      _at("rtol", valid_number, value.get("rtol", 1e-2)), str(compare))


def valid_samples(value: object) -> SamplesPolicy:
    """``samples:``: a mapping with ``export`` (true or false)."""
    if not isinstance(value, dict) or set(value) - {"export"}:
        raise FieldError("must be a mapping like {export: false}")
    export = value.get("export", True)
    if not isinstance(export, bool):
        raise FieldError("must be true or false", ("export",))
    return SamplesPolicy(export)
