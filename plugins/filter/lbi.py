"""Filters shared by the roles: how an address is written in a URL or a listen directive."""

from __future__ import annotations


def lbi_host(address):
    """'::1' -> '[::1]'; IPv4 addresses and names are returned as they are."""
    text = str(address)
    if ":" in text and not text.startswith("["):
        return f"[{text}]"
    return text


def lbi_hostport(address, port):
    """The address and port as NGINX, Prometheus and URLs write them: '[::1]:80', '10.0.0.1:80'."""
    return f"{lbi_host(address)}:{port}"


class FilterModule:
    def filters(self):
        return {"lbi_host": lbi_host, "lbi_hostport": lbi_hostport}
