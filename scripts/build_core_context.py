"""Write models/contexts/ngsi-ld-core-context-v1.9.jsonld from the text of Annex B.

Annex B of ETSI GS CIM 009 V1.9.1 prints the core @context; this script cuts
the JSON out of the clause text, adds the terms the published v1.9 file has
and Annex B lacks (see `models.context.core.PUBLISHED_ONLY_TERMS`), and
writes the shipped document.

    python scripts/build_core_context.py [path/to/spec-v1.9.1/B/B.md]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from models.context.core import CORE_CONTEXT_FILE, build_core_document

DEFAULT_SOURCE = PROJECT.parent / "shared/reference/ngsi-ld/spec-v1.9.1/B/B.md"
TARGET = PROJECT / "models/contexts" / CORE_CONTEXT_FILE


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    document = build_core_document(source.read_text(encoding="utf-8"))
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {TARGET} ({len(document['@context'])} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
