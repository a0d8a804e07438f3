"""The candidates stage (docs/method.md §2): fit a pre-ranker on the training split and write the
K-candidate lists the LLM re-ranker permutes, for train (cross-fitted pre-rankers), val and test.

Light on import (no torch): the config in :mod:`gr2.candidates.config` (``CandidatesConfig``, read by
:mod:`gr2.config`), the stage in :mod:`gr2.candidates.stage` (``run_candidates``). The pre-rankers
themselves are a library, :mod:`gr2.prerank`.
"""
