#!/usr/bin/env bash
# Issue 23's GPU rows and every CUDA test in one call of a lent GPU machine.
#
# A development session that is lent a GPU (the device tool: 15 minutes of device time in all,
# at most 10 minutes a call, a fresh machine with its own torch, PyG, numba and Triton, and no
# network) spends it on one prepared call:
#
#   bash benchmarks/gpu_session.sh prepare    # here: Cora and the missing wheels into .gpu/
#   # the device tool: command "bash benchmarks/gpu_session.sh run", carry [".gpu"],
#   # timeout_s 580; the results and the log come back from $OUT
#
# then copies the JSON and Markdown files from $OUT into benchmarks/results/ and cites them.
# `run` goes on past a failed step (each step has its own time limit, and the log says which
# failed), so one broken step does not cost the others' device time.
#
# Steps (GPU_SESSION_STEPS picks some; default all):
#   tests   every test marked `cuda`, and the Triton kernels compiled and interpreted
#   layers  one GATConv step at Cora's and ogbn-arxiv's size: gnnkit against PyG's GATConv
#           and tuned PyG (benchmarks/gpu_gat.py), the issue's "GPU arxiv-size GAT layer" row
#   node    Cora GAT and GCN training, gnnkit's harness against PyG's examples and tuned PyG
#           (gnnkit bench node), the issue's "H100/H200 Cora GAT" row; GAT again with
#           gnnkit's training step captured as a CUDA graph (--cuda-graph)
#
# GPU_SESSION_DEVICE=cpu runs the same steps on the CPU with tiny settings: a check of this
# script and of the commands it runs, not a measurement (tests/test_gpu_session.py runs it).
set -uo pipefail
cd "$(dirname "$0")/.."

GPU_DIR="$PWD/.gpu"                  # ignored by git; the device tool carries it
# Packages the device image lacks that gnnkit or its tests import (ogb's with their own needs).
WHEELS=(ogb==1.3.6 outdated==0.2.2 littleutils==0.2.4 pooch==1.9.0 platformdirs==4.14.9)
OUT_DIR=${OUT:-$GPU_DIR/out}       # where the results go; the device tool returns $OUT

prepare() {
    local mirror=${GNNKIT_MIRROR:-../shared/datasets}
    if [ ! -d "$mirror/planetoid/Cora/raw" ]; then
        echo "gpu_session.sh prepare: no Cora under $mirror/planetoid/Cora/raw; set GNNKIT_MIRROR to the raw-data mirror" >&2
        return 1
    fi
    mkdir -p "$GPU_DIR/mirror/planetoid" "$GPU_DIR/whl"
    cp -r "$mirror/planetoid/Cora" "$GPU_DIR/mirror/planetoid/"
    # The device's python is 3.12 (benchmarks/results/gpu_h100.md): wheels for it, no deps.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d "$GPU_DIR/whl" "${WHEELS[@]}" || return 1
    du -sh "$GPU_DIR"
}

# step NAME SECONDS COMMAND...: run COMMAND under a time limit, log its status, go on.
step() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start))s"
    [ "$rc" -eq 0 ] || FAILED+=("$name")
}

run() {
    local device=${GPU_SESSION_DEVICE:-cuda}
    local steps=${GPU_SESSION_STEPS:-tests layers node}
    local out=$OUT_DIR py=${PYTHON:-python3}
    FAILED=()
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
    export GNNKIT_MIRROR=${GNNKIT_MIRROR:-$GPU_DIR/mirror}
    export GNNKIT_DATA=${GNNKIT_DATA:-/tmp/gnnkit-data}
    if compgen -G "$GPU_DIR/whl/*.whl" >/dev/null \
        && "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/gnnkit-site "$GPU_DIR"/whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/gnnkit-site"
    fi
    echo "gnnkit $(git rev-parse --short HEAD 2>/dev/null || echo '(no git)'), device $device, steps: $steps"
    [ "$device" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$py" -c 'import torch, torch_geometric, numba; print("torch", torch.__version__, "PyG", torch_geometric.__version__, "numba", numba.__version__, "cuda", torch.cuda.is_available())'

    local quick=() layers=(--sizes cora arxiv --repeat 15 --warmup 3) node=(--runs 6)
    if [ "$device" = cpu ]; then  # a check of the commands, not a measurement
        layers=(--sizes cora --repeat 2 --warmup 1)
        node=(--runs 1 --epochs 3 --warmup 1)
        quick=(--threads 1)
    fi
    case " $steps " in *" tests "*)
        step tests 100 "$py" -m pytest -q -p no:cacheprovider -m cuda tests
        step triton 50 "$py" -m pytest -q -p no:cacheprovider tests/test_gat_triton.py ;;
    esac
    case " $steps " in *" layers "*)
        step layers 120 "$py" benchmarks/gpu_gat.py --device "$device" --out-dir "$out" "${layers[@]}" ;;
    esac
    case " $steps " in *" node "*)
        local name options
        for name in gat gcn gat-graph; do
            options=()
            if [ "$name" = gat-graph ]; then
                [ "$device" = cpu ] && echo "=== node-gat-graph: skipped (CUDA graphs need CUDA)" && continue
                options=(--cuda-graph)
            fi
            step "node-$name" 90 "$py" -m gnnkit bench node --dataset cora --model "${name%-graph}" \
                --compare pyg,pyg-tuned --device "$device" --no-progress "${node[@]}" "${quick[@]}" \
                "${options[@]}" --json "$out/node_cora_${name}_$device.json"
        done ;;
    esac
    echo "=== files in $out:" && ls -l "$out"
    if [ "${#FAILED[@]}" -gt 0 ]; then
        echo "=== failed steps: ${FAILED[*]}"
        return 1
    fi
    echo "=== every step passed"
}

case "${1:-}" in
    prepare) prepare ;;
    run)
        mkdir -p "$OUT_DIR"
        run 2>&1 | tee "$OUT_DIR/session.log"
        exit "${PIPESTATUS[0]}" ;;
    *) echo "usage: bash benchmarks/gpu_session.sh prepare|run (see the comment at its top)" >&2; exit 2 ;;
esac
