# The standard benchmark shape, shared by launch/bench-scaling.sh and launch/bench-two-ranks.sh (sourced, not
# run): d_model 256, 8 heads, 4 layers, d_ff 1024, 128 tokens per input, vocabulary 16384, a fixed budget of 4 of
# 8 heads (so every update costs the same), on synthetic full-length inputs.

# standard_shape_data EXE DIR: writes DIR/standard/{train,test}.h5 (once): 2048 rows of random words
# w0..w16381 (all of them in the vocabulary), 128 per input. Exits with the prepare log's tail on failure.
standard_shape_data() {
  local exe=$1 dir=$2
  [ -f "$dir/standard/train.h5" ] && return
  awk 'BEGIN { srand(1); for (r = 0; r < 2048; r++) { printf "c%d\t", r % 4
         for (k = 0; k < 128; k++) printf "%sw%d", k ? " " : "", (k < 2 ? r * 2 + k : int(rand() * 16382)) % 16382
         printf "\n" } }' > "$dir/standard.tsv"
  "$exe" prepare --train "$dir/standard.tsv" --test "$dir/standard.tsv" --out "$dir/standard" --max-len 128 \
    --vocab-size 16384 --min-count 1 > "$dir/standard.prepare.log" 2>&1 ||
    { echo "preparing the synthetic standard-shape data failed:" >&2; tail -5 "$dir/standard.prepare.log" >&2; exit 1; }
}

# standard_shape_sets DIR N: sets the array standard_sets to the --set arguments (over configs/tiny.ini) of N
# updates of the standard shape on DIR/standard/train.h5; the batch size is left to the caller.
standard_shape_sets() {
  local dir=$1 n=$2
  standard_sets=(--set "data.train=$dir/standard/train.h5" --set model.d_model=256 --set model.n_heads=8
                 --set model.n_layers=4 --set model.d_ff=1024 --set "train.steps=$((n + 10))"
                 --set train.warmup=2 --set model.fixed_budget=4 --set model.gate_norm=0 --set train.budget_cost=0
                 --set explore.eps_start=0 --set explore.eps_end=0 --set explore.steps=1 --set "train.stop_at=$n")
}
