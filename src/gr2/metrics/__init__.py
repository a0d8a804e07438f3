"""Metrics shared by every stage that measures a ranking: the evaluation (:mod:`gr2.eval`), the teacher
gate and trace statistics (:mod:`gr2.traces`), the report (:mod:`gr2.report`) and the RL rewards
(:mod:`gr2.rl.rewards`). A neutral package: numpy only, it imports no other gr2 stage.

* :mod:`gr2.metrics.ranking` — the one implementation of R@k, NDCG@k, MRR and pairwise AUC on a ranked
  list of graded labels, per list and averaged over lists (``nan`` where a metric is undefined).
* :mod:`gr2.metrics.bootstrap` — bootstrap confidence intervals and the paired bootstrap test over
  per-list metric values.
"""
