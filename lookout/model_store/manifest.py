"""The manifest written beside every converted model: what it is, where it came from, its digests."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lookout.digest import sha256_bytes
from lookout.errors import ModelError

MANIFEST_NAME = "manifest.json"


@dataclass
class ModelManifest:
    name: str
    kind: str
    version: str
    description: str
    source_package: str
    source_version: str
    source_archive_sha256: str
    source_member: str
    source_member_sha256: str
    input_layout: str
    input_size: list[int]
    preprocessing: str
    output_dim: int
    licence: str
    alignment_template: list[list[float]]
    files: dict[str, str]  # file name -> SHA-256
    converted_with: str  # OpenVINO version
    extra: dict[str, Any] = field(default_factory=dict)
    # URL-sourced models: each publisher file by relative path -> {url, sha384, size}
    source_files: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """The model's identity as bundles record it: its IR files plus how its input is made.

        The alignment template is part of it: the same weights fed differently
        aligned chips give embeddings that must not be searched together.
        """
        identity = {"files": self.files, "input_size": self.input_size, "template": self.alignment_template}
        return sha256_bytes(json.dumps(identity, sort_keys=True).encode())

    def write(self, folder: Path) -> None:
        (folder / MANIFEST_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> ModelManifest:
        path = folder / MANIFEST_NAME
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise ModelError(f"{path}: no manifest; run `lookout models fetch`") from None
        except (json.JSONDecodeError, TypeError) as err:
            raise ModelError(f"{path}: unreadable manifest ({err})") from None
