"""Back up and restore every component's database, PostgreSQL or SQLite, the same way.

    python -m svc_common.backup dump    DIR [--url NAME=URL ...]
    python -m svc_common.backup restore DIR [--url NAME=URL ...] [--only NAME ...]

A component's database URL comes from `--url`, else `<NAME>_DATABASE_URL`, else the embedded
default `sqlite:///data/<name>.db` (what `bin/run` uses). PostgreSQL goes through pg_dump's
custom format and pg_restore (their versions must match the server's major or be newer); SQLite
through its online backup API, consistent while the services write. DIR gets `manifest.json` with
each file's SHA-256 and Alembic revision, checked before anything is restored.

Restore into stopped services (or scale them to zero): events already published stay published,
so restore every component from the same backup, then start the services — their outboxes and
processed-event tables come back with their data, and consumers stay idempotent.
"""
import argparse
import datetime as dt
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from .migrate import COMPONENTS


def database_urls(overrides: dict[str, str]) -> dict[str, str]:
    return {name: overrides.get(name) or os.environ.get(f"{name.upper()}_DATABASE_URL")
            or f"sqlite:///data/{name}.db" for name in COMPONENTS}


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL without its driver, as pg_dump and pg_restore take it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def alembic_revision(url: str) -> str | None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sqlite_path(url: str) -> Path:
    return Path(make_url(url).database)


def sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy even while another process writes (WAL)."""
    with closing(sqlite3.connect(source)) as reader, closing(sqlite3.connect(target)) as writer:
        reader.backup(writer)


def dump(directory: Path, urls: dict[str, str]) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"created_at": dt.datetime.now(dt.timezone.utc).isoformat(), "components": {}}
    for name, url in urls.items():
        kind = make_url(url).get_backend_name()
        if kind == "sqlite":
            if not sqlite_path(url).exists():
                print(f"{name}: {sqlite_path(url)} does not exist, skipped", file=sys.stderr)
                continue
            target = directory / f"{name}.sqlite"
            sqlite_copy(sqlite_path(url), target)
        elif kind == "postgresql":
            target = directory / f"{name}.pgdump"
            subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                            f"--file={target}", libpq_url(url)], check=True)
        else:
            raise SystemExit(f"{name}: cannot back up a {kind} database")
        manifest["components"][name] = {"kind": kind, "file": target.name, "sha256": sha256(target),
                                        "alembic_revision": alembic_revision(url)}
        print(f"{name}: {kind} → {target} ({target.stat().st_size} bytes)")
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def restore(directory: Path, urls: dict[str, str], only: list[str] | None = None) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    chosen = {name: entry for name, entry in manifest["components"].items() if not only or name in only}
    # Check every file before touching any database: a corrupt backup restores nothing.
    for name, entry in chosen.items():
        if sha256(directory / entry["file"]) != entry["sha256"]:
            raise SystemExit(f"{name}: {entry['file']} does not match its checksum; nothing restored")
        if make_url(urls[name]).get_backend_name() != entry["kind"]:
            raise SystemExit(f"{name}: backup is {entry['kind']}, target is {urls[name]}; nothing restored")
    for name, entry in chosen.items():
        source = directory / entry["file"]
        if entry["kind"] == "sqlite":
            sqlite_path(urls[name]).parent.mkdir(parents=True, exist_ok=True)
            sqlite_copy(source, sqlite_path(urls[name]))
        else:
            subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
                            "--single-transaction", "--exit-on-error", f"--dbname={libpq_url(urls[name])}",
                            str(source)], check=True)
        print(f"{name}: restored from {source} (revision {entry['alembic_revision']})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m svc_common.backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["dump", "restore"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--url", action="append", default=[], metavar="NAME=URL")
    parser.add_argument("--only", action="append", choices=COMPONENTS, help="restore just these components")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.url)
    unknown = set(overrides) - set(COMPONENTS)
    if unknown:
        parser.error(f"unknown component(s): {', '.join(sorted(unknown))}")
    urls = database_urls(overrides)
    if args.action == "dump":
        dump(args.directory, {name: urls[name] for name in (args.only or COMPONENTS)})
    else:
        restore(args.directory, urls, args.only)


if __name__ == "__main__":
    main()
