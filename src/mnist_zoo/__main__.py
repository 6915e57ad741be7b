"""``python -m mnist_zoo``: the ``mnist-zoo`` command, for when its script is not on the path."""

import sys

from .cli import main

sys.exit(main())
