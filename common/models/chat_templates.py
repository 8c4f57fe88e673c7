"""Chat templates we ship, with `{% generation %}` markers around each assistant reply.

The markers let TRL mask the loss to assistant tokens (`assistant_only_loss`); they do not
change what the template renders. The reply's `<|im_end|>` sits inside the markers so the
model is trained to stop.
"""

_SYSTEM_SLOT = "<<default system prompt>>"

# ChatML turns; a template may put a default system prompt in the slot.
_CHATML = (
    "{% for message in messages %}"
    + _SYSTEM_SLOT
    + "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Plain ChatML, no default system prompt: the tiny test models use it.
CHATML = _CHATML.replace(_SYSTEM_SLOT, "")

# ChatML as SmolLM2-135M-Instruct renders it, including its default system prompt.
SMOLLM2 = _CHATML.replace(
    _SYSTEM_SLOT,
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}",
)
