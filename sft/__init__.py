"""Stage 1: supervised fine-tuning on chat data (LoRA or full), built on TRL's SFTTrainer."""
