"""One exception hierarchy for all of Airlock.

Every error a user can meet is an :class:`AirlockError`. Its message is one
line that says what is wrong and what to do; its ``exit_code`` is the
documented exit code of both command-line tools (see README, "Exit codes").
Code that catches errors catches these classes, never strings.
"""

from __future__ import annotations

#: The exit codes of both command lines, as README.md and every ``--help`` show them.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "done"),
    (1, "unexpected error: a bug (one line; --debug shows the traceback)"),
    (2, "usage or configuration error: bad flags, bad YAML, a spec field (named with its "
        "line), a file that is not what the option wants, an image sink the device could "
        "not use"),
    (3, "rejected: signature, digest, policy, expiry, version or format check failed; "
        "nothing installed"),
    (4, "health check failed: on the host nothing was signed or written; on a device the "
        "previous release is active again (or still is): a health check, hook or probe that "
        "failed, or an image sink delivery that failed after staging"),
    (5, "precondition not met: disk full, not enough memory, lock held, not initialised, "
        "a registry the host pulls from unreachable, refusing or without the reference "
        "(nothing built), agent state damaged or read-only"),
)


#: Where the table stands in a Markdown document, between these two lines.
EXIT_CODES_BEGIN = "<!-- exit codes: generated from airlock/errors.py EXIT_CODES "\
    "(python scripts/exit_codes.py) -->"
EXIT_CODES_END = "<!-- end of exit codes -->"


def exit_codes_markdown() -> str:
    """The exit-code table as every document shows it, between its markers."""
    rows = "\n".join(f"| {code} | {meaning} |" for code, meaning in EXIT_CODES)
    return (f"{EXIT_CODES_BEGIN}\n\n| code | meaning |\n| --- | --- |\n{rows}\n\n"
            f"{EXIT_CODES_END}")


class AirlockError(Exception):
    """Base of every error Airlock raises on purpose. Exit code 1."""

    exit_code = 1


class UsageError(AirlockError):
    """Bad flags, bad configuration or a bad spec file. Exit code 2."""

    exit_code = 2


class SpecError(UsageError):
    """A release spec (``airlock.yaml``) is invalid; names the field and line."""

    def __init__(self, path: str, field: str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: field '{field}': {message}")
        self.field = field
        self.line = line


class RejectedError(AirlockError):
    """A bundle or metadata failed a check; nothing was installed. Exit code 3."""

    exit_code = 3


class SignatureError(RejectedError):
    """Signatures are missing, invalid or below the role's threshold."""


class ExpiredError(RejectedError):
    """Signed metadata is past its expiry (freeze attack or stale media)."""


class RollbackError(RejectedError):
    """A release or root is older than one already accepted."""


class PolicyError(RejectedError):
    """The signer may not deploy this release here (ring), or a rule forbids it."""


class ExportForbiddenError(PolicyError):
    """The signed release keeps a model's samples on the device (``samples: {export: false}``).
    Exit code 3."""


class FormatError(RejectedError):
    """The bundle is not a well-formed Airlock archive (tar, layout, metadata)."""


class DigestError(FormatError):
    """A blob's sha256 or length differs from what the signed metadata says."""


class HostKeyError(PolicyError):
    """An SSH host offered a key that is unknown or differs from known_hosts. Exit code 3."""


class HealthCheckError(AirlockError):
    """A health check or probe failed; the previous release is active again. Exit 4."""

    exit_code = 4


class PreconditionError(AirlockError):
    """Not enough disk or memory, a lock is held, or ROOT is not initialised. Exit 5."""

    exit_code = 5


class NoSpaceError(PreconditionError):
    """The target filesystem lacks room for what must be written."""


class LockedError(PreconditionError):
    """Another agent command holds the lock on ROOT."""


class NotInitialisedError(PreconditionError):
    """The agent root has not been set up with ``airlock-agent init``."""


class DamagedRootError(PreconditionError):
    """Agent state has the wrong shape: a file where a directory belongs, a link that is a
    directory, a malformed record. Nothing was changed; ``airlock-agent fsck --repair`` fixes
    it or says what a person must do. Exit 5."""


class UnreachableError(PreconditionError):
    """A device could not be reached over SSH, or the connection dropped. Exit code 5."""


class RegistryError(AirlockError):
    """A registry served something that fails a check (not a manifest, not JSON); names the
    reference. Exit 3, like any content refused."""

    exit_code = 3


class RegistryConfigError(RegistryError):
    """A reference that is not one, or a registry auth file that cannot be used. Exit 2."""

    exit_code = 2


class RegistryUnavailableError(RegistryError):
    """The registry cannot give what is asked: unreachable, TLS refused, access denied, no such
    reference, or no oras installed. Exit 5: nothing was wrong with the content itself."""

    exit_code = 5


class DeliveryError(HealthCheckError):
    """An image sink could not take a release's images; the previous release stays active. Exit 4."""
