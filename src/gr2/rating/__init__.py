"""The rating-prediction task (RecZero, docs/method.md §10; docs/rating.md): the student predicts a
user's 1-5 rating of an item after three reasoning steps, is trained by pure RL on a rule-based
reward, and is compared on RMSE / MAE with global-mean, item-mean and matrix-factorisation
baselines.

* :mod:`gr2.rating.config` — :class:`RatingConfig` (no heavy imports: read by :mod:`gr2.config`);
* :mod:`gr2.rating.data` — examples and fit ratings from the data stage's files;
* :mod:`gr2.rating.baselines` — global mean, item mean, biased MF (scikit-surprise);
* :mod:`gr2.rating.rewards` — the reward, pure, and its TRL adapter;
* :mod:`gr2.rating.llm` — prompts, greedy answers, DAPO training;
* :mod:`gr2.rating.stage` — ``run_rating``, the tables.

The prompt and its parser are :mod:`gr2.prompts.rating`; the errors, :mod:`gr2.metrics.rating`.
"""
