"""The version watcher serving and the drift reference share, on a scripted pointer."""

from __future__ import annotations

import pytest

from penguins.registry import (
    UNREGISTERED,
    ModelDescription,
    ModelPointer,
    Target,
    VersionWatcher,
    missing_store,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at zero."""
        self.now = 0.0

    def __call__(self) -> float:
        """Return the current time."""
        return self.now


class ScriptedPointer:
    """A pointer whose version the test sets; ``down`` makes the store unreachable."""

    uri = "models:/penguins-classifier@champion"
    alias = "champion"
    tracking_uri = "sqlite:///scripted.db"

    def __init__(self) -> None:
        """Point at nothing yet."""
        self.version_now: str | None = None
        self.down = False
        self.absent: str | None = None
        self.connects = 0
        self.store_id: tuple[int, int] | None = (1, 1)  # the store file's (device, inode)

    def connect(self) -> object:
        """Return a stand-in client, or fail like an unreachable store."""
        if self.down:
            raise ConnectionError("store down")
        self.connects += 1
        return object()

    def missing(self) -> str | None:
        """Say the store file is missing when the test says so."""
        return self.absent

    def identity(self) -> tuple[int, int] | None:
        """Return the store file's identity the test set."""
        return self.store_id

    def version(self, client: object) -> str | None:
        """Return the version the test set."""
        if self.down:
            raise ConnectionError("store down")
        return self.version_now

    def target(self, client: object, version: str) -> Target:
        """Describe a version."""
        description = ModelDescription("penguins-classifier", version, "champion", "r", "svm", {})
        return Target(description, f"models:/penguins-classifier/{version}")


@pytest.fixture
def clock() -> Clock:
    """Return a hand-moved clock."""
    return Clock()


def watcher(pointer, clock, refused=(), events=None, **kwargs) -> VersionWatcher:
    """Return a watcher that builds the version string, refusing those in ``refused``."""
    events = [] if events is None else events

    def build(target: Target) -> str:
        """Build a version, or refuse it."""
        if target.version in refused:
            raise ValueError(f"v{target.version} is broken")
        return f"built v{target.version}"

    return VersionWatcher(
        pointer,
        build,
        10.0,
        clock=clock,
        on_swap=lambda new, old, initial: events.append(("swap", new.value, initial)),
        on_failure=lambda initial: events.append(("failed", initial)),
        **kwargs,
    )


def test_it_swaps_to_each_new_version_and_reports_unchanged_otherwise(clock):
    pointer, events = ScriptedPointer(), []
    w = watcher(pointer, clock, events=events)
    assert w.refresh() == "missing" and w.current is None
    assert "no model models:/penguins-classifier@champion" in w.reason
    pointer.version_now = "1"
    assert w.refresh() == "swapped" and w.current == "built v1" and w.reason is None
    assert w.refresh() == "unchanged"
    pointer.version_now = "2"
    assert w.refresh() == "swapped" and w.current == "built v2"
    assert events == [("swap", "built v1", False), ("swap", "built v2", False)]


def test_the_first_look_up_is_marked_initial(clock):
    pointer, events = ScriptedPointer(), []
    pointer.version_now = "1"
    w = watcher(pointer, clock, events=events)
    w.refresh()
    assert events == [("swap", "built v1", True)]


def test_a_refused_version_keeps_the_current_one_and_waits_its_back_off(clock):
    pointer, events = ScriptedPointer(), []
    pointer.version_now = "1"
    w = watcher(pointer, clock, refused={"2"}, events=events)
    w.refresh()
    pointer.version_now = "2"
    assert w.refresh() == "failed" and w.current == "built v1"
    assert isinstance(w.error, ValueError)
    assert w.refresh() == "waiting"
    clock.now += 10.0  # one refresh interval: the first retry is due
    assert w.refresh() == "failed"
    clock.now += 10.0  # the back-off doubled: not due yet
    assert w.refresh() == "waiting"
    clock.now += 10.0
    assert w.refresh() == "failed"
    assert events[1:] == [("failed", False)] * 3


def test_the_back_off_is_capped(clock):
    pointer = ScriptedPointer()
    pointer.version_now = "1"
    w = watcher(pointer, clock, refused={"1"}, max_retry_seconds=0)
    assert [w.refresh() for _ in range(3)] == ["failed"] * 3
    assert "cannot be used: v1 is broken" in w.reason


def test_an_unreachable_store_keeps_serving_and_reconnects_later(clock):
    pointer = ScriptedPointer()
    pointer.version_now = "1"
    w = watcher(pointer, clock)
    w.refresh()
    pointer.down = True
    assert w.refresh() == "unreachable" and w.current == "built v1"
    assert isinstance(w.error, ConnectionError)
    pointer.down = False
    assert w.refresh() == "unchanged" and pointer.connects == 2  # a fresh client


def test_an_unreachable_store_with_nothing_followed_says_so(clock):
    pointer = ScriptedPointer()
    pointer.down = True
    w = watcher(pointer, clock)
    assert w.refresh() == "unreachable" and w.current is None
    assert w.reason == f"cannot look up {pointer.uri}: store down"


def test_a_missing_store_file_is_never_asked_about(clock):
    pointer = ScriptedPointer()
    pointer.absent = "no tracking store at /x/mlflow.db: train first with python modelling.py"
    w = watcher(pointer, clock)
    assert w.refresh() == "missing" and pointer.connects == 0
    assert "train first with python modelling.py" in w.reason


def test_refresh_if_due_looks_up_at_most_once_per_period(clock):
    pointer = ScriptedPointer()
    pointer.version_now = "1"
    w = watcher(pointer, clock)
    assert w.refresh_if_due() == "swapped"
    pointer.version_now = "2"
    assert w.refresh_if_due() is None and w.current == "built v1"
    clock.now += 10.0
    assert w.refresh_if_due() == "swapped"


def test_a_store_replaced_at_its_path_is_reopened_and_its_version_served(clock, monkeypatch):
    reopened = []
    monkeypatch.setattr("penguins.registry.reopen_store", reopened.append)
    pointer, events = ScriptedPointer(), []
    pointer.version_now = "2"
    w = watcher(pointer, clock, events=events)
    assert w.refresh() == "swapped" and pointer.connects == 1
    assert w.refresh() == "unchanged" and reopened == []
    pointer.store_id = (1, 2)  # a new file at the path, whose champion is also a v2
    assert w.refresh() == "swapped" and w.current == "built v2"
    assert reopened == [pointer.tracking_uri] and pointer.connects == 2  # a fresh client
    assert w.refresh() == "unchanged"
    assert [e[0] for e in events] == ["swap", "swap"]


def test_a_replaced_store_forgets_the_refusals_of_the_old_one(clock, monkeypatch):
    monkeypatch.setattr("penguins.registry.reopen_store", lambda uri: None)
    pointer = ScriptedPointer()
    pointer.version_now = "1"
    w = watcher(pointer, clock, refused={"2"})
    w.refresh()
    pointer.version_now = "2"
    assert w.refresh() == "failed"
    assert w.refresh() == "waiting"  # the old store's v2 waits its back-off
    pointer.store_id, w._build = (1, 2), lambda target: f"new v{target.version}"
    assert w.refresh() == "swapped" and w.current == "new v2"


def test_a_replaced_store_without_the_model_yet_keeps_serving_the_old_one(clock, monkeypatch):
    monkeypatch.setattr("penguins.registry.reopen_store", lambda uri: None)
    pointer = ScriptedPointer()
    pointer.version_now = "3"
    w = watcher(pointer, clock)
    w.refresh()
    pointer.store_id, pointer.version_now = (1, 2), None  # new store, training not done
    assert w.refresh() == "missing" and w.current == "built v3"
    pointer.version_now = "1"
    assert w.refresh() == "swapped" and w.current == "built v1"


@pytest.mark.parametrize(
    ("uri", "alias"),
    [
        ("models:/penguins-classifier@champion", "champion"),
        ("models:/penguins-classifier/3", None),
        ("runs:/abc/model", None),
    ],
)
def test_a_pointer_knows_whether_its_uri_moves(uri, alias):
    assert ModelPointer(uri, "sqlite:///x.db").alias == alias


def test_a_uri_outside_the_registry_is_unregistered():
    pointer = ModelPointer("runs:/abc/model", "sqlite:///x.db")
    assert pointer.version(client=None) == UNREGISTERED
    target = pointer.target(None, UNREGISTERED)
    assert target.version == UNREGISTERED and target.download_uri == "runs:/abc/model"


def test_missing_store_names_the_path_and_what_to_do(tmp_path):
    absent = tmp_path / "no" / "mlflow.db"
    reason = missing_store(f"sqlite:///{absent}")
    assert str(absent) in reason and "python modelling.py" in reason
    assert not absent.parent.exists()  # asking created nothing
    (tmp_path / "mlflow.db").touch()
    assert missing_store(f"sqlite:///{tmp_path / 'mlflow.db'}") is None
    assert missing_store("http://localhost:5001") is None
