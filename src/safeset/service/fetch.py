"""Fetching content by URL: off by default, and then only from configured hosts.

A service that fetches any URL it is given can be made to probe its own
network (SSRF) or to download abuse material on request. So fetching is
refused unless `fetch_enabled`, the host must be on `fetch_allowed_hosts`
(``example.com`` exactly, ``*.example.com`` for its subdomains; on the
default port unless the rule names one, ``example.com:8443``), only http(s)
is accepted, redirects are followed only to allowed hosts, and the body is
limited like an upload.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from fastapi import HTTPException

from safeset.service.config import ServiceConfig

MAX_REDIRECTS = 3


def host_allowed(host: str, port: int | None, allowed: tuple[str, ...]) -> bool:
    """Is host (and port; None = the scheme's default) on the allow-list?"""
    host = host.lower().rstrip(".")
    for rule in allowed:
        rule_host, _, rule_port = rule.rpartition(":") if _has_port(rule) else (rule, "", "")
        if (int(rule_port) if rule_port else None) != port:
            continue
        if rule_host.startswith("*."):
            if host.endswith(rule_host[1:]):
                return True
        elif host == rule_host:
            return True
    return False


def _has_port(rule: str) -> bool:
    head, sep, tail = rule.rpartition(":")
    return bool(sep) and tail.isdigit() and not head.endswith(":")


def check_url(url: str, config: ServiceConfig) -> str:
    """The URL if the service may fetch it; otherwise the HTTP error saying why."""
    if not config.fetch_enabled:
        raise HTTPException(403, "fetching content by URL is disabled on this service (set fetch_enabled)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise HTTPException(400, "invalid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HTTPException(400, "only http:// and https:// URLs can be fetched")
    if parts.username or parts.password:
        raise HTTPException(400, "URLs with credentials are not fetched")
    if port == {"http": 80, "https": 443}[parts.scheme]:
        port = None
    if not host_allowed(parts.hostname, port, config.fetch_allowed_hosts):
        where = parts.hostname if port is None else f"{parts.hostname}:{port}"
        raise HTTPException(403, f"host {where!r} is not on this service's fetch allow-list")
    return url


def fetch_url(url: str, config: ServiceConfig) -> bytes:
    """The body at `url` (after the checks above), at most `max_upload_bytes`."""
    import httpx

    limit = config.max_upload_bytes
    with httpx.Client(timeout=config.fetch_timeout_s, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, config)
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise HTTPException(502, f"fetching the URL failed: HTTP {response.status_code}")
                    parts, size = [], 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise HTTPException(413, f"fetched content is over the limit of {limit} bytes")
                        parts.append(chunk)
                    return b"".join(parts)
            except httpx.HTTPError as exc:
                raise HTTPException(502, f"fetching the URL failed: {type(exc).__name__}") from None
    raise HTTPException(502, f"fetching the URL failed: more than {MAX_REDIRECTS} redirects")
