"""The SSRF guard's address check: which addresses a download may connect to.

A URL list comes from a user, and the worker that downloads it sits inside the
deployment's network: without this check a list could read the cloud metadata
service, Redis on loopback or an admin page on the LAN. Only public unicast
addresses pass, unless an operator names a network in
``sources.allowed_networks``.

The table is our own, not ``ipaddress``'s ``is_private``/``is_global`` flags:
those changed between Python releases, and the reason a user reads ("loopback",
"link-local") must name the rule that refused the address. Addresses that
embed an IPv4 address (IPv4-mapped, NAT64, 6to4) are judged by the address
they lead to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# First match wins: the narrower rule (metadata) comes before the wider (link-local).
_V4_RULES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("169.254.169.254/32", "cloud metadata"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved"),  # documentation
    ("198.51.100.0/24", "reserved"),  # documentation
    ("203.0.113.0/24", "reserved"),  # documentation
    ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("240.0.0.0/4", "reserved"),  # future use, and the broadcast address
)
_V6_RULES: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fd00:ec2::254/128", "cloud metadata"),  # AWS's IPv6 metadata service
    ("fc00::/7", "private"),  # unique local addresses
    ("fec0::/10", "private"),  # site-local, deprecated
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("64:ff9b:1::/48", "private"),  # local-use NAT64
    ("100::/64", "reserved"),  # discard-only
    ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo included
    ("2001:db8::/32", "reserved"),  # documentation
    ("3fff::/20", "reserved"),  # documentation
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

_V4 = tuple((ipaddress.IPv4Network(net), why) for net, why in _V4_RULES)
_V6 = tuple((ipaddress.IPv6Network(net), why) for net, why in _V6_RULES)


class RefusedAddress(Exception):
    """An address the guard refuses; the message is the per-URL reason."""

    def __init__(self, address: IPAddress, why: str) -> None:
        super().__init__(f"refused address {address} ({why})")
        self.address = address
        self.why = why


def parse_address(text: str) -> IPAddress:
    """An address as ``getaddrinfo`` or a URL gives it (a zone id ``%eth0`` is dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))


def embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to: mapped, NAT64 (well-known prefix), 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def classify(address: IPAddress) -> str | None:
    """Why ``address`` is no public unicast address ("loopback", "private", ...), or None."""
    if isinstance(address, ipaddress.IPv4Address):
        return next((why for net, why in _V4 if address in net), None)
    inner = embedded_v4(address)
    if inner is not None:
        why = classify(inner)
        return None if why is None else f"{why}, as {inner}"
    found = next((why for net, why in _V6 if address in net), None)
    if found is None and address not in _GLOBAL_UNICAST_V6:
        return "reserved"  # outside 2000::/3 nothing is assigned for public unicast
    return found


def parse_networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(text, strict=True) for text in texts)


def is_allowed(address: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    """In an allowed network, directly or as the IPv4 address it embeds."""
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_v4(address)
        if inner is not None:
            candidates.append(inner)
    return any(a.version == net.version and a in net for a in candidates for net in allowed)


def check(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> None:
    """Raise ``RefusedAddress`` unless ``address`` may be connected to."""
    why = classify(address)
    if why is not None and not is_allowed(address, allowed):
        raise RefusedAddress(address, why)


def check_all(addresses: Sequence[IPAddress], allowed: Sequence[IPNetwork] = ()) -> None:
    """Every address of a name must pass: a resolver may answer differently next time,
    and one bad answer among good ones is an attack, not an accident."""
    if not addresses:
        raise ValueError("no address to check")
    for address in addresses:
        check(address, allowed)
