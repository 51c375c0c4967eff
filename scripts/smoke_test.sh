#!/usr/bin/env bash
# `make smoke-test`: the whole CLI loop on tiny models (built by `make tiny-models`), every step printed.
source "$(dirname "$0")/common.sh"

step "causal-lm SFT, tiny Llama: validate"
ftcli validate recipes/smoke/tiny-llama-sft.yaml
step "causal-lm SFT, tiny Llama: finetune"
ftcli finetune recipes/smoke/tiny-llama-sft.yaml --overwrite
step "causal-lm SFT, tiny Llama: eval (base vs tuned)"
ftcli eval runs/smoke-llama
step "causal-lm SFT, tiny Llama: generate"
ftcli generate "What is the capital of Peru?" --run runs/smoke-llama

step "sequence classification, tiny BERT: validate"
ftcli validate recipes/smoke/tiny-bert-classification.yaml
step "sequence classification, tiny BERT: finetune"
ftcli finetune recipes/smoke/tiny-bert-classification.yaml --overwrite
step "sequence classification, tiny BERT: eval --json"
ftcli eval recipes/smoke/tiny-bert-classification.yaml --json

step "a misspelled recipe key is a user error (exit 2) with a suggestion"
bad=$(mktemp --suffix=.yaml)
sed 's/learning_rate:/learning_rat:/' recipes/smoke/tiny-bert-classification.yaml > "$bad"
set +e; ftcli validate "$bad"; code=$?; set -e
rm -f "$bad"
[ "$code" -eq 2 ] || { echo "expected exit 2, got $code"; exit 1; }

printf '\nsmoke test passed in %ss\n' "$(( $(date +%s) - start ))"
