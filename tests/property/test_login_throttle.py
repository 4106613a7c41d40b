"""Property: whatever strangers do, an address that did nothing wrong is never locked out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from web.security import LoginThrottle

OWNER = "192.168.1.20"
stranger = st.sampled_from([f"192.168.1.{i}" for i in range(30, 60)]
                           + [f"fd00::{i:x}" for i in range(1, 40)])
event = st.one_of(
    st.tuples(st.just("fail"), stranger),
    st.tuples(st.just("ok"), stranger),
    st.tuples(st.just("wait"), st.floats(min_value=0, max_value=7200)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=400), st.integers(min_value=1, max_value=60))
def test_no_stranger_traffic_locks_a_clean_address(events: list[tuple[str, object]],
                                                   guard: int) -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0], guard_failures=guard, max_addresses=25)
    for kind, value in events:
        if kind == "wait":
            now[0] += float(value)  # type: ignore[arg-type]
            continue
        if throttle.wait_seconds(str(value)) > 0:
            continue  # a locked stranger's request is refused before the password is checked
        if kind == "fail":
            throttle.failure(str(value))
        else:
            throttle.success(str(value))
        assert throttle.wait_seconds(OWNER) == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(stranger, min_size=1, max_size=200))
def test_under_guard_every_wrong_guess_locks_its_address(addresses: list[str]) -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0], guard_failures=1)
    for address in addresses:
        if throttle.wait_seconds(address) == 0:
            throttle.failure(address)
        assert throttle.wait_seconds(address) > 0
