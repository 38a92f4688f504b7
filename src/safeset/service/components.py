"""Parts of the service that plug in by name: the live index, the review queue, ...

A module listed in `safeset.service.app.COMPONENT_MODULES` calls
`register(name, factory)` when imported; every app built by `create_app` then
calls `factory(ctx)` once, in registration order, and keeps the object in
its context (`ctx.component(name)`). Objects may define `start()` and
`stop()`: called at app startup (in order) and shutdown (in reverse order).
Factories are kept per process, objects per app, so tests can build many apps.
"""

from __future__ import annotations

from typing import Any, Callable

Factory = Callable[[Any], Any]

_FACTORIES: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Make component `name` part of every app created from now on (re-registering replaces)."""
    if not name or not isinstance(name, str):
        raise ValueError("a component needs a non-empty name")
    _FACTORIES[name] = factory


def registered() -> list[tuple[str, Factory]]:
    """(name, factory) in registration order."""
    return list(_FACTORIES.items())


def unregister(name: str) -> None:
    """For tests that register a stand-in component."""
    _FACTORIES.pop(name, None)
