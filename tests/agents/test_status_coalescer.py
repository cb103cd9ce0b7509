"""StatusCoalescer: at most one status update per entity per interval, the latest, merged (no clock of its own)."""

from __future__ import annotations

from adapters.outbox import OutboxItem
from agents.transports.intake import StatusCoalescer


def _item(entity_id: str, t: str, **attrs: object) -> OutboxItem:
    entity = {"id": entity_id, "type": "Device", "dateLastValueReported": {"type": "Property", "value": t}}
    entity.update({k: {"type": "Property", "value": v} for k, v in attrs.items()})
    return OutboxItem("", "aix", (), "aix|k|d", entity, 0.0, "/")


def test_first_goes_at_once_later_ones_held_and_merged() -> None:
    c = StatusCoalescer(10.0)
    assert c.offer(_item("urn:ngsi-ld:Device:a", "t0"), 100.0) is True
    assert c.offer(_item("urn:ngsi-ld:Device:a", "t1", batteryLevel=0.9), 101.0) is False
    assert c.offer(_item("urn:ngsi-ld:Device:a", "t2"), 102.0) is False
    assert c.offer(_item("urn:ngsi-ld:Device:b", "u0"), 102.0) is True  # per entity
    assert c.next_due() == 110.0
    assert c.take_due(109.9) == []
    (due,) = c.take_due(110.0)
    # the latest time; an attribute only an earlier held update carried is kept
    assert due.entity["dateLastValueReported"]["value"] == "t2"
    assert due.entity["batteryLevel"]["value"] == 0.9
    assert not c.holding
    # sent at 110: the next one within the interval is held again, after it is not
    assert c.offer(_item("urn:ngsi-ld:Device:a", "t3"), 115.0) is False
    assert [i.entity["dateLastValueReported"]["value"] for i in c.take_all()] == ["t3"]
    assert c.offer(_item("urn:ngsi-ld:Device:a", "t4"), 131.0) is True


def test_tenants_and_targets_are_apart() -> None:
    c = StatusCoalescer(10.0)
    a = _item("urn:ngsi-ld:Device:a", "t0")
    assert c.offer(a, 0.0) is True
    assert c.offer(a._replace(tenant="other"), 1.0) is True
    assert c.offer(a._replace(target="http://elsewhere"), 1.0) is True
    assert c.offer(a, 1.0) is False
