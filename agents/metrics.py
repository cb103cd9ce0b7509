"""A tiny Prometheus registry: counters, gauges and histograms with labels, rendered as text.

    registry = Metrics()
    received = registry.counter("metropole_agent_messages_received_total", "Southbound messages received", ["transport", "protocol"])
    received.labels(transport="mqtt", protocol="json").inc()
    depth = registry.gauge("metropole_agent_outbox_depth", "Updates waiting in the outbox")
    depth.set(12)
    latency = registry.histogram("metropole_agent_delivery_seconds", "Delivery latency", buckets=(0.01, 0.1, 1))
    latency.observe(0.04)
    registry.render()   # text exposition format 0.0.4, served on /metrics

Declaring the same name twice returns the first declaration (so two modules
may share a metric), unless kind or labels differ, which is a programming error.

Hand-written rather than prometheus_client (which the broker uses) for the
increment's cost: `python -m bench.metrics_bench` (CPU ns per increment of a
kept labelled child, 2026-12-06, this 2-core machine): 136 here against 283
for prometheus_client 0.26 with one thread, 143 against 289 with four
(`labels(...).inc()` looked up each time: 1,603 against 1,701). At a few
increments per message that is under 1 µs of the agent's ~150-190 µs of CPU
per message (README, Benchmarks): small; a move to the library would be
measured again end to end with bench.ingest_bench.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate
from threading import get_ident

__all__ = ["CONTENT_TYPE", "Counter", "Gauge", "Histogram", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LabelKey = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, object]) -> LabelKey:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def _lines(self) -> Iterable[str]:  # pragma: no cover - overridden
        return ()

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self._lines())


class _Series:
    """The value of one counter series, kept per thread and added up when read.

    An increment touches only its own thread's cell, so no lock is needed and
    none is taken: the hot paths (a few increments per message) cost a dict
    update. Reads (scrapes, tests) sum the cells.
    """

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[int, float] = {}

    def add(self, amount: float) -> None:
        cells, me = self._cells, get_ident()
        cells[me] = cells.get(me, 0) + amount

    def value(self) -> float:
        return sum(list(self._cells.values()))  # list(): a copy taken at once, while threads may add cells


class _CounterChild:
    """One labelled series of a counter."""

    __slots__ = ("_series",)

    def __init__(self, series: _Series) -> None:
        self._series = series

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._series.add(amount)

    def get(self) -> float:
        return self._series.value()


class _GaugeChild:
    """One labelled series of a gauge."""

    __slots__ = ("_key", "_metric")

    def __init__(self, metric: Gauge, key: LabelKey) -> None:
        self._metric = metric
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        self._metric._add(self._key, amount)

    def dec(self, amount: float = 1.0) -> None:
        self._metric._add(self._key, -amount)

    def set(self, value: float) -> None:
        self._metric._set(self._key, value)

    def get(self) -> float:
        return self._metric._values.get(self._key, 0.0)


class Counter(_Metric):
    """A value that only goes up (``inc``)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help, labelnames)
        self._series: dict[LabelKey, _Series] = {}
        if not self.labelnames:
            self._series[()] = _Series()

    def labels(self, **labels: object) -> _CounterChild:
        key = self._key(labels)
        with self._lock:
            series = self._series.setdefault(key, _Series())
        return _CounterChild(series)

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        if self.labelnames:
            self._key({})  # raises: a labelled counter is incremented through labels()
        self._series[()].add(amount)

    def get(self, **labels: object) -> float:
        series = self._series.get(self._key(labels))
        return 0.0 if series is None else series.value()

    def _lines(self) -> Iterable[str]:
        for key, series in sorted(self._series.items(), key=lambda kv: kv[0]):
            yield f"{self.name}{_labels(self.labelnames, key)} {_number(series.value())}"


