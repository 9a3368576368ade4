"""python -m stvla_core.finetune EPISODE... [--run-dir D] [--steps N] ... or --config run.json"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from stvla_core.finetune.config import FinetuneConfig, FinetuneConfigError
from stvla_core.finetune.trainer import RunInUseError, train

_LISTS = {"target_modules", "modules_to_save"}


def parse(argv: list[str] | None = None) -> FinetuneConfig:
    ap = argparse.ArgumentParser(
        prog="python -m stvla_core.finetune", description="LoRA fine-tuning of ST-VLA"
    )
    ap.add_argument("episodes", nargs="*", help="episode files")
    ap.add_argument("--config", help="a JSON config file; flags given override it")
    for f in dataclasses.fields(FinetuneConfig):
        if f.name == "episodes":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name in _LISTS:
            ap.add_argument(flag, nargs="+", default=None)
        elif f.type in ("bool", bool):
            ap.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            ap.add_argument(flag, type=kind, default=None)
    args = vars(ap.parse_args(argv))
    config_file = args.pop("config")
    data: dict = json.loads(Path(config_file).read_text()) if config_file else {}
    episodes = args.pop("episodes")
    if episodes:
        data["episodes"] = episodes
    data.update({k: v for k, v in args.items() if v is not None})
    return FinetuneConfig.from_dict(data)


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse(argv)
        result = train(config, lambda f, m: print(f"[{f:6.1%}] {m}", flush=True))
    except (FinetuneConfigError, FileNotFoundError, FileExistsError, ValueError, RunInUseError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
