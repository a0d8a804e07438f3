from __future__ import annotations

import tiny_llm

from gr2.llm.generate import GenerationParams
from gr2.traces.teachers import LocalTeacher

CORPUS = ["<|im_start|>system\nYou rank items.<|im_end|>\n<|im_start|>user\nRank <s_a_1><s_b_2> now.<|im_end|>\n"
          "<|im_start|>assistant\n{\"explanation\": \"x\", \"recommendations\": []}<|im_end|>"] * 4


def test_local_teacher_is_batched_and_deterministic_at_temperature_0():
    tok = tiny_llm.make_tokenizer(CORPUS, vocab_size=300)
    teacher = LocalTeacher(tiny_llm.make_model(len(tok), max_positions=128), tok, name="local:tiny", batch_size=2)
    convs = [[{"role": "system", "content": "You rank items."}, {"role": "user", "content": f"Rank {q} now."}]
             for q in ("<s_a_1><s_b_2>", "a", "<s_a_1>")]
    params = GenerationParams(max_new_tokens=5, temperature=0.0)
    first = teacher.complete(convs, params, seeds=[1, 2, 3])
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert teacher.complete(convs, params, seeds=[7, 8, 9]) == first
