"""The mlobs demo: two real pipelines on data that ships with Python and scikit-learn.

* :mod:`mlobs.demo.text_pipeline`: CPython's pydoc topics as transcripts
  (cleaning → chunking → embedding → key_sentences → summary, the last optional).
* :mod:`mlobs.demo.visual_pipeline`: scikit-learn's handwritten digits as video clips
  (frames → features → digit_classifier, and frame_quality, optional, in parallel threads).
* :mod:`mlobs.demo.models`: the scikit-learn models, fitted once per process, with
  weights digests over their fitted parameters.
* :mod:`mlobs.demo.runner`: :func:`run_demo`, what ``mlobs demo`` calls.

Needs the ``demo`` extra (scikit-learn); no network.
"""

from mlobs.demo.runner import DemoSummary, run_demo

__all__ = ["DemoSummary", "run_demo"]
