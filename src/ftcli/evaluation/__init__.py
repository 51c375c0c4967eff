"""The evaluation room: `ftcli eval` (`evaluate`: base vs tuned on the run's eval data), one model
scored (`scoring`), the tables and picture it prints (`reports`), and the bundled offline metrics
(`metrics/`).

May import: recipe, data, modeling, generation (to score generated text), exporting.model_card (the
card shows eval results) and the shared modules. Never training.
"""
