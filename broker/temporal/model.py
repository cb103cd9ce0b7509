"""History rows and time values.

An attribute instance at one time is a `HistoryRow`: the ENF instance as
written (value, observedAt, createdAt/modifiedAt, datasetId, sub-attributes)
beside the columns the storage indexes and aggregates. Times are kept as
integer microseconds since the epoch, so that "2026-01-01T00:00:00Z" and
"2026-01-01T00:00:00.000Z" compare equal, and come back as RFC 3339 UTC
strings with millisecond precision (the precision of system attributes).

Idempotency: a row's `key_us` is its observedAt, or its modifiedAt when it
has none (deletions: deletedAt); the storage keeps one row per (tenant,
entity, attribute, datasetId, key, kind), so an instance delivered twice
(a change replayed after a crash, a device resending a reading) is stored once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

from broker.store.base import ChangeRecord, Doc
from models.errors import BadRequestData
from models.vocabulary import ENTITY_CORE, NGSI_LD_NULL, PROPERTY

VALUE = 0
DELETION = 1
INSTANCE_PREFIX = "urn:ngsi-ld:attribute-instance:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(text: str, what: str = "DateTime") -> int:
    """An RFC 3339 / ISO 8601 date-time -> microseconds since the epoch (UTC when no offset is given)."""
    try:
        return _parse_us(text)
    except (ValueError, AttributeError, TypeError):
        raise BadRequestData(f"{what} must be a DateTime, got {text!r}") from None


@functools.lru_cache(maxsize=8192)
def _parse_us(text: str) -> int:
    # cached: the history recorder parses three times per attribute instance, and a batch
    # repeats the same few modifiedAt/createdAt values (a third of its CPU before the cache)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds



LAST_DAY = 2_932_896
"""Days from 1970-01-01 to 10000-01-01: `day_text` covers the days before it (four-digit years)."""


@functools.lru_cache(maxsize=4096)
def day_text(day: int) -> str:
    """'YYYY-MM-DD' of a day counted from 1970-01-01 (0 <= day < LAST_DAY), cached: rendering a month of hourly
    buckets formatted a datetime per bound, most of a one-entity hourly answer's CPU (issue 16, query18)."""
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()

def from_us(value: int) -> str:
    """Microseconds since the epoch -> RFC 3339 UTC string (milliseconds, or microseconds when they matter)."""
    seconds, micros = divmod(value, 1_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    base = moment.isoformat(timespec="seconds")
    return f"{base}.{micros // 1000:03d}Z" if micros % 1000 == 0 else f"{base}.{micros:06d}Z"


def instance_id(iid: int) -> str:
    """The instanceId URI of a stored row."""
    return f"{INSTANCE_PREFIX}{iid}"


def parse_instance_id(text: str) -> int | None:
    """The row number of an instanceId URI, or None when it is not one of ours."""
    if not text.startswith(INSTANCE_PREFIX):
        return None
    tail = text.removeprefix(INSTANCE_PREFIX)
    return int(tail) if tail.isdigit() else None


@dataclass(slots=True)
class HistoryRow:
    """One attribute instance at one time (or the deletion of an attribute instance)."""

    tenant: str
    entity_id: str
    attr: str
    dataset_id: str  # '' for the default instance
    kind: int  # VALUE or DELETION
    key_us: int
    observed_us: int | None
    created_us: int | None
    modified_us: int | None
    deleted_us: int | None
    value_num: float | None
    value_json: str  # the value member as JSON text (distinctCount, string min/max)
    instance: bytes  # the ENF instance as orjson bytes
    packed: bytes = b""  # what the storage keeps of it (compact_instance), b"" when not made: `instance`

    @property
    def stored(self) -> bytes:
        """The instance as the storage keeps it."""
        return self.packed or self.instance


def float_text(value_num: float) -> str:
    """The JSON text of a float value, as value_row writes it (orjson)."""
    return orjson.dumps(value_num).decode()


def packed_value_json(row: HistoryRow) -> str | None:
    """The value_json column as stored: NULL where value_num gives it back exactly (a JSON float: `value_text`).

    -0.0 is kept as text: SQLite may store a REAL without a fraction as an integer, which reads back as 0.0.
    """
    vj = row.value_json
    if row.value_num is not None and vj != "-0.0" and vj == float_text(row.value_num):
        return None
    return vj


def value_text(value_json: str | None, value_num: float | None) -> str | None:
    """A stored row's value_json (packed_value_json undone)."""
    if value_json is None and value_num is not None:
        return float_text(value_num)
    return value_json


def packed_created(row: HistoryRow) -> int | None:
    """The created_us column as stored: NULL on a value row whose createdAt is its modifiedAt (read back as
    `coalesce(created_us, CASE WHEN kind = 0 THEN modified_us END)`; a deletion row has no createdAt)."""
    return None if row.kind == VALUE and row.created_us == row.modified_us else row.created_us


@dataclass(slots=True)
class EntityRow:
    """An entity that has (or had) history: its types, and when it was deleted."""

    tenant: str
    entity_id: str
    types: list[str]
    deleted_us: int | None = None


def _value_member(inst: Doc) -> Any:
    for member in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList"):
        if member in inst:
            return inst[member]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):  # arrays aggregate by their size (clause 4.5.19.1)
        return float(len(value))
    return None


