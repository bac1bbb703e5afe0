"""Where attachment bytes live (photos, files, signatures). The default is a local folder
(TICKETS_STORAGE_DIR, default data/files); another backend (S3, OSS) implements the same three calls."""
import uuid
from pathlib import Path
from typing import Protocol
from .settings import TicketsSettings


class Storage(Protocol):
    def put(self, tenant_id: uuid.UUID, data: bytes, suffix: str = "") -> str: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...


class LocalStorage:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("storage key outside the storage folder")
        return path

    def put(self, tenant_id: uuid.UUID, data: bytes, suffix: str = "") -> str:
        key = f"{tenant_id}/{uuid.uuid4().hex}{suffix}"
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)  # never a half-written file under its final name
        return key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()


def default_storage() -> Storage:
    return LocalStorage(TicketsSettings().storage_dir)  # read when used: tests point it at their own folder
