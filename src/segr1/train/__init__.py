"""Training on TRL's trainers: ``segr1 train sft|grpo --config recipes/<name>.yaml``.

* `segr1.train.config`: segr1's recipe options (data sources, prompts, rewards, SFT targets).
* `segr1.train.common`: recipe parsing (`parse_recipe`), model resolution (``tiny``), resume, provenance.
* `segr1.train.grpo`: `build_rewards`, `build_grpo_trainer`, `train_grpo` (TRL ``GRPOTrainer``).
* `segr1.train.sft`: `build_sft_trainer`, `train_sft` (TRL ``SFTTrainer``).
* `segr1.train.grounding`: the training-only attention and place terms of SFT (`GroundingTerms`).
* `segr1.train.data`: `load_train_samples` (folder pairs, manifests, cached synthetic scenes).
* `segr1.train.callbacks`: `JsonlLogCallback` (``<output_dir>/log.jsonl``) and `read_log`.

Nothing heavy is imported here; import the submodule you need.
"""
