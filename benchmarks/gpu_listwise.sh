#!/usr/bin/env bash
# gpu_listwise.sh — the listwise student at GPU scale, on a run folder whose CPU stages (data, sid,
# candidates) were made on a CPU machine with the medium profile:
#
#   (here)   gr2 run --dataset beauty --profile medium --out runs/beauty-medium --stages data sid candidates traces
#            mkdir -p runs/gpu-listwise && cp -r runs/beauty-medium/{data,sid,candidates,traces,manifest.json} runs/gpu-listwise/
#            rm -rf runs/gpu-listwise/sid/cache     # the embedding cache is not needed and too big to carry
#   (device, after `bash benchmarks/gpu_setup.sh install`, carry ["runs/gpu-listwise"]):
#            bash benchmarks/gpu_listwise.sh runs/gpu-listwise 470
#
# Stages, each under what is left of the budget (seconds, 2nd argument): mid-training (40 + 400
# steps x 32 examples), traces (the evidence teacher, CPU), listwise SFT of the whole model (300
# steps x 32 lists, validation N@5 curve on 300 lists), eval (every test list, the student direct and
# shuffled-order control, LambdaMART and the fusion row on 1,000 val lists); then, if time is left,
# the trace objective on the same budget (variants/traces, curve only) for the learning-curve
# comparison. What finished is packed into $OUT/gpu-listwise.tar.gz (results, metrics, curves,
# report) with the log in $OUT/log.txt.
set -uo pipefail
run=${1:?run folder}
budget=${2:-470}
start=$(date +%s)
out=${OUT:-/tmp/out}
mkdir -p "$out"
. /tmp/gr2-env.sh
export PYTHONUNBUFFERED=1

sets=(--set midtrain.warmup_steps=40 --set midtrain.steps=400 --set midtrain.batch_size=32
      --set midtrain.n_examples=12800
      --set sft.train_top_layers=null --set sft.steps=300 --set sft.batch_size=32 --set sft.lr=1.0e-4
      --set sft.curve_lists=300 --set sft.curve_points=6 --set sft.save_steps=100 --set sft.logging_steps=10
      --set eval.llm_lists=null --set eval.fusion_val_lists=1000 --set eval.llm_batch_size=32)

left() { echo $((budget - ($(date +%s) - start))); }

stage() {  # stage NAME [extra args]: runs one stage under the time left
    local name=$1; shift
    local t=$(left)
    if [ "$t" -le 20 ]; then echo "[gpu_listwise] no time left for $name"; return 1; fi
    echo "[gpu_listwise] $name (limit ${t}s) at +$(( $(date +%s) - start ))s"
    timeout "$t" python3 -m gr2.cli run --out "$run" --profile medium "${sets[@]}" --stages "$name" "$@" \
        2>&1 | grep -v -E "it/s\]|s/it\]|Warning|warn\(" | tail -n 15
    local rc=${PIPESTATUS[0]}
    echo "[gpu_listwise] $name rc=$rc at +$(( $(date +%s) - start ))s"
    return "$rc"
}

{
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
    stage midtrain && stage traces && stage sft && stage eval
    if [ "$(left)" -gt 90 ]; then  # the trace objective, same steps x batch, for the learning curve
        echo "[gpu_listwise] variant: trace SFT on the same budget"
        timeout "$(left)" python3 -m gr2.cli run --reuse "$run" --out "$run/variants/traces" --profile medium \
            "${sets[@]}" --set sft.objective=traces --set sft.batch_size=32 --stages data sid candidates midtrain traces sft \
            2>&1 | grep -v -E "it/s\]|s/it\]|Warning|warn\(" | tail -n 8
        python3 -m gr2.cli report --run-dir "$run" 2>&1 | tail -n 2
    fi
    echo "[gpu_listwise] done at +$(( $(date +%s) - start ))s"
} 2>&1 | tee "$out/log.txt"

cd "$run" && tar czf "$out/gpu-listwise.tar.gz" --ignore-failed-read manifest.json report.md report \
    midtrain/metrics.json traces/stats.json sft/metrics.json sft/curve.jsonl eval/results.md eval/results.json \
    eval/fusion/importances.json variants/traces/sft/metrics.json variants/traces/sft/curve.jsonl 2>/dev/null
ls -la "$out"
