"""The bridge's crash points: where the tests make it die between an effect and its ack.

``$AGENTMAILBOX_BRIDGE_FAULT=point[:probability],...`` arms them (docs/BRIDGE.md lists what
holds when each fires). They are apart from :data:`agentmailbox.fs.POINTS`: those are steps
of the on-disk transitions, which tests/test_crash_points.py dies at one by one; these are
steps of a daemon over the network, hit at random by the bridge's soak.
"""

from __future__ import annotations

import os
import random

__all__ = ["POINTS", "CrashPoints"]

POINTS = {
    "bridge.acked": "JetStream acknowledged a copy; it is still in bridge/out/",
    "bridge.delivered": "a remote message is in the local inbox; the stream is not yet "
                        "told (no ack)",
}
"""The bridge's crash points (``$AGENTMAILBOX_BRIDGE_FAULT``), and what holds when one fires."""


class CrashPoints:
    """``$AGENTMAILBOX_BRIDGE_FAULT=point[:probability],...``: exit 77 there, like SIGKILL.

    With a probability (``bridge.acked:0.01``) each pass through the point dies with that
    chance, so one soak run dies at many moments; without one, at the first pass.
    """

    def __init__(self, spec: str | None = None) -> None:
        spec = os.environ.get("AGENTMAILBOX_BRIDGE_FAULT", "") if spec is None else spec
        self.chances: dict[str, float] = {}
        for item in filter(None, spec.split(",")):
            point, _, chance = item.partition(":")
            if point not in POINTS:
                raise ValueError(f"unknown bridge crash point {point!r}")
            self.chances[point] = float(chance or 1.0)
        self._random = random.Random()

    def hit(self, point: str) -> None:
        chance = self.chances.get(point)
        if chance is not None and self._random.random() < chance:
            os._exit(77)  # no cleanup, no flush: what a SIGKILL leaves
