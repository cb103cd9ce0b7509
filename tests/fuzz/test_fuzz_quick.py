"""Every fuzz target for a moment, with the other tests (`make fuzz` runs them for about 100 s)."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from fuzz.runner import fuzz, report
from fuzz.targets import IN_PROCESS, Failure, checked, codec_target, geo_target, q_target


@pytest.mark.parametrize("target", IN_PROCESS, ids=lambda t: t.name)
def test_in_process_targets(target) -> None:  # type: ignore[no-untyped-def]
    result = fuzz(target.name, target.strategy, target.run, seconds=1.5)
    assert result.tried > 0
    assert not result.failures, report([result])


def test_api_targets() -> None:
    from fuzz.api import Broker, body_target, endpoint, openapi_operations, openapi_target, operation_strategy

    ops = openapi_operations()
    assert len(ops) > 40  # every operation of the v1.8.1 OpenAPI
    with Broker() as client:
        bodies = fuzz("api-bodies", st.tuples(endpoint), lambda op: body_target(client, op), seconds=3)
        openapi = fuzz("openapi", st.tuples(operation_strategy(ops)), lambda op: openapi_target(client, op), seconds=3)
    assert bodies.tried > 0 and openapi.tried > 0
    assert not bodies.failures and not openapi.failures, report([bodies, openapi])


@pytest.mark.parametrize("call", [lambda: q_target("((((a==1"), lambda: q_target("(" * 600 + "a" + ")" * 600),
                                  lambda: geo_target("near;maxDistance==1000", "MultiLineString", [], False),
                                  lambda: codec_target("ul", b"t|\x00|x", 0)])
def test_what_fuzzing_found_stays_fixed(call) -> None:  # type: ignore[no-untyped-def]
    call()  # raises Failure if the input crashed the code again


def test_a_crash_is_a_failure() -> None:
    with pytest.raises(Failure):
        checked(lambda: 1 / 0, "division")
