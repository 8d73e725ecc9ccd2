"""The Alembic migrations build exactly the schema the models describe, on both backends,
and go all the way down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from state.db import Database, migrate
from state.models import Base


def test_migrations_match_the_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        db.dispose()


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    from pathlib import Path

    import state.db

    config = Config()
    config.set_main_option("script_location",
                           str(Path(state.db.__file__).with_name("migrations")))
    config.set_main_option("sqlalchemy.url",
                           Database(database_url).url.replace("%", "%%"))
    command.downgrade(config, "base")
    migrate(database_url)
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        db.dispose()
