"""Keep a server's model in step with its model URI: one refresh at a time, swaps counted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from penguins.registry import Built, ModelPointer, VersionWatcher
from penguins.serving.metrics import ServingMetrics
from penguins.serving.model import ServedModel, load


class ModelSource(Protocol):
    """What the prediction service needs of whatever holds its model."""

    @property
    def current(self) -> ServedModel | None:
        """Return the model to answer with, or None while there is none."""

    @property
    def reason(self) -> str | None:
        """Return why there is no model, in words a person can act on."""

    def start(self) -> None:
        """Start following the model's source, if it moves."""

    def stop(self) -> None:
        """Stop following it."""


class ModelManager:
    """Serve what a model URI points at: load a new version beside the current one, then swap.

    Built on the shared :class:`~penguins.registry.VersionWatcher`; every swap attempt
    after the first load counts in ``ml_model_reloads_total`` and a swap updates the
    model gauges.
    """

    def __init__(
        self,
        pointer: ModelPointer,
        metrics: ServingMetrics,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare to serve ``pointer``; nothing is loaded until :meth:`refresh`."""
        self.metrics = metrics
        self.watcher: VersionWatcher[ServedModel] = VersionWatcher(
            pointer,
            lambda target: load(target, pointer.uri),
            refresh_seconds,
            on_swap=self._swapped,
            on_failure=self._failed,
            verb="serving",
            meanwhile="answering 503 until one appears",
            clock=clock,
        )

    @property
    def current(self) -> ServedModel | None:
        """Return the model to answer with, or None while none is loaded."""
        return self.watcher.current

    @property
    def reason(self) -> str | None:
        """Return why no model is loaded, or None while one is."""
        return self.watcher.reason

    def refresh(self) -> str:
        """Serve what the URI points at now; return what happened (see VersionWatcher.refresh)."""
        return self.watcher.refresh()

    def start(self) -> None:
        """Refresh every ``refresh_seconds`` in a background thread (after any fork)."""
        self.watcher.start()

    def stop(self) -> None:
        """Stop the background refresh."""
        self.watcher.stop()

    def _swapped(self, new: Built[ServedModel], old: Built[ServedModel] | None, initial: bool):
        """Describe the new version in the metrics; count the swap unless it is the first load."""
        self.metrics.model_served(new.value.description, old.value.description if old else None)
        if not initial:
            self.metrics.observe_reload("success")

    def _failed(self, initial: bool) -> None:
        """Count a refused version unless it was the first load."""
        if not initial:
            self.metrics.observe_reload("failed")
