"""Bounded parallelism across nodes (a base utility, for every layer): run one function per item,
at most *limit* at a time.

Every item runs to completion even when another fails, so one unreachable node does not hide the
state of the others; the first failure is raised with the rest as details.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tvdeploy.errors import TvdeployError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_LIMIT = 8


def for_each(items: Sequence[T], fn: Callable[[T], R], limit: int = DEFAULT_LIMIT,
             label: Callable[[T], str] = str) -> list[R]:
    """Results in the order of *items*; raises the first error (in item order) with the others
    as ``details``."""
    if not items:
        return []
    workers = max(1, min(limit, len(items)))
    results: list[R | None] = [None] * len(items)
    errors: list[TvdeployError] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tvdeploy-node") as pool:
        futures = [pool.submit(fn, item) for item in items]
        for i, fut in enumerate(futures):
            try:
                results[i] = fut.result()
            except TvdeployError as exc:
                errors.append(exc)
            except Exception as exc:  # noqa: BLE001 - reported as one line per item, -v has more
                log.debug("unexpected error on %s", label(items[i]), exc_info=True)
                errors.append(TvdeployError(f"{label(items[i])}: internal error: {type(exc).__name__}: {exc}"))
    if errors:
        first = errors[0]
        details = list(first.details)
        for other in errors[1:]:
            details.append(other.message)
            details.extend(other.details)
        raise type(first)(first.message, details=details)
    return results  # type: ignore[return-value]
