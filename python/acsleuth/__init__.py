"""acsleuth: anomalous cells in single-cell RNA-seq data against a reference
of normal cells, and their subtypes — the Rust engine of the ``acsleuth``
command, called in-process on AnnData objects.

Functions follow scanpy's ``sc.tl.*`` conventions: the target AnnData is
annotated in place (``copy=True`` returns an annotated copy instead).

- :func:`detect` — novelty scores, calls at a false discovery rate, q-values
  (``obs['acsleuth_*']``, ``obsm['X_acsleuth']``, ``uns['acsleuth']``);
- :func:`run` — the whole workflow: detection, kin pairing, batch
  correction, subtypes (``obs['acsleuth_subtype']``);
- :class:`Detector` — a reference fitted once, saved, and used to score
  many targets.
"""

from ._acsleuth import __version__
from ._api import detect, run
from ._detector import Detector
from ._report import report

__all__ = ["detect", "run", "Detector", "report", "__version__"]
