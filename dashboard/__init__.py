"""The public dashboard: map, town and sensor pages, indicator explanations, reports and open data.

Server-rendered HTML (Jinja2) with SVG maps and charts drawn on the server:
no JavaScript, no web font, no third-party asset, so a page weighs a few tens
of kilobytes, works on an old phone and in a screen reader, and needs no CDN.
It reads the indicators and measures from any NGSI-LD broker.
"""