def _opt_us(inst: Doc, member: str) -> int | None:
    text = inst.get(member)
    if not isinstance(text, str):
        return None
    try:
        return to_us(text, member)
    except BadRequestData:
        return None


def value_row(tenant: str, entity_id: str, attr: str, inst: Doc, default_us: int) -> HistoryRow:
    """The row of one attribute instance; `default_us` stands in for a missing modifiedAt.

    As `value_row_reference`, with what depends on the instance's member names alone decided once per
    name tuple (`_RowPlan`), each time text parsed and told apart (canonical milliseconds, whole
    seconds, neither) once (`_TIMES`), and the compact layout made once per name tuple, type and
    time forms (`_RowPlan.layouts`): a batch's instances share a few shapes and a few times. An instance the
    plan does not cover (instanceId, deletedAt, a time that is not a DateTime text or is the epoch)
    takes the reference path.
    """
    keys = tuple(inst)
    plan = _PLANS.get(keys)
    if plan is None:
        plan = _plan(keys)
    if not plan.ok:
        return value_row_reference(tenant, entity_id, attr, inst, default_us)
    times = _TIMES
    if plan.observed:
        text = inst["observedAt"]
        hit = times.get(text) if type(text) is str else None
        if hit is None and (hit := _time(text)) is None:
            return value_row_reference(tenant, entity_id, attr, inst, default_us)
        observed, f_obs = hit
    else:
        observed, f_obs = None, 0
    if plan.modified:
        text = inst["modifiedAt"]
        hit = times.get(text) if type(text) is str else None
        if hit is None and (hit := _time(text)) is None:
            return value_row_reference(tenant, entity_id, attr, inst, default_us)
        modified, f_mod = hit
    else:
        modified, f_mod = default_us, 0
    if plan.created:
        text = inst["createdAt"]
        hit = times.get(text) if type(text) is str else None
        if hit is None and (hit := _time(text)) is None:
            return value_row_reference(tenant, entity_id, attr, inst, default_us)
        created, f_cre = hit
    else:
        created, f_cre = modified, 0
    if plan.typed:
        kind = inst["type"]
        t_letter = 1 if kind == PROPERTY else 2 if kind == "Relationship" else 0
    else:
        t_letter = 1  # no type member: a Property (and no letter in the layout)
    value = inst[plan.value] if plan.value is not None else None
    instance = orjson.dumps(inst)
    if type(value) is float and value:  # a reading: its text from the few recent ones (not 0.0: -0.0 equals it)
        value_json = _FLOAT_TEXTS.get(value)
        if value_json is None:
            value_json = orjson.dumps(value).decode()
            if len(_FLOAT_TEXTS) >= _CACHE_MAX:
                _FLOAT_TEXTS.clear()
            _FLOAT_TEXTS[value] = value_json
    else:
        value_json = orjson.dumps(value).decode()
    row = HistoryRow(
        tenant, entity_id, attr, (inst["datasetId"] or "") if plan.dataset else "", VALUE,
        observed if observed is not None else modified, observed, created, modified, None,
        (value if type(value) is float else _number(value)) if t_letter == 1 else None,
        value_json, instance,
    )
    layout_key = (t_letter, f_obs, f_cre, f_mod)
    layout = plan.layouts.get(layout_key)
    if layout is None:
        layout = _layout(plan, keys, t_letter, f_obs, f_cre, f_mod)
    prefix, kept, ones = layout
    if prefix is None:
        row.packed = instance  # kept members in two runs: stored whole
    elif len(kept) == 1:  # mostly unitCode alone, a text of a few values ("CEL"): its bytes made once
        one = inst[kept[0]]
        packed = ones.get(one) if type(one) is str else None
        if packed is None:
            packed = prefix + orjson.dumps({kept[0]: one})
            if type(one) is str and len(ones) < _ONES_MAX:
                ones[one] = packed
        row.packed = packed
    elif kept:
        row.packed = prefix + orjson.dumps({k: inst[k] for k in kept})
    else:
        row.packed = prefix + b"{}"
    return row


