"""Training: ``AntiSDTrainer`` (TRL's GRPOTrainer + the token term), its config, checkpoints, the run."""
