"""`safeset serve`: an HMA-compatible match service and a safe human review queue.

`create_app(config)` builds the FastAPI app; `app.state.ctx` is its
`ServiceContext`. See docs/service.md.
"""

from __future__ import annotations


def create_app(config, db=None):
    """See `safeset.service.app.create_app` (imported on use: keeps `import safeset.service` light)."""
    from safeset.service.app import create_app as _create_app

    return _create_app(config, db=db)


__all__ = ["create_app"]
