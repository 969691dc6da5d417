"""Signed but unusable: values the real key signed that no device can use; the bundler
refuses to sign the same at build (exit 2).

Each case registers itself in ``tests.hostile.cases.catalogue.CASES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.hostile.cases.catalogue import _resigned, case
from tests.support.kit import Kit

# signed but unusable: validly signed by the real key (an attacker holding it, or a careless
# release manager); the bundler refuses to sign the same at build, with exit 2.


def _model_edit(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["airlock"]["models"][0].update(fields)


@case("signed-text-nul-in-hook", "SIGNED-text", "'airlock.hooks.post_switch' holds a control "
      "character (U+0000)")
def _(kit: Kit) -> bytes:
    # The shell cannot take a NUL: the agent crashed with ValueError (exit 1) after the switch.
    return _resigned(kit, lambda s: s["airlock"]["hooks"].update(post_switch="echo \0 ok"))


@case("signed-text-nul-in-probe", "SIGNED-text", "'airlock.hooks.probe' holds a control character")
def _(kit: Kit) -> bytes:
    # urllib raised InvalidURL (exit 1) after the switch.
    return _resigned(kit, lambda s: s["airlock"]["hooks"].update(probe="http://127.0.0.1:1/\0"))


@case("signed-text-escape-in-version", "SIGNED-text", "'airlock.version' holds a control character")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(version="1.0\x1b]0;owned\x07"))


@case("signed-text-bidi-in-flag-name", "SIGNED-text", "bidirectional override (U+202E)")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(flags={"safe\u202eeurt": True}))


@case("signed-text-newline-in-provider", "SIGNED-text", "providers[0]' holds a control character")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(
        providers=["CPUExecutionProvider\nX"]))


@case("signed-value-huge-flag-integer", "SIGNED-values", "'airlock.flags.limit' is an integer beyond")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(flags={"limit": 2**64}))


@case("signed-value-zero-timeout", "SIGNED-values", "health.timeout_s' must be more than 0")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(timeout_s=0))


@case("signed-value-negative-tolerance", "SIGNED-values", "health.atol' must not be negative")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(atol=-1))


@case("signed-value-fractional-runs", "SIGNED-values", "health.runs' must be an integer")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"][0]["health"].update(runs=2.5))


@case("signed-value-ring-not-a-name", "SIGNED-values", "'airlock.rings[0]' is not a plain name")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"].update(rings=["../canary"]))


@case("signed-value-requires-unknown-feature", "SIGNED-values",
      "requires feature 'chunks', which this version of Airlock does not know")
def _(kit: Kit) -> bytes:
    # Unknown fields are ignored: without `requires` an older agent would install a release
    # and silently skip the gate it carries.
    return _resigned(kit, lambda s: s["airlock"].update(requires=["chunks"]))


@case("signed-value-unknown-kind", "SIGNED-values", "of kind 'chunked', which this version of "
      "Airlock does not know")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s.update(airlock_kind="chunked"))


@case("signed-file-model-named-like-golden", "SIGNED-files", "is the name of the golden outputs")
def _(kit: Kit) -> bytes:
    # Linking the model over the golden outputs crashed the install (FileExistsError).
    return _resigned(kit, _model_edit(file_name="outputs.npz"))


@case("signed-file-duplicate-model-name", "SIGNED-files", "lists model 'detector' twice")
def _(kit: Kit) -> bytes:
    return _resigned(kit, lambda s: s["airlock"]["models"].append(s["airlock"]["models"][0]))


@case("signed-file-external-data-traversal", "SIGNED-files", "'airlock.models[0].data' is not a "
      "plain name")
def _(kit: Kit) -> bytes:
    inputs = kit.signed()["airlock"]["models"][0]["health"]["inputs"]
    return _resigned(kit, _model_edit(data={"../../../etc/cron.d/x": inputs}))


@case("signed-file-external-data-named-like-model", "SIGNED-files",
      "external data file name 'model.onnx' is the name of the model file")
def _(kit: Kit) -> bytes:
    inputs = kit.signed()["airlock"]["models"][0]["health"]["inputs"]
    return _resigned(kit, _model_edit(data={"model.onnx": inputs}))
