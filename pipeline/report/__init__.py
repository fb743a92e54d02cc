"""The bias/variance diagnosis report, one job per module.

Inputs (``inputs``, ``trials``) -> the one training it does, the learning curve (``curves``) ->
numbers computed once (``context``: ``stats`` intervals, the ``diagnosis`` rule, ``remedies`` as
params.yaml ``changes``, search-range ``edges``, the ``compare``-ison with the previous
diagnosis) -> ``sections*`` laid out by ``build`` and ``render`` with ``figures``. Nothing here
talks to MLflow: the report stage publishes through ``pipeline.tracking``.
"""
