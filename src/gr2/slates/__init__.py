"""Bring-your-own slates: logged re-ranking requests with graded labels (docs/slates.md).

With ``slates.path`` set (``gr2 run --slates FILE --items FILE``) the ``data`` and ``candidates``
stages read the slates file instead of a dataset and a pre-ranker (:mod:`gr2.slates.stage`); every
later stage runs unchanged on the graded lists. :mod:`gr2.slates.format` documents and validates
the file, :mod:`gr2.slates.movielens` builds an example from MovieLens-1M ratings.
"""
