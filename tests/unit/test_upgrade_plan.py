"""The order of a rolling upgrade: canary, serial, multi-node services moving together."""

from __future__ import annotations

import pytest

from airgap_llm.errors import InputError
from airgap_llm.upgrade_plan import Serial, host_units, parse_serial, plan_batches

HOSTS = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(("text", "serial"), [(None, Serial(1)), ("1", Serial(1)), ("3", Serial(3)), (" 2 ", Serial(2)),
                                              ("50%", Serial(50, True)), ("100%", Serial(100, True))])
def test_parse_serial(text: str | None, serial: Serial) -> None:
    assert parse_serial(text) == serial


@pytest.mark.parametrize(("text", "words"), [
    ("0", "at least one host"), ("0%", "at least one host"), ("101%", "at most 100%"),
    ("", "expected a number"), ("x", "expected a number"), ("-2", "expected a number"), ("1.5", "expected a number"),
    ("%", "expected a number"), ("2%%", "expected a number"),
])
def test_parse_serial_refuses(text: str, words: str) -> None:
    with pytest.raises(InputError, match=words) as exc:
        parse_serial(text)
    assert repr(text) in str(exc.value)


def test_serial_size() -> None:
    assert Serial(2).size(10) == 2
    assert Serial(50, True).size(5) == 2  # rounds down
    assert Serial(10, True).size(3) == 1  # at least one
    assert Serial(100, True).size(4) == 4


def test_canary_first_then_serial_in_inventory_order() -> None:
    assert plan_batches(HOSTS, None, Serial(1)) == [("a",), ("b",), ("c",), ("d",), ("e",)]
    assert plan_batches(HOSTS, "c", Serial(2)) == [("c",), ("a", "b"), ("d", "e")]
    assert plan_batches(HOSTS, "e", Serial(100, True)) == [("e",), ("a", "b", "c", "d")]
    assert plan_batches(["only"], None, Serial(3)) == [("only",)]


def test_multi_node_hosts_move_together() -> None:
    # b and d serve one service: they form one unit, where b is, even beyond serial.
    assert host_units(HOSTS, [("d", "b")]) == [("a",), ("b", "d"), ("c",), ("e",)]
    assert plan_batches(HOSTS, None, Serial(1), [("b", "d")]) == [("a",), ("b", "d"), ("c",), ("e",)]
    # The canary takes its whole unit with it.
    assert plan_batches(HOSTS, "d", Serial(2), [("b", "d")]) == [("b", "d"), ("a", "c"), ("e",)]
    # Two services sharing a host merge into one unit.
    assert host_units(HOSTS, [("a", "b"), ("b", "c")]) == [("a", "b", "c"), ("d",), ("e",)]


def test_unknown_canary_and_no_hosts_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"--canary 'z': no such host in the inventory \(hosts: a, b, c, d, e\)"):
        plan_batches(HOSTS, "z", Serial(1))
    with pytest.raises(InputError, match="no hosts"):
        plan_batches([], None, Serial(1))
