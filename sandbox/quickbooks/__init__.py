"""QuickBooks Online simulator: ``create_app`` builds the ASGI app mounted at ``/quickbooks``."""

from sandbox.quickbooks.app import DEFAULT_CLIENTS, QuickBooksLimits, QuickBooksSim, create_app

__all__ = ["DEFAULT_CLIENTS", "QuickBooksLimits", "QuickBooksSim", "create_app"]
