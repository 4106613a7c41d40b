"""One incoming call, in the order it happens: identity → screen → carry out → record.

`handle.handle_call` is the whole flow in one function; `process` wires the gateway process
(user agents, registrations, the scheduler) around it; `ports` names what the flow needs from
signalling, media and storage, so each side can be replaced by a fake in tests.
"""
