"""`python -m metropole` is the same as the `metropole` console script."""

from metropole.cli import main

raise SystemExit(main())
