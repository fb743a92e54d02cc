"""The bias/variance diagnosis report, one job per module.

Inputs (``inputs``, ``trials``) -> what the stage computes by training and predicting: the learning
curve (``curves``), the stability check over seeds (``stability``, its fits in ``seeds``) and the
error analysis of the final model (``analysis``) -> numbers computed once (``context``: ``stats``
intervals, ``evidence`` for what they can settle, the gradient-``health`` flag, the ``diagnosis``
rule, the ties and selection-corrected score (``selection``), ``remedies`` (``remedies_data``,
``remedies_fix``) as params.yaml ``changes``, search-range ``edges``, the ``compare``-ison with the
previous diagnosis) -> ``sections*`` laid out by ``build`` and ``render`` with ``figures``. Nothing
here talks to MLflow: the report stage publishes through ``pipeline.tracking``.
"""