class Gauge(_Metric):
    """A value that goes up and down (``set``, ``inc``, ``dec``); rarely written, so under a lock."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[LabelKey, float] = {}
        if not self.labelnames:
            self._values[()] = 0.0

    def labels(self, **labels: object) -> _GaugeChild:
        key = self._key(labels)
        with self._lock:
            self._values.setdefault(key, 0.0)
        return _GaugeChild(self, key)

    def set(self, value: float) -> None:
        self._set(self._key({}), value)

    def inc(self, amount: float = 1.0) -> None:
        self._add(self._key({}), amount)

    def dec(self, amount: float = 1.0) -> None:
        self._add(self._key({}), -amount)

    def get(self, **labels: object) -> float:
        return self._values.get(self._key(labels), 0.0)

    def _add(self, key: LabelKey, amount: float) -> None:
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def _set(self, key: LabelKey, value: float) -> None:
        with self._lock:
            self._values[key] = float(value)

    def _lines(self) -> Iterable[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.labelnames, key)} {_number(value)}"


class _Observations:
    """One histogram series, per thread like `_Series`: each cell is [count per bucket..., +Inf count, sum]."""

    __slots__ = ("_bounds", "_cells")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._cells: dict[int, list[float]] = {}

    def observe(self, value: float) -> None:
        cell = self._cells.get(get_ident())
        if cell is None:
            cell = self._cells[get_ident()] = [0] * (len(self._bounds) + 1) + [0.0]
        cell[bisect_left(self._bounds, value)] += 1  # the first bucket whose bound is >= value
        cell[-1] += value

    def totals(self) -> tuple[list[float], float]:
        """(cumulative count per bucket, +Inf last; sum of the observations)."""
        counts = [0.0] * (len(self._bounds) + 1)
        total = 0.0
        for cell in list(self._cells.values()):
            for i in range(len(counts)):
                counts[i] += cell[i]
            total += cell[-1]
        return list(accumulate(counts)), total


class _HistogramChild:
    __slots__ = ("_series",)

    def __init__(self, series: _Observations) -> None:
        self._series = series

    def observe(self, value: float) -> None:
        self._series.observe(value)


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__(name, help, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self._series: dict[LabelKey, _Observations] = {}
        if not self.labelnames:
            self._series[()] = _Observations(self.buckets)

    def labels(self, **labels: object) -> _HistogramChild:
        key = self._key(labels)
        with self._lock:
            series = self._series.setdefault(key, _Observations(self.buckets))
        return _HistogramChild(series)

    def observe(self, value: float) -> None:
        if self.labelnames:
            self._key({})  # raises: a labelled histogram is observed through labels()
        self._series[()].observe(value)

    def count(self, **labels: object) -> float:
        series = self._series.get(self._key(labels))
        return 0.0 if series is None else series.totals()[0][-1]

    def _lines(self) -> Iterable[str]:
        for key, series in sorted(self._series.items(), key=lambda kv: kv[0]):
            cumulative, total = series.totals()
            for bound, n in zip(self.buckets, cumulative):
                le = 'le="' + _number(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.labelnames, key, le)} {_number(n)}"
            inf = 'le="+Inf"'
            yield f"{self.name}_bucket{_labels(self.labelnames, key, inf)} {_number(cumulative[-1])}"
            yield f"{self.name}_sum{_labels(self.labelnames, key)} {_number(total)}"
            yield f"{self.name}_count{_labels(self.labelnames, key)} {_number(cumulative[-1])}"


class Metrics:
    """The registry every agent component declares its metrics in."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _declare(self, cls: type[_Metric], name: str, help: str, labelnames: Sequence[str], **kw: object) -> _Metric:
        with self._lock:
            existing = self._metrics.get(name)
            if existing is not None:
                if type(existing) is not cls or existing.labelnames != tuple(labelnames):
                    raise ValueError(f"metric {name} already declared as {existing.kind} {existing.labelnames}")
                return existing
            metric = cls(name, help, labelnames, **kw)
            self._metrics[name] = metric
            return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._declare(Counter, name, help, labelnames)  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._declare(Gauge, name, help, labelnames)  # type: ignore[return-value]

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._declare(Histogram, name, help, labelnames, buckets=buckets)  # type: ignore[return-value]

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    def render(self) -> str:
        """The whole registry in the Prometheus text exposition format."""
        return "".join(m.render() for _, m in sorted(self._metrics.items()))
