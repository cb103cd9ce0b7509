"""NGSI-LD core information model (ETSI GS CIM 009 V1.9.1) and Smart Data Models.

- `vocabulary`: names of the core model and the internal entity format (ENF);
- `errors`: the error hierarchy, one class per ProblemDetails type;
- `validation`: URIs, names, date-times, language maps;
- `geojson`: GeoJSON geometries for GeoProperty values;
- `normalize`: reading normalized and concise input into canonical normalized form;
- `representation`: normalized, concise and simplified (keyValues) conversions;
- `context`: JSON-LD @context resolution with the shipped core and Smart Data Models contexts;
- `expansion`: normalized entities to ENF (IRIs) and back.

This package depends on nothing else of the platform.
"""
