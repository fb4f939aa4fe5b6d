"""Shareable models: export a checkpoint as a Hugging Face Hub model folder, load it back, push it."""