_Layout = tuple[bytes | None, tuple[str, ...], dict[str, bytes]]
"""compact_instance's layout bytes up to the kept members' JSON (None: stored whole), the kept members' names,
and the stored bytes of instances whose one kept member is a text, by that text."""


@dataclass(slots=True, frozen=True)
class _RowPlan:
    """What `value_row` decides from an instance's member names (in their order)."""

    ok: bool  # False: the reference path (instanceId or deletedAt, which the document drops)
    value: str | None  # the value member (_value_member's choice), None without one
    typed: bool
    dataset: bool
    observed: bool
    created: bool
    modified: bool
    # the layouts of these names by (type letter, observedAt, createdAt and modifiedAt forms): four small
    # ints to hash per instance instead of the member names' tuple again (batch20)
    layouts: dict[tuple[int, int, int, int], _Layout] = field(default_factory=dict, compare=False)


_PLANS: dict[tuple[str, ...], _RowPlan] = {}
_TIMES: dict[str, tuple[int, int]] = {}  # time text -> (microseconds, 1: as _stamp_ms, 2: as _stamp_s, 0: neither)
_FLOAT_TEXTS: dict[float, str] = {}  # a float value (not 0.0) -> its JSON text, as orjson writes it
_CACHE_MAX = 8192  # each cache is emptied when it reaches this size (clients that send ever new shapes or times)
_ONES_MAX = 64  # texts of one kept member (unit codes) kept per layout
_VALUE_MEMBERS = ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList")


def _plan(keys: tuple[str, ...]) -> _RowPlan:
    names = set(keys)
    plan = _RowPlan(
        ok="instanceId" not in names and "deletedAt" not in names,
        value=next((m for m in _VALUE_MEMBERS if m in names), None),
        typed="type" in names, dataset="datasetId" in names,
        observed="observedAt" in names, created="createdAt" in names, modified="modifiedAt" in names,
    )
    if len(_PLANS) >= _CACHE_MAX:
        _PLANS.clear()
    _PLANS[keys] = plan
    return plan


def _time(text: Any) -> tuple[int, int] | None:
    """A time member's microseconds and form (see _TIMES); None where the reference path must decide
    (not a DateTime text, or the epoch, which `_opt_us(...) or default` passes over)."""
    if type(text) is not str:
        return None
    us = _ms_text_us(text)
    if us is not None:
        form = 1  # _stamp_ms(us) is the text: the second's text round-trips (_second_us) and `.mmmZ` follows it
    elif (us := _whole_second_us(text)) is not None:
        form = 2  # _stamp_s(us) is the text: fields of fixed width, zero-padded, a year from 1970
    else:
        try:
            us = _parse_us(text)
        except (ValueError, AttributeError, TypeError):
            return None
        form = 1 if text == _stamp_ms(us) else 2 if text == _stamp_s(us) else 0
    if not us:
        return None
    if len(_TIMES) >= _CACHE_MAX:
        _TIMES.clear()
    _TIMES[text] = (us, form)
    return us, form


_EPOCH_DAY = _EPOCH.date().toordinal()


