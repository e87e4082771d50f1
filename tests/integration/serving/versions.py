"""Model versions registered by hand, as a training run or an operator would register them."""

from __future__ import annotations

from tests.support.stores import store_client

MODEL_NAME = "penguins-classifier"


def champion_source(tracking_uri: str, name: str = MODEL_NAME) -> dict:
    """Return the champion's artifact location, tags and run: enough to register it again."""
    client = store_client(tracking_uri)
    version = client.get_model_version_by_alias(name, "champion")
    return {
        "source": client.get_model_version_download_uri(name, version.version),
        "tags": dict(version.tags),
        "run_id": version.run_id,
    }


def register_version(
    tracking_uri: str,
    source: str,
    tags: dict | None = None,
    run_id: str | None = None,
    name: str = MODEL_NAME,
    promote: bool = True,
) -> str:
    """Register a model version from an artifact location, move the champion alias to it."""
    client = store_client(tracking_uri)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags or {})
    if promote:
        client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)
