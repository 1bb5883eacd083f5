"""SHOP_DATABASE_URL: checked before start-up uses it, and its failures said in one sentence."""

from __future__ import annotations

from shop.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///instance/shop.sqlite3"


def with_driver(raw: str) -> str:
    """The URL SQLAlchemy opens: postgresql:// (and postgres://) through psycopg 3.

    psycopg (3) is the driver shop ships in requirements.txt; SQLAlchemy's default for a bare
    postgresql:// would be psycopg2. A URL that names a driver is left as it is.
    """
    for bare in ("postgresql://", "postgres://"):
        if raw.startswith(bare):
            return "postgresql+psycopg://" + raw.removeprefix(bare)
    return raw


def check_database_url(raw: str) -> str:
    """Return SHOP_DATABASE_URL when SQLAlchemy can read it and its driver is installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(with_driver(raw))
    except ArgumentError:
        raise ConfigError(
            "SHOP_DATABASE_URL is not a database URL; use sqlite:///path/to/"
            "shop.sqlite3 or postgresql://user:password@host/dbname (or unset it "
            f"for {DEFAULT_DATABASE_URL})."
        ) from None
    try:
        url.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise ConfigError(
            f"SHOP_DATABASE_URL names the database kind '{url.drivername}', which "
            "shop cannot use; use sqlite:/// or postgresql://."
        ) from None
    except ImportError as exc:
        raise ConfigError(
            f"SHOP_DATABASE_URL needs the Python driver '{exc.name}', which is "
            f"not installed; install it (for PostgreSQL: pip install "
            "'psycopg[binary]') or use sqlite:///."
        ) from None
    return raw


def database_error(url: str, exc: BaseException) -> ConfigError:
    """Say in one sentence that SHOP_DATABASE_URL could not be opened, without its password."""
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    reason = (
        str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if str(exc)
        else type(exc).__name__
    )
    return ConfigError(
        f"SHOP_DATABASE_URL ({shown}) cannot be opened: {reason}; check that the "
        "database server is running and the path is a writable file, or unset "
        f"SHOP_DATABASE_URL to use {DEFAULT_DATABASE_URL}."
    )