def _whole_second_us(text: str) -> int | None:
    """The microseconds of a `YYYY-MM-DDTHH:MM:SSZ` text after the epoch (an NGSI-v2 TimeInstant), None for any
    other text (then `_parse_us` decides).

    Every /v2/notify brings a new TimeInstant of this form: `_time` parsed it (datetime.fromisoformat) and
    formatted it twice (`_stamp_ms`, `_stamp_s`) to learn its form, 9 µs, about 5 % of the broker's samples
    under single notifications (py-spy; issue 16, notifyfast21); here it is read field by field, 1-2 µs.
    """
    if (len(text) != 20 or text[19] != "Z" or text[4] != "-" or text[7] != "-" or text[10] != "T"
            or text[13] != ":" or text[16] != ":" or not text.isascii()):
        return None
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    if not all(f.isdigit() for f in fields):
        return None
    hour, minute, second = int(fields[3]), int(fields[4]), int(fields[5])
    if hour > 23 or minute > 59 or second > 59:
        return None
    try:
        day = date(int(fields[0]), int(fields[1]), int(fields[2])).toordinal() - _EPOCH_DAY
    except ValueError:
        return None
    us = (((day * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000
    return us if us > 0 else None


def _ms_text_us(text: str) -> int | None:
    """The microseconds of a time text in the form every system attribute carries (`from_us` of a whole
    millisecond: `2026-12-06T21:58:53.047Z`), None for any other text (then `_parse_us` decides).

    A one-attribute PATCH brings a new modifiedAt text every millisecond: `_parse_us` (datetime.fromisoformat)
    and `_stamp_ms` (formatting it back to learn its form) missed their caches for each new text, about 10 µs
    of the recorder's 17 per change record when every text is new (2-3 µs a PATCH in the running broker, where
    a few PATCH share a millisecond; issue 16, loop19). Here the second's text is parsed once (`_second_us`,
    which also requires it to be `from_us`'s own text of that second) and the milliseconds are three digits.
    """
    if len(text) != 24 or text[19] != "." or text[23] != "Z":
        return None
    ms = text[20:23]
    if not (ms.isdigit() and ms.isascii()):
        return None
    second = _second_us(text[:19])
    return None if second is None else second + int(ms) * 1000


@functools.lru_cache(maxsize=1024)
def _second_us(text: str) -> int | None:
    """Microseconds of a `YYYY-MM-DDTHH:MM:SS` text that is `from_us`'s own text of that second, else None."""
    if not text.isascii():
        return None
    try:
        us = _parse_us(text + "Z")
    except (ValueError, AttributeError, TypeError):
        return None
    if us < 0 or _second_text(us // 1_000_000) != text:
        return None
    return us


def now_stamp() -> tuple[str, int]:
    """The current time as `broker.service.patch.utc_now` writes it (RFC 3339 UTC, milliseconds) and as
    `to_us` of that text, without formatting a datetime and parsing it back (a /v2/notify stamps every
    entity: utc_now and to_us were 15 % of its rows' CPU); `value_row` then finds the text in `_TIMES`."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    us = seconds * 1_000_000 + micros // 1000 * 1000
    text = f"{_second_text(seconds)}.{micros // 1000:03d}Z"  # from_us's text of `us`
    if us and text not in _TIMES:
        if len(_TIMES) >= _CACHE_MAX:
            _TIMES.clear()
        _TIMES[text] = (us, 1)
    return text, us


@functools.lru_cache(maxsize=64)
def _second_text(seconds: int) -> str:
    """from_us's text of a whole second, without the fraction."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _layout(plan: _RowPlan, keys: tuple[str, ...], t_letter: int, f_obs: int, f_cre: int, f_mod: int) -> _Layout:
    """compact_instance's layout for these member names, type and time forms: the layout bytes up to
    the kept members' JSON and the names of the kept members ((None, ()) when the document is stored
    whole), kept in `plan.layouts`."""
    forms = {"o": f_obs, "c": f_cre, "m": f_mod}
    layout = ""
    kept: list[str] = []
    run = 0
    whole = False
    for key in keys:
        letter = _MEMBER_LETTER.get(key)
        if letter is not None:
            if letter == "T":
                letter = "T" if t_letter == 1 else "L" if t_letter == 2 else None
            elif letter == "R":
                letter = None if "value" in keys else "R"
            elif letter in forms:
                form = forms[letter]
                letter = letter if form == 1 else letter.upper() if form == 2 else None
        if letter is None:
            if run == 2:
                whole = True
                break
            if run == 0:
                layout += "*"
                run = 1
            kept.append(key)
        else:
            if run == 1:
                run = 2
            layout += letter
    result: _Layout = (None, (), {}) if whole else (layout.encode(), tuple(kept), {})
    plan.layouts[(t_letter, f_obs, f_cre, f_mod)] = result  # at most 3 x 3 x 3 x 3 per plan
    return result


def value_row_reference(tenant: str, entity_id: str, attr: str, inst: Doc, default_us: int) -> HistoryRow:
    """The row of one attribute instance; `default_us` stands in for a missing modifiedAt.

    The uncompiled reference of `value_row` (which takes this path for any shape its plan does not
    cover); tests hold the two to the same rows, field by field."""
    observed = _opt_us(inst, "observedAt")
    modified = _opt_us(inst, "modifiedAt") or default_us
    created = _opt_us(inst, "createdAt") or modified
    clean = inst if "instanceId" not in inst and "deletedAt" not in inst else {
        k: v for k, v in inst.items() if k not in ("instanceId", "deletedAt")
    }
    value = _value_member(inst)
    row = HistoryRow(
        tenant, entity_id, attr, inst.get("datasetId", "") or "", VALUE,
        observed if observed is not None else modified, observed, created, modified, None,
        _number(value) if inst.get("type", PROPERTY) == PROPERTY else None,
        orjson.dumps(value).decode(), orjson.dumps(clean),
    )
    row.packed = compact_instance(clean, row)
    return row


def deletion_row(tenant: str, entity_id: str, attr: str, inst: Doc, at_us: int) -> HistoryRow:
    """The row recording that an attribute instance was deleted at `at_us` (clause 4.5.7: value urn:ngsi-ld:null)."""
    kind = inst.get("type", PROPERTY)
    member = "object" if kind == "Relationship" else "value"
    marker: Doc = {"type": kind, member: NGSI_LD_NULL, "deletedAt": from_us(at_us)}
    if inst.get("datasetId"):
        marker["datasetId"] = inst["datasetId"]
    row = HistoryRow(
        tenant, entity_id, attr, inst.get("datasetId", "") or "", DELETION,
        at_us, None, None, at_us, at_us, None, orjson.dumps(NGSI_LD_NULL).decode(), orjson.dumps(marker),
    )
    row.packed = compact_instance(marker, row)
    return row


def unique_rows(rows: Sequence[HistoryRow]) -> list[HistoryRow]:
    """The rows with one per storage key, the last of each kept, in order.

    A batch may carry one instance twice (two changes of one attribute at one
    observedAt); an upsert statement may touch a row only once (PostgreSQL).
    """
    seen: dict[tuple[str, str, str, int, str, int], HistoryRow] = {}
    for r in rows:
        seen[(r.tenant, r.entity_id, r.attr, r.key_us, r.dataset_id, r.kind)] = r
    return list(seen.values()) if len(seen) < len(rows) else list(rows)


def _by_dataset(instances: Any) -> dict[str, Doc]:
    if isinstance(instances, dict):
        instances = [instances]
    if not isinstance(instances, list):
        return {}
    return {i.get("datasetId", "") or "": i for i in instances if isinstance(i, dict)}


def _at_us(text: str) -> int:
    """to_us of a change's `at` (the write's time), through `_TIMES`: its instances' modifiedAt is the same
    text, which value_row then finds there."""
    hit = _TIMES.get(text)
    if hit is None:
        hit = _time(text)
        if hit is None:
            return to_us(text)
    return hit[0]


def rows_of_change(record: ChangeRecord) -> tuple[EntityRow, list[HistoryRow]]:
    """What a change of the store's log adds to history: new or changed instances, and deletions."""
    before, after = record.before or {}, record.after or {}
    at_us = _at_us(record.at)
    rows: list[HistoryRow] = []
    for attr, instances in after.items():
        previous = before.get(attr)
        if previous is instances:
            continue  # untouched, shared with the before document (Change.before_intact): no comparison
        if attr in ENTITY_CORE:
            continue
        # one instance now and at most one before (most attributes; the store keeps each as a list of one):
        # what the walk below does, without building the two per-dataset dicts, and with one comparison of
        # the two instances (equal lists of one are equal instances: no row either way; batch20)
        inst = instances if type(instances) is dict else (
            instances[0] if type(instances) is list and len(instances) == 1 and type(instances[0]) is dict else None)
        prev = previous if type(previous) is dict else (
            previous[0] if type(previous) is list and len(previous) == 1 and type(previous[0]) is dict else None)
        if inst is not None and (previous is None or prev is not None):
            ds = inst.get("datasetId", "") or ""
            was = "" if prev is None else prev.get("datasetId", "") or ""
            if type(ds) is str and type(was) is str:
                if prev is None or was != ds or prev != inst:
                    rows.append(value_row(record.tenant, record.entity_id, attr, inst, at_us))
                if prev is not None and was != ds:
                    rows.append(deletion_row(record.tenant, record.entity_id, attr, prev, at_us))
                continue
        if previous == instances:
            continue  # untouched: one comparison, no instance walk
        old, new = _by_dataset(previous), _by_dataset(instances)
        for ds, inst in new.items():
            if old.get(ds) != inst:
                rows.append(value_row(record.tenant, record.entity_id, attr, inst, at_us))
        for ds, inst in old.items():
            if ds not in new:
                rows.append(deletion_row(record.tenant, record.entity_id, attr, inst, at_us))
    if not before.keys() <= after.keys():  # an attribute deleted (seldom): one look per key in C, not a walk
        for attr, instances in before.items():
            if attr not in ENTITY_CORE and attr not in after:
                for inst in _by_dataset(instances).values():
                    rows.append(deletion_row(record.tenant, record.entity_id, attr, inst, at_us))
    types = (record.after or record.before or {}).get("type") or []
    entity = EntityRow(record.tenant, record.entity_id, list(types), at_us if record.after is None else None)
    return entity, rows


def rows_of_change_reference(record: ChangeRecord) -> tuple[EntityRow, list[HistoryRow]]:
    """`rows_of_change` uncompiled (value_row_reference, every attribute through _by_dataset): the
    reference the tests hold it to."""
    before, after = record.before or {}, record.after or {}
    at_us = to_us(record.at)
    rows: list[HistoryRow] = []
    for attr, instances in after.items():
        if attr in ENTITY_CORE:
            continue
        previous = before.get(attr)
        if previous == instances:
            continue
        old, new = _by_dataset(previous), _by_dataset(instances)
        for ds, inst in new.items():
            if old.get(ds) != inst:
                rows.append(value_row_reference(record.tenant, record.entity_id, attr, inst, at_us))
        for ds, inst in old.items():
            if ds not in new:
                rows.append(deletion_row(record.tenant, record.entity_id, attr, inst, at_us))
    for attr, instances in before.items():
        if attr not in ENTITY_CORE and attr not in after:
            for inst in _by_dataset(instances).values():
                rows.append(deletion_row(record.tenant, record.entity_id, attr, inst, at_us))
    types = (record.after or record.before or {}).get("type") or []
    entity = EntityRow(record.tenant, record.entity_id, list(types), at_us if record.after is None else None)
    return entity, rows


# --- compact instance documents ---------------------------------------------------------------
#
# Most of an instance document repeats the row's own columns: its value is value_json, its
# observedAt/createdAt/modifiedAt/deletedAt are the time columns, its type is mostly "Property".
# The stored `instance` is then a layout string (one letter per member rebuilt from the columns,
# '*' where the members kept as JSON go, all together) followed by the JSON object of the members
# that cannot be rebuilt: b'TVOcm{}' for {"type":"Property","value":20.0,"observedAt":..,...}.
# A document whose members do not fit (kept members that are not one run) is stored whole; a
# document stored whole (every row written before this layout) starts with '{' (an empty layout:
# the JSON object is the document). The bytes rebuilt are the bytes of orjson.dumps(document).

_FIXED = {"T": b'"type":"Property"', "L": b'"type":"Relationship"'}
_TIME_KEYS = {"o": b'"observedAt":"', "O": b'"observedAt":"', "c": b'"createdAt":"', "C": b'"createdAt":"',
              "m": b'"modifiedAt":"', "M": b'"modifiedAt":"', "d": b'"deletedAt":"', "D": b'"deletedAt":"'}
_MEMBER_LETTER = {"type": "T", "value": "V", "object": "R", "observedAt": "o", "createdAt": "c", "modifiedAt": "m",
                  "deletedAt": "d"}


@functools.lru_cache(maxsize=8192)
def _stamp_ms(value: int) -> str:
    return from_us(value)


@functools.lru_cache(maxsize=8192)
def _stamp_s(value: int) -> str | None:
    """Whole seconds without a fraction ("2026-03-01T00:00:00Z"), None when the value has a fraction."""
    if value % 1_000_000:
        return None
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


@functools.lru_cache(maxsize=8192)
def _stamp_bytes(value: int, seconds: bool) -> bytes:
    return ((_stamp_s(value) or "") if seconds else _stamp_ms(value)).encode()


def _time_letter(letter: str, text: Any, us: int | None) -> str | None:
    if us is None or not isinstance(text, str):
        return None
    if text == _stamp_ms(us):
        return letter
    return letter.upper() if text == _stamp_s(us) else None


def compact_instance(inst: Doc, row: HistoryRow, *, created: bool = True) -> bytes:
    """The stored form of `inst` in `row` (row.instance is orjson.dumps(inst)); `created`: whether the
    row's created_us column is written with it (an UPDATE that keeps created_us passes False)."""
    layout = ""
    kept: dict[str, Any] = {}
    run = 0  # 0: no kept member yet, 1: in the run of kept members, 2: after it
    for key, value in inst.items():
        letter = _MEMBER_LETTER.get(key)
        if letter is not None:
            if letter == "T":
                letter = "T" if value == PROPERTY else "L" if value == "Relationship" else None
            elif letter == "R":
                letter = None if "value" in inst else "R"
            elif letter == "o":
                letter = _time_letter("o", value, row.observed_us)
            elif letter == "c":
                letter = _time_letter("c", value, row.created_us) if created else None
            elif letter == "m":
                letter = _time_letter("m", value, row.modified_us)
            elif letter == "d":
                letter = _time_letter("d", value, row.deleted_us)
        if letter is None:
            if run == 2:
                return row.instance  # kept members in two runs: whole
            if run == 0:
                layout += "*"
                run = 1
            kept[key] = value
        else:
            if run == 1:
                run = 2
            layout += letter
    return layout.encode() + (orjson.dumps(kept) if kept else b"{}")


@functools.lru_cache(maxsize=1024)
def _template(layout: bytes) -> tuple[bytes, str]:
    """A layout's document as a bytes %-template, and what fills each %b (v: value_json, *: kept, else a time)."""
    parts: list[bytes] = []
    fills = ""
    for letter in layout.decode():
        if letter in _FIXED:
            parts.append(_FIXED[letter])
        elif letter in "VR":
            parts.append(b'"value":%b' if letter == "V" else b'"object":%b')
            fills += "v"
        elif letter == "*":
            parts.append(b"%b")
            fills += "*"
        else:
            parts.append(_TIME_KEYS[letter] + b'%b"')
            fills += letter
    return b"{" + b",".join(parts) + b"}", fills


def rebuild_instance(stored: bytes, value_json: str | None, observed_us: int | None, created_us: int | None,
                     modified_us: int | None, deleted_us: int | None) -> bytes:
    """orjson.dumps of the instance document of a stored row (compact_instance undone)."""
    if stored[:1] == b"{":
        return stored  # stored whole
    start = stored.index(b"{")
    template, fills = _template(stored[:start])
    args: list[bytes] = []
    for f in fills:
        if f == "v":
            args.append((value_json or "null").encode())
        elif f == "*":
            args.append(stored[start + 1:-1])
        elif f in "oO":
            args.append(_stamp_bytes(observed_us or 0, f == "O"))
        elif f in "cC":
            args.append(_stamp_bytes(created_us or 0, f == "C"))
        elif f in "mM":
            args.append(_stamp_bytes(modified_us or 0, f == "M"))
        else:
            args.append(_stamp_bytes(deleted_us or 0, f == "D"))
    return template % tuple(args)


def stored_value(stored: bytes, value_json: str | None) -> tuple[bool, Any]:
    """Whether a stored row's document has deletedAt, and its value member (the first of value, object,
    languageMap, vocab, json, valueList, objectList; None without one): what
    orjson.loads(rebuild_instance(...)) would give, read from the layout, value_json and the kept
    members without building the document (a reading `TVOcm{}` parses only value_json)."""
    if stored[-2:] == b"{}" and stored[:1] != b"{":  # no kept members (every plain reading): letters only
        deleted = b"d" in stored or b"D" in stored
        return deleted, orjson.loads(value_json or "null") if b"V" in stored or b"R" in stored else None
    if stored[:1] == b"{":
        whole = orjson.loads(stored)
        return "deletedAt" in whole, _value_member(whole)
    start = stored.index(b"{")
    layout = stored[:start]
    kept = orjson.loads(stored[start:]) if len(stored) - start > 2 else {}
    deleted = b"d" in layout or b"D" in layout or "deletedAt" in kept
    if b"V" in layout:  # "value" comes first among the members
        return deleted, orjson.loads(value_json or "null")
    if "value" in kept:
        return deleted, kept["value"]
    if b"R" in layout:
        return deleted, orjson.loads(value_json or "null")
    return deleted, _value_member(kept)
