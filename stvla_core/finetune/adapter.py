"""LoRA adapters on the ST-VLA model, in peft's folder format (adapter_config.json +
adapter_model.safetensors), so `peft` tools read them too. Injected in place so the model keeps its
own methods (`generate`, `visual_embedding`) and the Policy works unchanged."""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def check_targets(model: nn.Module, targets: list[str]) -> None:
    """Every target must name at least one Linear/Embedding of the model (peft's suffix match)."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Embedding))]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names if not n.rsplit(".", 1)[-1].isdigit()})
        raise ValueError(
            f"target_modules {', '.join(missing)} match no layer of the model; expected some of {', '.join(leaves)}"
        )


def add_lora(model: nn.Module, config: LoraConfig) -> nn.Module:
    """Inject LoRA layers; only their weights (and modules_to_save) stay trainable."""
    check_targets(model, list(config.target_modules))
    for p in model.parameters():
        p.requires_grad_(False)
    inject_adapter_in_model(config, model)
    for n, p in model.named_parameters():
        if "lora_" in n or "modules_to_save" in n:
            p.requires_grad_(True)
    return model


def save_adapter(model: nn.Module, config: LoraConfig, path: str | Path) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
    save_file(state, str(path / ADAPTER_WEIGHTS))
    config.save_pretrained(str(path))


def load_adapter_into(model: nn.Module, path: str | Path) -> LoraConfig:
    path = Path(path)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (path / name).is_file():
            raise FileNotFoundError(f"no {name} in {path}; expected a LoRA adapter folder")
    config = LoraConfig.from_pretrained(str(path))
    add_lora(model, config)
    set_adapter_weights(model, path)
    return config


def set_adapter_weights(model: nn.Module, path: str | Path) -> None:
    """Load the weights of an adapter folder into a model that already holds the same LoRA layers."""
    path = Path(path)
    state = load_file(str(path / ADAPTER_WEIGHTS), device=str(next(model.parameters()).device))
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"adapter {path} holds weights the model has no place for: {unexpected[:3]}")


def load_adapter(policy: object, path: str | Path) -> object:
    """Put the adapter of folder `path` (a run's `adapter/` or a `checkpoints/step_N/`) into
    `policy.model` for inference; returns the policy. The app's Inspector calls this."""
    load_adapter_into(policy.model, path)  # type: ignore[attr-defined]
    policy.model.eval()  # type: ignore[attr-defined]
    return policy
