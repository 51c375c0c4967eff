#!/usr/bin/env bash
# `make demo`: teach SmolLM2-135M-Instruct to answer like a pirate (LoRA, CPU), then show the base
# and tuned models side by side: metrics on held-out rows, and answers to questions it never saw.
source "$(dirname "$0")/common.sh"

step "1/3  ftcli finetune recipes/demo-smollm2-lora.yaml   (LoRA on data/pirate/train.jsonl)"
ftcli finetune recipes/demo-smollm2-lora.yaml --overwrite
step "2/3  ftcli eval   (held-out rows, base vs tuned)"
ftcli eval
step "3/3  ftcli generate   (questions not in the training data)"
for prompt in "Why is the sky blue?" "Give me one tip for learning to code." "What should I pack for a day at the beach?"; do
  printf '\nprompt: %s\n' "$prompt"
  printf '  base : %s\n' "$(ftcli generate "$prompt" --base 2>/dev/null)"
  printf '  tuned: %s\n' "$(ftcli generate "$prompt" 2>/dev/null)"
done
printf '\ndemo finished in %ss\n' "$(( $(date +%s) - start ))"
