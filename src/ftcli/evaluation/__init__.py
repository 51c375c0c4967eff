"""The evaluation room: `ftcli eval` (`evaluate`: base vs tuned on the run's eval data), one model
scored (`scoring`), the tables and picture it prints (`reports`), the bundled offline metrics
(`metrics/`), and lm-evaluation-harness tasks on both models (`harness`, with the optional lm-eval).

May import: recipe, data, modeling, generation (to score generated text), exporting.model_card (the
card shows eval results) and the shared modules. Never training.
"""
