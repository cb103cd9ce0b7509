"""The explanations page's tables, built from the same threshold files the computations read."""

from __future__ import annotations

from typing import Any

from indicators.thresholds import (
    ATMO_LEVELS,
    ATMO_SCALES,
    DATA,
    EAQI_LEVELS,
    EAQI_SCALES,
    POLLUTANTS,
    heat_thresholds,
    noise_limits,
    noise_periods,
    who_guidelines,
)


def sources(name: str) -> str:
    """The comment lines (#) at the head of a data file: where its facts come from."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return " ".join(line.lstrip("# ").strip() for line in lines if line.startswith("#"))


def _bands(scales: dict[str, Any], levels: dict[int, Any], lang: str) -> dict[str, Any]:
    header = [levels[i].label(lang) for i in range(1, 7)]
    rows = []
    for pollutant, scale in scales.items():
        cells, low = [], None
        for upper in scale.uppers:
            cells.append(f"≤ {upper:g}" if low is None else f"{low:g} – {upper:g}")
            low = upper
        cells.append(f"> {low:g}")
        rows.append({"pollutant": POLLUTANTS[pollutant], "statistic": scale.statistic, "cells": cells})
    colours = [{"colour": levels[i].colour, "label": levels[i].label(lang)} for i in range(1, 7)]
    return {"header": header, "rows": rows, "colours": colours}


def tables(lang: str) -> dict[str, Any]:
    """Every table and source the page shows."""
    return {
        "atmo": _bands(ATMO_SCALES, ATMO_LEVELS, lang), "atmo_source": sources("atmo_2020.csv"),
        "eaqi": _bands(EAQI_SCALES, EAQI_LEVELS, lang), "eaqi_source": sources("eaqi_2024.csv"),
        "who": [{"pollutant": POLLUTANTS[p], "averaging": a, "value": v} for (p, a), v in who_guidelines().items()],
        "who_source": sources("who_2021.csv"),
        "noise": [{"reference": r, "indicator": i, "value": v} for (r, i), v in noise_limits().items()],
        "periods": noise_periods(), "noise_source": sources("noise_limits.csv") + " " + sources("noise_periods.csv"),
        "heat": heat_thresholds(), "heat_source": sources("heat.csv"),
    }
