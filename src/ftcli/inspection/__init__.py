"""Looking inside a model: attention weights for a text (`ftcli attention`).

target (which run or model, and its head class), attention (eager output_attentions), attention_summary
(top-k tokens, --token rows), attention_plots (heatmap PNGs). May import generation, modeling, data,
recipe and runs; never training."""
