#!/usr/bin/env bash
# The paper-scale GPU rehearsal (issue #14) as one command on a machine with one CUDA GPU, for a session that is
# lent one for a few minutes: `star-repro bench paper --size paper --device cuda` plus NVML samples of the GPU's
# load. Run from the project root. OUT: where the records go (default ./gpu-rehearsal).
#   PARTS / VARIANTS: comma lists passed to --parts / --variants (default: everything).
#   Extra Python packages the machine lacks can be given as wheels in ./.whl (installed into /tmp/site, no network).
set -u
DEVICE="${DEVICE:-cuda}" SIZE="${SIZE:-paper}"
OUT="${OUT:-$PWD/gpu-rehearsal}"
mkdir -p "$OUT"
if [ -z "${NO_WHEELS:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
{ date -u; uname -a; nproc; free -g | head -2; df -h /dev/shm | tail -1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c 'import torch, numpy; print("torch", torch.__version__, "cuda", torch.version.cuda, "numpy", numpy.__version__)'
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
nvidia-smi dmon -s um -d 1 > "$OUT/dmon.txt" 2>&1 &
DMON=$!
timeout "${REHEARSAL_TIMEOUT:-420}" python3 -m star_repro.cli bench paper --device "$DEVICE" --size "$SIZE" \
  --out "$OUT/paper-rehearsal.json" --workdir /tmp/rehearsal ${PARTS:+--parts "$PARTS"} ${VARIANTS:+--variants "$VARIANTS"} 2>&1 | tee "$OUT/rehearsal.log" | grep -v "it/s\]"
rc=${PIPESTATUS[0]}
kill "$DMON" 2>/dev/null
cat "$OUT/paper-rehearsal.md" 2>/dev/null
echo "rehearsal exit code: $rc"
exit "$rc"
