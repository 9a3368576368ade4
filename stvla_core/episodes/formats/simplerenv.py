"""SimplerEnv rollout videos as its ManiSkill2 evaluator writes them:
`<logging_dir>/<ckpt>/<scene>/<control_mode>/<env_save_name>/rob_<x>_<y>_rot_<r>_<p>_<y>_rgb_overlay_<o>/
{success|failure}_obj_episode_<id>[_<stat>_<value>...].mp4` (or `..._obj_<x>_<y>...` in "xy" object
variation mode), written at 5 fps. The file name gives success/failure and the object episode; the
folders give the environment, scene and control mode; the environment gives the instruction for the
standard SimplerEnv tasks. A `<stem>.json` sidecar, when present, overrides all of these."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stvla_core.episodes.episode import Episode, EpisodeError
from stvla_core.episodes.formats.io import (
    build_episode,
    decode_video,
    read_json,
    sidecar_fields,
    sidecar_path,
    where,
)
from stvla_core.episodes.formats.registry import EpisodeFormat, LoadLimits, register_format

SIMPLERENV_FPS = 5.0  # simpler_env's evaluator calls write_video(..., fps=5)

# Default language instructions of the standard SimplerEnv environments (the ones whose
# instruction does not depend on the object episode).
ENV_INSTRUCTIONS = {
    "GraspSingleOpenedCokeCanInScene-v0": "pick coke can",
    "GraspSingleCokeCanInScene-v0": "pick coke can",
    "OpenTopDrawerCustomInScene-v0": "open top drawer",
    "OpenMiddleDrawerCustomInScene-v0": "open middle drawer",
    "OpenBottomDrawerCustomInScene-v0": "open bottom drawer",
    "CloseTopDrawerCustomInScene-v0": "close top drawer",
    "CloseMiddleDrawerCustomInScene-v0": "close middle drawer",
    "CloseBottomDrawerCustomInScene-v0": "close bottom drawer",
    "PutSpoonOnTableClothInScene-v0": "put the spoon on the towel",
    "PutCarrotOnPlateInScene-v0": "put carrot on plate",
    "StackGreenCubeOnYellowCubeBakedTexInScene-v0": "stack the green block on the yellow block",
    "PutEggplantInBasketScene-v0": "put eggplant into yellow basket",
}

_NAME = re.compile(
    r"^(success|failure)_obj_(?:episode_(?P<episode>-?\d+)|(?P<x>-?\d+(?:\.\d+)?)_(?P<y>-?\d+(?:\.\d+)?))"
    r"(?P<rest>.*)$"
)
_STAT = re.compile(r"_([a-z][a-z0-9_]*?)_(True|False|-?\d+(?:\.\d+)?)(?=_[a-z]|$)")


def parse_simplerenv_path(path: Path) -> dict[str, Any]:
    """What the path says about the rollout; {} when the name is not SimplerEnv's."""
    m = _NAME.match(path.stem)
    if m is None:
        return {}
    info: dict[str, Any] = {"success": m.group(1) == "success"}
    if m.group("episode") is not None:
        info["obj_episode_id"] = int(m.group("episode"))
    else:
        info["obj_init_xy"] = [float(m.group("x")), float(m.group("y"))]
    stats = {k: _value(v) for k, v in _STAT.findall(m.group("rest"))}
    if stats:
        info["episode_stats"] = stats
    parents = path.parent.parts
    if len(parents) >= 1 and parents[-1].startswith("rob_"):
        info["robot_init"] = parents[-1]
        names = ("env_save_name", "control_mode", "scene_name")
        for key, part in zip(names, reversed(parents[:-1]), strict=False):
            info[key] = part
        env = str(info.get("env_save_name", "")).split("_")[0]
        if env:
            info["env_name"] = env
    return info


def _value(v: str) -> Any:
    if v in ("True", "False"):
        return v == "True"
    return float(v) if "." in v else int(v)


def load_simplerenv_episode(path: Path, limits: LoadLimits) -> Episode:
    info = parse_simplerenv_path(path)
    if not info:
        raise EpisodeError(
            f"{where(path)} is not named like a SimplerEnv rollout: expected success_obj_... or "
            f"failure_obj_..., found {path.name!r}"
        )
    side = sidecar_path(path)
    fields = sidecar_fields(read_json(side), side) if side.is_file() else {"metadata": {}}
    fields["metadata"] = {"simplerenv": info, "success": info["success"], **fields["metadata"]}
    instruction = ENV_INSTRUCTIONS.get(info.get("env_name", ""))
    if instruction:
        fields.setdefault("instruction", instruction)
    frames, _, fps = decode_video(path, limits)
    fields.setdefault("fps", fps or SIMPLERENV_FPS)
    fields.setdefault("name", path.stem)
    fields.setdefault("source", str(path))
    return build_episode(frames, fields, side if side.is_file() else path)


def _detect(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".mp4" and _NAME.match(p.stem) is not None


register_format(
    EpisodeFormat(
        "simplerenv",
        _detect,
        load_simplerenv_episode,
        None,
        "a SimplerEnv rollout video named success_obj_... or failure_obj_...",
    )
)
