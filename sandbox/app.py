"""All three provider simulators on one server, under /quickbooks, /xero and /freshbooks."""

from __future__ import annotations

from fastapi import FastAPI

from sandbox.faults import FaultSwitchboard

__all__ = ["create_sandbox"]


def create_sandbox(seed: int | None = None, fast_limits: bool = False) -> FastAPI:
    """`fast_limits` raises rate limits and shortens Retry-After to 2 s for tests and
    benchmarks; the defaults are the providers' documented limits."""
    from sandbox.freshbooks.app import FreshBooksLimits
    from sandbox.freshbooks.app import create_app as freshbooks
    from sandbox.quickbooks.app import create_app as quickbooks
    from sandbox.xero.app import create_app as xero

    app = FastAPI(title="BlueClerk provider sandbox")
    app.state.boards = {name: FaultSwitchboard(seed=seed) for name in
                        ("quickbooks", "xero", "freshbooks")}
    qbo_limits = xero_limits = fb_limits = None
    if fast_limits:
        from sandbox.quickbooks.app import QuickBooksLimits
        from sandbox.xero.limits import XeroLimits

        qbo_limits = QuickBooksLimits(requests_per_minute=100_000, max_concurrent=50,
                                      batch_per_minute=10_000, retry_after_s=2)
        xero_limits = XeroLimits(per_minute=100_000, per_day=10_000_000,
                                 app_per_minute=1_000_000, concurrent=50)
        fb_limits = FreshBooksLimits(per_minute=100_000, retry_after_s=2)
    app.mount("/quickbooks", quickbooks(app.state.boards["quickbooks"], qbo_limits))
    app.mount("/xero", xero(app.state.boards["xero"], xero_limits))
    app.mount("/freshbooks", freshbooks(app.state.boards["freshbooks"], fb_limits))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
