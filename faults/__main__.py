"""`python -m faults`: see faults/__init__.py."""

import sys

from faults.run import main

sys.exit(main())
