"""Operator commands (status, replay); the control-plane issue adds connect, wizard, etc."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    _ = argparse
