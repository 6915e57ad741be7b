"""``mnist-zoo serve``: a local page to draw a digit and watch every model read it.

```python
from mnist_zoo.serve import DigitCollector, DigitReader, make_server
reader = DigitReader.load(["hub/simplecnn", "hub/deepercnn", "hub/minivgg"])
server = make_server(reader, DigitCollector("my-digits"), port=8765)
print(server.url)
server.serve_forever()
```

The page (``static/``) is served by the package itself and loads nothing from elsewhere.
:mod:`~mnist_zoo.serve.reader` turns a picture into readings with the library's own
``preprocess``, ``predict`` and ``Ensemble``; :mod:`~mnist_zoo.serve.collect` saves labelled
digits as an IDX pair; :mod:`~mnist_zoo.serve.server` is the HTTP side;
:mod:`~mnist_zoo.serve.command` the command line.
"""

from __future__ import annotations

from .collect import DEFAULT_COLLECT_DIR, DigitCollector
from .command import add_serve_parser, run_serve
from .reader import DEFAULT_MODELS, LOW_CONFIDENCE, DigitReader, ModelReading, Reading
from .server import MAX_UPLOAD_BYTES, DigitServer, make_server

__all__ = [
    "DEFAULT_COLLECT_DIR",
    "DEFAULT_MODELS",
    "LOW_CONFIDENCE",
    "MAX_UPLOAD_BYTES",
    "DigitCollector",
    "DigitReader",
    "DigitServer",
    "ModelReading",
    "Reading",
    "add_serve_parser",
    "make_server",
    "run_serve",
]
