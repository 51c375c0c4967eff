"""A new, seeded model from `model.from_config` (checked as the recipe loaded, in
`ftcli.recipe.from_config`), its vocabulary and special tokens taken from the run's tokenizer."""

from __future__ import annotations

from ftcli.recipe.from_config import config_fields


def token_fields(config_class, tokenizer) -> dict:
    """Vocabulary size and special-token ids from the tokenizer, for the fields the config has."""
    known = config_fields(config_class)
    if config_class.is_encoder_decoder:  # t5 reads decoder_start_token_id without declaring it
        known.add("decoder_start_token_id")
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id, "cls_token_id": tokenizer.cls_token_id,
           "sep_token_id": tokenizer.sep_token_id, "mask_token_id": tokenizer.mask_token_id,
           # An encoder-decoder's decoder starts from pad, as T5 does (any fixed id works from scratch).
           "decoder_start_token_id": tokenizer.pad_token_id}
    return {"vocab_size": len(tokenizer), **{k: v for k, v in ids.items() if k in known}}


def new_config(from_config: dict, tokenizer, label2id: dict | None = None):
    """The transformers config of a recipe's `model.from_config`, sized to the tokenizer."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_class = CONFIG_MAPPING[from_config["architecture"]]
    fields = {k: v for k, v in from_config.items() if k != "architecture"}
    fields.update(token_fields(config_class, tokenizer))
    if label2id is not None:
        fields.update(num_labels=len(label2id), label2id=label2id,
                      id2label={i: label for label, i in label2id.items()})
    return config_class(**fields)


def new_model(model_class, from_config: dict, tokenizer, seed: int, label2id: dict | None = None, **options):
    """A randomly initialised model (an Auto class's `from_config`); the same seed and tokenizer give
    the same weights, which is how `ftcli eval` rebuilds a run's starting point as its base. `options`:
    from_config's own (dtype, attn_implementation)."""
    from transformers import set_seed

    config = new_config(from_config, tokenizer, label2id)
    set_seed(seed)
    return model_class.from_config(config, **options)
