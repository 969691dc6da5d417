"""The shadow check's policy: what the health child is asked, and the verdict on what it measured.

A model whose signed spec carries ``shadow:`` is compared, before the switch,
with the running release's model of the same name on the newest samples the
application dropped on this device (``ROOT/samples/MODEL/``). The comparison
runs in the model's own health child (``shadow_run.py``: the same process, time
and memory limits as the golden check); this side words the verdict::

    ask = ShadowAsk(spec.shadow, running_model=Path(".../vision-5/models/clf/model.onnx"),
                    running_release="vision-5", files=(newest, ...), folder="ROOT/samples/clf")
    job["shadow"] = shadow_job(ask)
    problems, notes = shadow_verdict(ask, result.get("shadow"))
    # ["shadow check: agrees with vision-5 on 81.4% of 500 device samples < min_agreement 97%;
    #   worst disagreements: b-7.npz[12] (running 3, candidate 8), ..."]

With fewer samples than ``shadow.samples`` the verdict says so and follows
``when_too_few`` (``fail``: a problem; ``pass``: a note); the thresholds are
then not applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from airlock.limits import MAX_DRIFT_FILE_BYTES, MAX_SHADOW_DISAGREEMENTS

__all__ = ["ShadowAsk", "ShadowPolicy", "shadow_job", "shadow_verdict", "worst_text"]

#: Disagreements named in a one-line reason (the result holds up to MAX_SHADOW_DISAGREEMENTS).
_NAMED_IN_REASON = 3


class ShadowPolicy(Protocol):
    @property
    def samples(self) -> int: ...
    @property
    def min_agreement(self) -> float: ...
    @property
    def max_latency_ratio(self) -> float | None: ...
    @property
    def when_too_few(self) -> str: ...
    @property
    def atol(self) -> float: ...
    @property
    def rtol(self) -> float: ...
    @property
    def compare(self) -> str: ...


@dataclass(frozen=True)
class ShadowAsk:
    """One shadow comparison: the policy, the running model, the sample files (newest first)."""

    policy: ShadowPolicy
    running_model: Path
    running_release: str
    files: tuple[Path, ...]
    folder: str  # where the samples are, for messages
    enforce: bool = True  # False: a staged challenger; what would fail is only said
    outputs_to: Path | None = None  # write both models' outputs of every sample here (.npz)


def shadow_job(ask: ShadowAsk) -> dict[str, Any]:
    """The ``shadow`` part of the health child's job."""
    p = ask.policy
    return {"running_model": str(ask.running_model.absolute()),
            "files": [str(f.absolute()) for f in ask.files], "samples": p.samples,
            "compare": p.compare, "atol": p.atol, "rtol": p.rtol,
            "max_file_bytes": MAX_DRIFT_FILE_BYTES, "max_named": MAX_SHADOW_DISAGREEMENTS,
            "outputs_to": None if ask.outputs_to is None else str(ask.outputs_to.absolute())}


def worst_text(facts: dict[str, Any], limit: int = _NAMED_IN_REASON) -> str:
    """``b-7.npz[12] (running 3, candidate 8), ...``: the worst disagreements, named."""
    return ", ".join(f"{d['sample']} (running {d['running']}, candidate {d['candidate']})"
                     for d in (facts.get("disagreements") or [])[:limit])


def shadow_verdict(ask: ShadowAsk, facts: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """(problems, notes) of one comparison; ``facts`` gains the verdict's own fields.

    Not enforced (a staged challenger), the problems become notes.
    """
    problems, notes = _verdict(ask, facts)
    if ask.enforce:
        return problems, notes
    return [], [f"not enforced (staged challenger): {p}" for p in problems] + notes


def _verdict(ask: ShadowAsk, facts: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    p = ask.policy
    if facts is None:
        return ["shadow check: the health child measured no comparison"], []
    facts.update(running_release=ask.running_release, min_agreement=p.min_agreement,
                 max_latency_ratio=p.max_latency_ratio, folder=ask.folder)
    have, asked = int(facts.get("samples") or 0), p.samples
    if have < asked:
        text = (f"shadow check: {have} device sample(s) in {ask.folder}, {asked} asked "
                f"(when_too_few: {p.when_too_few})")
        facts["verdict"] = "too few samples: " + ("failed" if p.when_too_few == "fail"
                                                  else "passed")
        return ([text], []) if p.when_too_few == "fail" else ([], [text + "; not compared"])
    problems: list[str] = []
    agreement = float(facts["agreement"])
    shared = (f"on {have} device samples ({facts.get('compare')}), latency ratio "
              f"{_ratio(facts)}")
    if agreement < p.min_agreement:
        problems.append(
            f"shadow check: agrees with {ask.running_release} on {agreement:.1%} of {have} "
            f"device samples < min_agreement {p.min_agreement:.1%} (latency ratio "
            f"{_ratio(facts)}); worst disagreements: {worst_text(facts)}")
    ratio = facts.get("latency_ratio")
    if p.max_latency_ratio is not None and ratio is not None and ratio > p.max_latency_ratio:
        problems.append(
            f"shadow check: p95 latency {facts['candidate_p95_ms']:.3g} ms is {ratio:.2f}x "
            f"{ask.running_release}'s {facts['running_p95_ms']:.3g} ms on the same {have} "
            f"samples > max_latency_ratio {p.max_latency_ratio:g}")
    facts["verdict"] = "failed" if problems else "passed"
    note = (f"shadow check passed: agrees with {ask.running_release} on {agreement:.1%} "
            f"{shared}")
    return problems, [] if problems else [note]


def _ratio(facts: dict[str, Any]) -> str:
    ratio = facts.get("latency_ratio")
    return f"{ratio:.2f}" if isinstance(ratio, int | float) else "unknown"
