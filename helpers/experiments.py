"""Plumbing for notebook 08's caching experiment: timed publishes over one connection, and the plot.

``enableCachingForHttp`` lets AWS IoT Core reuse the authorizer function's answer for a client
that keeps its HTTPS connection open, for the ``refreshAfterInSeconds`` the function returned
(https://docs.aws.amazon.com/iot/latest/apireference/API_CreateAuthorizer.html,
https://docs.aws.amazon.com/iot/latest/developerguide/config-custom-auth.html). To see it, the
notebook sends the same publish several times over one keep-alive connection (a
``requests.Session``), once with caching off and once with it on, and counts the function's
invocations in its log. :func:`keep_alive_run` sends and times; :func:`plot_caching` draws.

Usage:

>>> run = keep_alive_run(lambda session: type("R", (), {"status": 200})(), 3, clock=iter(range(10)).__next__)
>>> run.statuses, run.latencies_ms
([200, 200, 200], [1000.0, 1000.0, 1000.0])
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

__all__ = ["KeepAliveRun", "keep_alive_run", "plot_caching"]


@dataclass
class KeepAliveRun:
    """What one run of publishes over one connection gave: each answer's status and latency."""

    statuses: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    invocations: int | None = None  # filled in from the function's log


def keep_alive_run(send_one: Callable[[requests.Session], Any], count: int, *,
                   clock: Callable[[], float] = time.perf_counter) -> KeepAliveRun:
    """Call ``send_one(session)`` ``count`` times on one ``requests.Session`` (one kept-alive connection).

    ``send_one`` returns something with a ``status`` (a :class:`helpers.publish.PublishResult`).
    Each call's wall time is kept in milliseconds; the first includes the TLS handshake.
    """
    run = KeepAliveRun()
    with requests.Session() as session:
        for _ in range(count):
            started = clock()
            result = send_one(session)
            run.latencies_ms.append((clock() - started) * 1000.0)
            run.statuses.append(result.status)
    return run


def plot_caching(runs: dict[str, KeepAliveRun]):
    """Two panels: function invocations per run (bars, requests as a line), and latency per request."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=(1, 2))
    labels = list(runs)
    left.bar(labels, [run.invocations or 0 for run in runs.values()], color=["tab:gray", "tab:green"][:len(labels)])
    requests_sent = max(len(run.statuses) for run in runs.values())
    left.axhline(requests_sent, color="black", linestyle="--", linewidth=1, label=f"{requests_sent} requests")
    left.set_ylabel("function invocations")
    left.set_title("Invocations per run")
    left.legend(loc="upper right", fontsize="small")
    for label, run in runs.items():
        right.plot(range(1, len(run.latencies_ms) + 1), run.latencies_ms, marker="o", label=label)
    right.set_xlabel("request on the connection")
    right.set_ylabel("latency (ms)")
    right.set_title("Latency per request")
    right.set_ylim(bottom=0)
    right.legend(fontsize="small")
    fig.tight_layout()
    return fig
