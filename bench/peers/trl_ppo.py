"""Peer runner: TRL 1.9.2's `trl.experimental.ppo.PPOTrainer` on the benchmark's settings.

Runs inside the benchmark's separate venv (TRL 1.9.2 + its own transformers); imports nothing
from this repository. Prints one JSON line: timed steps, episodes, response tokens, seconds,
peak resident memory. Usage (bench/ppo_speed.py calls it):

    <venv>/bin/python bench/peers/trl_ppo.py '<settings json>'
"""

import json
import resource
import sys
import tempfile
import time

import torch
import trl.experimental.ppo.ppo_trainer as ppo_module
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from trl.experimental.ppo import PPOConfig, PPOTrainer

s = json.loads(sys.argv[1])
torch.manual_seed(s["seed"])
torch.set_num_threads(s["threads"])
tok = AutoTokenizer.from_pretrained(s["policy"], padding_side="left")
prompts = s["prompts"] * (1 + (s["steps"] + 1) * s["batch"] // len(s["prompts"]))
rows = [{"input_ids": tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                              tokenize=True, return_dict=False)} for p in prompts]
dataset = Dataset.from_list(rows[: (s["steps"] + 1) * s["batch"]])

policy = AutoModelForCausalLM.from_pretrained(s["policy"])
reward = AutoModelForSequenceClassification.from_pretrained(s["reward_model"], num_labels=1)
value = AutoModelForSequenceClassification.from_pretrained(s["reward_model"], num_labels=1)
if s["critic_freeze_layers"]:  # the same frozen lower layers as our critic
    value.model.embed_tokens.requires_grad_(False)
    for layer in value.model.layers[: s["critic_freeze_layers"]]:
        layer.requires_grad_(False)
peft_config = None
if s["finetune"] == "lora":
    peft_config = LoraConfig(r=s["lora_rank"], lora_alpha=s["lora_alpha"], layers_to_transform=s["lora_layers"],
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                             task_type="CAUSAL_LM")

# response tokens up to and including the stop token, counted the way ours are
counted = {"tokens": 0}
_truncate = ppo_module.truncate_response


def truncate_and_count(stop_token_id, pad_token_id, responses):
    is_stop = responses == stop_token_id
    ended = is_stop.any(dim=1)
    first = torch.where(ended, is_stop.float().argmax(dim=1) + 1, torch.full_like(ended, responses.shape[1], dtype=torch.long))
    counted["tokens"] += int(first.sum())
    return _truncate(stop_token_id, pad_token_id, responses)


ppo_module.truncate_response = truncate_and_count


class StepClock(TrainerCallback):
    def __init__(self):
        self.times, self.tokens = [time.perf_counter()], [0]

    def on_train_begin(self, args, state, control, **kwargs):
        self.times[0] = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.tokens.append(counted["tokens"])


clock = StepClock()
with tempfile.TemporaryDirectory() as out:
    args = PPOConfig(
        output_dir=out, per_device_train_batch_size=s["batch"], gradient_accumulation_steps=1,
        num_mini_batches=s["batch"] // s["mini_batch"],
        num_ppo_epochs=s["ppo_epochs"], response_length=s["max_new_tokens"], total_episodes=len(dataset),
        stop_token="eos", temperature=s["temperature"], learning_rate=s["policy_lr"], kl_coef=s["kl_coef"],
        missing_eos_penalty=s["missing_eos_penalty"], local_rollout_forward_batch_size=s["batch"],
        num_sample_generations=0, save_strategy="no", report_to=[], logging_steps=10_000,
        use_cpu=not torch.cuda.is_available(),
        bf16=s["precision"] == "bf16", seed=s["seed"], disable_tqdm=True,
    )
    trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=None, reward_model=reward,
                         train_dataset=dataset, value_model=value, peft_config=peft_config, callbacks=[clock])
    trainer.train()

# step 1 is a warm-up; time steps 2..N+1
seconds = clock.times[-1] - clock.times[1]
print(json.dumps({
    "steps": len(clock.times) - 2, "episodes": (len(clock.times) - 2) * s["batch"],
    "response_tokens": clock.tokens[-1] - clock.tokens[1], "seconds": seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "warmup_seconds": clock.times[1] - clock.times[0],
    "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
}))
