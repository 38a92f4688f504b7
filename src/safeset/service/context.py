"""What every route and component of one app shares: config, store, database, audit, tokens.

Built once per app by `create_app`; routes reach it as `request.app.state.ctx`
(or through the `get_ctx` dependency).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from safeset.audit import AuditLog
from safeset.banks.store import BankStore
from safeset.db import Database
from safeset.service.config import ServiceConfig, audit_anchor_path

class ServiceContext:
    """Shared state of one running service; components are added by `create_app`."""

    def __init__(self, config: ServiceConfig, db: Database | None = None):
        from safeset.service.bank_settings import BankSettings
        from safeset.service.tokens import TokenRegistry

        self.config = config
        self.store = BankStore(config.store_root)
        self.db = db if db is not None else Database.open(config.db_url, config.store_root)
        self.audit = AuditLog(self.db, anchor_path=audit_anchor_path(config))
        self.tokens = TokenRegistry(self.db, self.audit)
        self.bank_settings = BankSettings(self.db)
        self._components: dict[str, Any] = {}
        from safeset.service.curation import Curator

        self.curator = Curator(self.store, self.bank_settings, self.db, self.audit, notify=self.notify_bank_changed)

    # -- components --------------------------------------------------------
    def add_component(self, name: str, obj: Any) -> None:
        self._components[name] = obj

    def component(self, name: str) -> Any:
        """The component registered as `name`; LookupError when this app has none."""
        try:
            return self._components[name]
        except KeyError:
            raise LookupError(f"the service has no component {name!r} (have: {', '.join(self._components) or 'none'})") from None

    def has_component(self, name: str) -> bool:
        return name in self._components

    def optional_component(self, name: str) -> Any | None:
        return self._components.get(name)

    def components(self) -> list[tuple[str, Any]]:
        return list(self._components.items())

    def notify_bank_changed(self, bank_name: str) -> None:
        """Tell the live index (when there is one) that a bank's entries or settings changed."""
        index = self.optional_component("index")
        if index is not None and hasattr(index, "notify_changed"):
            index.notify_changed(bank_name)

    def close(self) -> None:
        self.db.close()


def get_ctx(request: Request) -> ServiceContext:
    """FastAPI dependency: this app's context."""
    return request.app.state.ctx
