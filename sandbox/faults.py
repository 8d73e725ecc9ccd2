"""Fault switches for the provider simulators, set per tenant at run time.

Tests and benchmarks flip these through each simulator's `/_sandbox/faults/{tenant}`
endpoint (or directly in-process) to make a provider slow, flaky, throttled or
revoked for one tenant while the others stay healthy.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from fastapi import APIRouter
from pydantic import BaseModel

__all__ = ["FaultDecision", "FaultPlan", "FaultSwitchboard", "fault_router"]


class FaultPlan(BaseModel):
    latency_s: float = 0.0
    error_rate: float = 0.0  # share of requests answered 5xx before any effect
    # Share of writes applied and stored, then answered 5xx: the caller cannot tell this
    # from error_rate, which is the point (providers.md section 0: a 5xx can come after the
    # write was applied; QuickBooks .NET SDK issue #352).
    error_after_apply_rate: float = 0.0
    timeout_rate: float = 0.0  # share of writes applied, then answered only after hang_s
    hang_s: float = 15.0
    throttle_burst: int = 0  # the next N requests are answered 429
    revoked: bool = False  # the grant is gone: API calls 401, refresh invalid_grant


@dataclass(frozen=True, slots=True)
class FaultDecision:
    latency_s: float = 0.0
    fail_5xx: bool = False
    fail_5xx_after_apply: bool = False
    hang_after_apply_s: float = 0.0
    throttle: bool = False
    revoked: bool = False


@dataclass
class FaultSwitchboard:
    seed: int | None = None
    _plans: dict[str, FaultPlan] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def set(self, tenant: str, plan: FaultPlan) -> None:
        with self._lock:
            self._plans[tenant] = plan

    def clear(self, tenant: str | None = None) -> None:
        with self._lock:
            if tenant is None:
                self._plans.clear()
            else:
                self._plans.pop(tenant, None)

    def plan(self, tenant: str) -> FaultPlan:
        with self._lock:
            return self._plans.get(tenant, FaultPlan())

    def decide(self, tenant: str) -> FaultDecision:
        """Draw the faults for one request; consumes one unit of a 429 burst."""
        with self._lock:
            plan = self._plans.get(tenant)
            if plan is None:
                return FaultDecision()
            throttle = plan.throttle_burst > 0
            if throttle:
                self._plans[tenant] = plan.model_copy(
                    update={"throttle_burst": plan.throttle_burst - 1}
                )
            roll = self._rng.random()
            # One roll, three disjoint bands: 5xx before, hang after, 5xx after the write.
            before = plan.error_rate
            hang = before + plan.timeout_rate
            after = hang + plan.error_after_apply_rate
            return FaultDecision(
                latency_s=plan.latency_s,
                fail_5xx=not throttle and roll < before,
                fail_5xx_after_apply=not throttle and hang <= roll < after,
                hang_after_apply_s=plan.hang_s if before <= roll < hang else 0.0,
                throttle=throttle,
                revoked=plan.revoked,
            )


def fault_router(board: FaultSwitchboard) -> APIRouter:
    router = APIRouter(prefix="/_sandbox/faults", tags=["sandbox"])

    @router.put("/{tenant}")
    def put_plan(tenant: str, plan: FaultPlan) -> FaultPlan:
        board.set(tenant, plan)
        return plan

    @router.get("/{tenant}")
    def get_plan(tenant: str) -> FaultPlan:
        return board.plan(tenant)

    @router.delete("")
    def clear_all() -> dict[str, str]:
        board.clear()
        return {"status": "cleared"}

    return router


