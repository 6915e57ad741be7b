"""``python -m mnist_zoo.serve``: the ``mnist-zoo serve`` command on its own."""

import sys

from .command import main

sys.exit(main())
