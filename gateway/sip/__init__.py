"""Our SIP signalling (RFC 3261): parsing, transports, transactions, dialogs, registration, UA.

pyVoIP is used only for media, in `gateway.media.rtp` (docs/sip.md, "Why our own signalling").
"""
