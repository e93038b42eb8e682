"""What the file-based customer sources share: a ``path`` read in a thread, then parsed."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

from edgeagent.configtypes import InputFile
from edgeagent.takedown.customers.base import Assignment, CustomerSource, CustomerSourceConfig
from edgeagent.takedown.customers.rows import read_export


class FileExportConfig(CustomerSourceConfig):
    """Keys of every file export: the file (must exist and be readable when checked)."""

    path: InputFile


@dataclass(frozen=True, slots=True)
class FileExport(CustomerSource):
    """An export file; subclasses say how its text becomes assignments (:meth:`parse`)."""

    path: Path
    name: str

    @classmethod
    def from_config(cls, config: CustomerSourceConfig, *, name: str) -> FileExport:
        assert isinstance(config, FileExportConfig)
        return cls(Path(config.path), name)

    @staticmethod
    @abstractmethod
    def parse(name: str, text: str) -> list[Assignment]:
        """Assignments from the export's text; ``ExportError`` lists every bad line."""

    async def load(self) -> list[Assignment]:
        return await asyncio.to_thread(self._load)

    def _load(self) -> list[Assignment]:
        return self.parse(self.name, read_export(self.path, self.name))
