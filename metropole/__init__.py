"""The `metropole` command line: `run` (the whole platform on embedded defaults), `broker` (one NGSI-LD broker instance), later `check` (compliance reports)."""
