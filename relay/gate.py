"""The relay's own check of every event: defence in depth behind the device's.

A device decides with the bundle and policy it holds; it may hold an old bundle (a withdrawal not yet
pulled), run under a careless policy file, or send from its outbox what it matched before a withdrawal
reached it. The relay is the last place that can stop a face-derived alert, so before an event is stored
(and again before each message is sent: a bundle may have withdrawn the person meanwhile) it asks:

1. does the gallery's directory (the newest bundle's ``gallery.sqlite``) hold this person?
2. is the person absent from the directory's withdrawal ledger?
3. was the gallery built for the purpose the relay is configured with (the bundle's ``manifest.json`` beside
   its ``gallery.sqlite``, where there is one)? A purpose-scoped policy rule must not be asked about another;
4. does the policy (``lookout.gallery.policy``: the built-in one unless ``policy.file`` names one, the same
   code as every other path) allow recognition for the person's jurisdiction and department, for that purpose?

A "no" refuses the event with the reason: it is dead-lettered without its crop and never stored or sent.
A directory that cannot be read is *unavailable* (:class:`~lookout.relay.directory.DirectoryUnavailable`):
the caller waits and tries again rather than guess. A gallery with no directory at all is only possible with
``policy.require_directory: false``: its events pass unchecked (the devices' word alone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lookout.errors import InputError
from lookout.events import read_json_object
from lookout.files import MAX_TEXT_FILE_BYTES, read_file_bytes
from lookout.gallery.format import MANIFEST
from lookout.gallery.policy import Policy
from lookout.gallery.purpose import DEFAULT_PURPOSE, parse_purpose
from lookout.relay.config import RelayConfig
from lookout.relay.directory import Directories, PersonDetails


@dataclass(frozen=True)
class Verdict:
    """Whether an event about ``person_id`` may lead to an alert; ``details`` for the message."""

    allowed: bool
    reason: str
    details: PersonDetails | None = None
    checked: bool = True  # False: no directory for this gallery (policy.require_directory: false)


class Gate:
    def __init__(self, policy: Policy, purpose_of: Callable[[str | None], str], directories: Directories) -> None:
        self.policy = policy
        self.purpose_of = purpose_of  # a gallery's purpose, as its bundle's manifest says it to devices
        self.directories = directories

    @classmethod
    def from_config(cls, config: RelayConfig, directories: Directories | None = None) -> Gate:
        """The gate ``config`` asks for: its policy file (else the built-in policy) over its directories."""
        policy = Policy.load(config.policy.file) if config.policy.file is not None else Policy.default()
        if directories is None:
            paths: dict[str, Path | None] = {g: config.directory_of(g) for g in config.galleries}
            directories = Directories(paths, config.directory.path)
        return cls(policy, lambda gallery_id: config.gallery(gallery_id).purpose, directories)

    @classmethod
    def unchecked(cls) -> Gate:
        """No directory for any gallery: every event passes on the devices' word alone (as with
        ``policy.require_directory: false``; tests and tools)."""
        return cls(Policy.default(), lambda gallery_id: DEFAULT_PURPOSE, Directories({}, None))

    def check(self, gallery_id: str | None, person_id: str) -> Verdict:
        """The verdict for an event about ``person_id`` in ``gallery_id``. Raises DirectoryUnavailable."""
        directory = self.directories.of(gallery_id)
        if directory is None:
            return Verdict(True, "not checked: no directory for this gallery", checked=False)
        member = directory.membership(person_id)
        if member.withdrawn is not None:
            return Verdict(False, f"person {person_id!r} was withdrawn from the gallery: {member.withdrawn}")
        if member.details is None:
            return Verdict(False, f"person {person_id!r} is not in the gallery directory {directory.path}")
        details = member.details
        purpose = self.purpose_of(gallery_id)
        built_for = bundle_purpose(directory.path)
        if built_for is not None and built_for != purpose:
            return Verdict(
                False,
                f"the gallery was built for {built_for!r} (its manifest) and this relay checks it as {purpose!r}: "
                f"set galleries.{gallery_id or 'default'}.purpose to {built_for!r}",
                details,
            )
        decision = self.policy.decide(details.jurisdiction, purpose, details.department)
        if not decision.allowed:
            return Verdict(False, f"policy refuses person {person_id!r}: {decision.reason}", details)
        return Verdict(True, decision.reason, details)


def bundle_purpose(directory: Path) -> str | None:
    """The purpose in the ``manifest.json`` beside a directory's ``gallery.sqlite`` (None where there is none);
    one that cannot be read is an unknown purpose (``"unreadable"``), which no configured purpose equals."""
    manifest = Path(directory).with_name(MANIFEST)
    try:
        stamp = manifest.stat().st_mtime_ns
    except OSError:
        return None
    return _read_purpose(manifest, stamp)


@lru_cache(maxsize=64)
def _read_purpose(manifest: Path, stamp: int) -> str:
    """Cached per (file, modification time): the check runs for every event."""
    try:
        return parse_purpose(
            read_json_object(read_file_bytes(manifest, MAX_TEXT_FILE_BYTES), str(manifest)).get("purpose")
        )
    except InputError:
        return "unreadable"
