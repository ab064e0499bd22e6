"""Artifacts: what a trained model leaves on disk and how it is read back safely.

- `atomic`: the write-then-rename rule every writer follows;
- `weights`: safetensors / weights-only state dicts, `model.json`, `load_checkpoint`; importing it gives
  the model registry its loader for `pretrained=`;
- `zoo_index`: the shipped zoo's `index.json`, sha256 verification;
- `shipped`: the zoo's names in the model registry (registered when it is imported; the public
  `effzoo.create_model` does so);
- `cards`: model cards, factsheets and datasheets rendered from `model.json`.

This file imports nothing: `effzoo.training.config` (and so the command line's parser) uses
`artifacts.atomic` and must not pay for torch.
"""
