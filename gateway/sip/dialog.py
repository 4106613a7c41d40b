"""A UAS dialog (RFC 3261 §12): identifiers, route set, and in-dialog requests built from them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from gateway.sip.message import SipRequest, parse_name_addr, parse_uri
from gateway.sip.transport import Target


@dataclass
class Dialog:
    """The state of one dialog we are the UAS of."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To of the INVITE (our identity), as a name-addr without tag
    remote_uri: str  # the From of the INVITE
    remote_target: str  # the Contact URI of the INVITE
    route_set: list[str] = field(default_factory=list)  # Record-Route of the INVITE, in order
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(10000) + 1)
    remote_cseq: int = 0

    @classmethod
    def from_invite(cls, invite: SipRequest, local_tag: str) -> Dialog:
        """Build the UAS side of a dialog from the INVITE that created it."""
        from_ = invite.from_()
        to = invite.to()
        contacts = invite.get_all("Contact")
        remote_target = parse_name_addr(contacts[0]).uri if contacts else from_.uri
        cseq, _ = invite.cseq()
        parse_uri(remote_target)  # refuse now what we could not send a BYE to later
        for route in invite.get_all("Record-Route"):
            parse_uri(parse_name_addr(route).uri)
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=from_.tag or "",
            local_uri=str(type(to)(to.uri, to.display_name)),
            remote_uri=str(type(from_)(from_.uri, from_.display_name)),
            remote_target=remote_target,
            # RFC 3261 §12.1.1: the UAS takes Record-Route in order as its route set.
            route_set=[v for v in invite.get_all("Record-Route")],
            remote_cseq=cseq,
        )

    def request(self, method: str, via: str, contact: str) -> tuple[SipRequest, Target]:
        """An in-dialog request and where to send it, honouring loose and strict routers."""
        routes = list(self.route_set)
        request_uri = self.remote_target
        if routes:
            first = parse_uri(parse_name_addr(routes[0]).uri)
            if not first.loose_routing:
                # Strict router (RFC 3261 §12.2.1.1): it goes in the Request-URI and the remote
                # target becomes the last Route.
                request_uri = parse_name_addr(routes[0]).uri
                routes = [*routes[1:], f"<{self.remote_target}>"]
        self.local_cseq += 1
        headers = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", f"{self.remote_uri};tag={self.remote_tag}"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} {method}"),
            *(("Route", r) for r in routes),
            ("Contact", contact),
        ]
        next_hop = parse_name_addr(self.route_set[0]).uri if self.route_set else self.remote_target
        return SipRequest(method, request_uri, headers), target_for_uri(next_hop)


def target_for_uri(uri_text: str) -> Target:
    """Where to send a request for `uri_text` (numeric hosts only: no DNS SRV on a home LAN)."""
    uri = parse_uri(uri_text)
    transport = "tcp" if uri.transport == "tcp" else "udp"
    port = uri.port or (5061 if uri.scheme == "sips" else 5060)
    return Target(transport, uri.host, port)
