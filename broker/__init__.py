"""The embedded NGSI-LD context broker (FastAPI) and its stores."""
