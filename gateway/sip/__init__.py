"""Our SIP signalling (RFC 3261): parsing, transports, transactions, dialogs, registration, UA.

pyVoIP is used only for media, in `gateway.sip.media` (DESIGN.md §2).
"""
