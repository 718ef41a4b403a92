"""Evaluation: datasets, experiments, evaluators (the ``evaluate`` hook),
comparison and gates. A reader and writer above ``storage``; the core never
imports it. ``chainsight.evaluate`` is :func:`chainsight.framework.eval.runner.evaluate`."""
