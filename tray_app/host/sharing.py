"""Sharing this computer's model with the house: the key, and the addresses to give the other computers.

The gateway listens on the local network only when the user turns sharing on (off by default), on its
own port, and answers there only to requests carrying the key (``Authorization: Bearer KEY``); browsers'
requests (an ``Origin``) are refused there too. See :mod:`tray_app.host.gateway`.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets

import psutil

KEY_PREFIX = "dm-"


def new_share_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(18)


def key_matches(authorization: str | None, key: str) -> bool:
    if not key or not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())


def lan_addresses() -> list[str]:
    """This computer's IPv4 addresses on the home network (private ranges first), for the other computers."""
    found: list[str] = []
    try:
        interfaces = psutil.net_if_addrs()
    except OSError:
        return found
    for addresses in interfaces.values():
        for a in addresses:
            if a.family.name != "AF_INET":
                continue
            try:
                ip = ipaddress.IPv4Address(a.address)
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
                continue
            if a.address not in found:
                found.append(a.address)
    return sorted(found, key=lambda text: not ipaddress.IPv4Address(text).is_private)


def share_text_fr(port: int, key: str) -> str:
    addresses = lan_addresses()
    where = f"http://{addresses[0]}:{port}/v1" if addresses else f"http://<adresse de cet ordinateur>:{port}/v1"
    return f"Adresse : {where}   Clé : {key}"
