"""The training layer every training stage (``midtrain``, ``sft``, ``rl``, ``rating``) is built on, so that the
stages are peers that never import one another:

* :mod:`gr2.training.config` — the fields they share (LoRA, checkpoints, logs, device, seed; DAPO's);
* :mod:`gr2.training.setup` — seed, CPU threads, device, LoRA adapters, top-layer freezing;
* :mod:`gr2.training.loop` — the CPU-safe TRL arguments, one training phase with TensorBoard,
  checkpoints and resume, and saving the (LoRA-merged) model;
* :mod:`gr2.training.dapo` — DAPO: TRL's GRPO trainer with dynamic sampling (``rl``, ``rating``).

No heavy imports here: :mod:`gr2.config` reads :mod:`gr2.training.config`.
"""
