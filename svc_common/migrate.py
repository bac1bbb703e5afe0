"""Alembic, the same way for every service: `python -m svc_common.migrate tickets [revision]`.

Each service keeps its own migrations (services/<name>/migrations, gateway/migrations)
against its own DATABASE_URL. Their env.py is two lines: `run_env(Base.metadata)`.
"""
import sys
import tempfile
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import engine_from_config, pool

from .settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("tickets", "inventory", "customers", "notify", "reports", "gateway")


def migrations_dir(name: str) -> Path:
    return ROOT / "gateway" / "migrations" if name == "gateway" else ROOT / "services" / name / "migrations"


def alembic_config(name: str, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir(name)))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(name: str, database_url: str | None = None, revision: str = "head") -> None:
    url = database_url or get_settings().database_url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(name, url), revision)


def run_env(target_metadata) -> None:
    """Body of every migrations/env.py."""
    config = context.config
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                          literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        # render_as_batch: SQLite (embedded default) cannot ALTER most things in place.
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


def autogenerate(name: str, message: str) -> None:
    """Write a new revision from the models' diff against a scratch SQLite at head."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/scratch.db"
        upgrade(name, url)
        cfg = alembic_config(name, url)
        count = len(list((migrations_dir(name) / "versions").glob("*.py")))
        command.revision(cfg, message=message, autogenerate=True, rev_id=f"{count + 1:04d}")


USAGE = (f"usage: python -m svc_common.migrate {{{','.join(COMPONENTS)}}} [revision]\n"
         f"       python -m svc_common.migrate NAME --autogenerate MESSAGE")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in COMPONENTS:
        print(USAGE, file=sys.stderr)
        return 2
    if len(argv) == 4 and argv[2] == "--autogenerate":
        autogenerate(argv[1], argv[3])
    elif len(argv) in (2, 3):
        upgrade(argv[1], revision=argv[2] if len(argv) == 3 else "head")
    else:
        print(USAGE, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
