"""FreshBooks API simulator (see app.py for paths and documented choices)."""

from .app import FreshBooksLimits, create_app

__all__ = ["FreshBooksLimits", "create_app"]
