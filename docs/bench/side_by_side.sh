#!/usr/bin/env bash
# Scale's training step against its PyTorch peer (docs/bench/torch_peer.py), side by side in one run: R alternating
# rounds of Scale (fp32 and bf16) and the peer (fp32 and --bf16), at 1 and 2 threads, every method, then the two
# machines' matrix-product peaks. On 2 threads each side runs twice: as it waits by default (Scale: idle OpenMP threads
# sleep at once; the peer: libgomp's default) and with GOMP_SPINCOUNT=1000000 (they spin first; docs/bench.md); each line
# says which in `omp_waiting`. Each figure is a JSON line in OUT (default ./side-by-side.jsonl); docs/bench.md's table
# is their medians. Run it alone on the machine: anything else running makes both sides' threads contend.
#
#   docs/bench/side_by_side.sh [ROUNDS] [OUT]
#
# Needs the built `scale` (SCALE=path, default Scale.Host/bin/Release/net10.0/linux-x64/scale) and Debian's python3-torch
# with libopenblas0-pthread. The machine's OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE overrides are removed for the
# peer's commands only, so that OpenBLAS picks its best kernels for this CPU (docs/bench.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
out=${2:-side-by-side.jsonl}
scale=${SCALE:-Scale.Host/bin/Release/net10.0/linux-x64/scale}
peer=docs/bench/torch_peer.py
methods=full,preserve,adapt,depth,lora
[[ -x $scale ]] || { echo "no built scale at $scale: dotnet build Scale.Host -c Release" >&2; exit 2; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "the peer needs Debian's PyTorch: apt-get install python3-torch libopenblas0-pthread" >&2; exit 2; }
: > "$out"
tag() { python3 -c "import json,sys; side,r,w=sys.argv[1],sys.argv[2],sys.argv[3]
for line in sys.stdin:
    line=line.strip()
    if line.startswith('{'):
        d=json.loads(line); d['side']=side; d['round']=int(r); d.setdefault('omp_waiting', w); print(json.dumps(d))" "$1" "$2" "$3"; }
spin=1000000
for round in $(seq 1 "$rounds"); do
  for threads in 1 2; do
    waits=(default); [[ $threads == 2 ]] && waits=(default spin)
    for waiting in "${waits[@]}"; do
      spinning=(); peer_waiting="libgomp default"
      [[ $waiting == spin ]] && { spinning=(GOMP_SPINCOUNT=$spin); peer_waiting="spin $spin"; }
      for precision in fp32 bf16; do
        echo "round $round: scale, $threads thread(s), $precision, $waiting" >&2
        for method in ${methods//,/ }; do
          env "${spinning[@]}" "$scale" bench --only "$method" --threads "$threads" --precision "$precision" --steps 20 --warmup 3 \
            | tag scale "$round" "" >> "$out"
        done
        echo "round $round: peer, $threads thread(s), $precision, $waiting" >&2
        bf16=(); [[ $precision == bf16 ]] && bf16=(--bf16)
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${spinning[@]}" /usr/bin/python3 "$peer" --modes "$methods" --threads "$threads" --steps 20 --warmup 3 "${bf16[@]}" \
          | tag peer "$round" "$peer_waiting" >> "$out"
      done
    done
  done
done
echo "peaks" >&2
# Three processes a side: on 2 threads the fp32 peak of one process differs from the next's (docs/bench.md).
for threads in 1 2 1 2 1 2; do
  "$scale" bench --peak --threads "$threads" | tag scale 0 "" >> "$out"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 "$peer" --peak --threads "$threads" | tag peer 0 "libgomp default" >> "$out"
done
echo "wrote $out" >&2
