#!/usr/bin/env bash
# Compares two builds of hearth on SQLite in alternating pairs:
#
#     benches/pairs.sh OLD_BINARY NEW_BINARY [PAIRS] [hearth bench arguments…]
#
# (defaults: 6 pairs, `--hl7 --seconds 5`). Each run gets a fresh database, and the pairs
# alternate which binary runs first: on the 2-core machine the second of two back-to-back runs
# of one binary measured ~10 % faster in 4 of 5 tries, and the machine's speed drifts by ±30 %
# within minutes, so only alternating pairs are worth comparing. Prints every run's rates and
# CPU per message, then the median rate of each series per binary and how many pairs the new
# one won.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,3p' "$0" >&2; exit 2; }
old=$1 new=$2 pairs=${3:-6}
shift $(( $# >= 3 ? 3 : 2 ))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--hl7 --seconds 5)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for i in $(seq 1 "$pairs"); do
  if [ $((i % 2)) -eq 1 ]; then order=("$old" "$new"); else order=("$new" "$old"); fi
  for bin in "${order[@]}"; do
    dir=$(mktemp -d)
    which=$([ "$bin" = "$old" ] && echo old || echo new)
    # Series lines start with the backend; the first whole number after it is the rate, and
    # `cpu ms/msg` (HL7) is the fourth number.
    HEARTH_LOG=error "$bin" bench --database "sqlite://$dir/bench.db" "${args[@]}" 2>/dev/null |
      awk -v which="$which" -v pair="$i" '$1 == "sqlite" {
        n = 0; series = ""
        for (f = 2; f <= NF; f++) {
          if ($f ~ /^[0-9.]+$/) { num[++n] = $f } else if (n == 0) { series = series (series == "" ? "" : "_") $f }
        }
        if (n > 0) print pair, which, series, num[1], (n >= 4 ? num[4] : "-")
      }' | tee -a "$out"
    rm -rf "$dir"
  done
done

echo
python3 - "$out" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(dict)  # (series) -> {(pair, which): rate}
for line in open(sys.argv[1]):
    pair, which, series, rate, _cpu = line.split()
    runs[series][(pair, which)] = float(rate)
print(f"{'series':<16}{'old median':>12}{'new median':>12}{'change':>9}  new won")
for series, r in runs.items():
    old = [v for (p, w), v in r.items() if w == "old"]
    new = [v for (p, w), v in r.items() if w == "new"]
    pairs = {p for p, _ in r}
    won = sum(1 for p in pairs if r.get((p, "new"), 0) > r.get((p, "old"), float("inf")))
    if not old or not new:
        continue
    mo, mn = statistics.median(old), statistics.median(new)
    print(f"{series:<16}{mo:>12.0f}{mn:>12.0f}{100 * (mn - mo) / mo:>+8.0f}%  {won}/{len(pairs)}")
EOF
