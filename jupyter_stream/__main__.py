"""``python -m jupyter_stream``: the ``jupyter-stream`` command."""

import sys

from ._cli import main

sys.exit(main())
