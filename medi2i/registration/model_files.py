"""Trained registration-agent files: the agent's weights plus everything needed to rebuild it.

An agent file (``bundles/rl_i2it/models/model.pt`` by default) is a :func:`medi2i.checkpoint.save_checkpoint`
payload with

- ``agent``: the :class:`~medi2i.registration.sac.RLI2ITAgent` state dict (planner, actor, critics, alpha);
- ``registration``: plain JSON settings: every :class:`~medi2i.registration.config.RLI2ITConfig` field
  (``config``) and the agent's spatial ``image_size`` (the model size images are padded/cropped to).

The training checkpoints ``rl_i2it_{last,final,best}.pt`` hold optimisers and the replay buffer but not
the configuration, so they cannot be reloaded without guessing the architecture; this file can. It loads
with ``torch.load(weights_only=True)``: no pickled code runs when a file is opened.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medi2i.checkpoint import BestModelSaver, load_checkpoint, read_model_file, resolve_device, save_checkpoint
from medi2i.errors import Medi2iInputError
from medi2i.registration.config import RLI2ITConfig
from medi2i.registration.sac import RLI2ITAgent

if TYPE_CHECKING:
    from ignite.engine import Engine

    from medi2i.typing import PathLike

SETTINGS_KEY = "registration"


def agent_settings(config: RLI2ITConfig, image_size: Sequence[int]) -> dict[str, Any]:
    """The plain-JSON ``registration`` record of an agent (config fields + ``image_size``).

    Example:
        >>> from medi2i.registration.config import smoke_config
        >>> s = agent_settings(smoke_config(), (32, 32))
        >>> s["image_size"], s["config"]["channels"]
        ([32, 32], [8, 16, 16])
    """
    size = [int(s) for s in image_size]
    if len(size) != config.spatial_dims or min(size) < 1:
        raise ValueError(f"image_size must be {config.spatial_dims} positive ints, got {tuple(image_size)!r}")
    record = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists; fails on non-JSON extras
    return {"config": record, "image_size": size}


def config_from_settings(record: Mapping[str, Any]) -> RLI2ITConfig:
    """Rebuild (and validate) a :class:`RLI2ITConfig` from the ``config`` record; lists become tuples again.

    Unknown keys are rejected with a :class:`~medi2i.errors.Medi2iInputError` (a file from another version).
    """
    fields = {f.name: f for f in dataclasses.fields(RLI2ITConfig)}
    unknown = sorted(set(record) - set(fields))
    if unknown:
        raise Medi2iInputError("unknown registration config fields", field="config", found=unknown)
    values = {}
    for key, value in record.items():
        is_tuple = "tuple" in str(fields[key].type)
        values[key] = tuple(value) if is_tuple and isinstance(value, list) else value
    try:
        return RLI2ITConfig(**values)
    except (TypeError, ValueError) as err:
        raise Medi2iInputError(f"invalid registration config ({err})", field="config") from None


def save_agent(path: PathLike, agent: RLI2ITAgent) -> Path:
    """Atomically write an agent file (weights + :func:`agent_settings`).

    Example:
        >>> import tempfile
        >>> from medi2i.registration.config import smoke_config
        >>> path = save_agent(tempfile.mkdtemp() + "/model.pt", RLI2ITAgent(smoke_config(), (32, 32)))
        >>> load_agent(path, device="cpu").image_size
        (32, 32)
    """
    settings = agent_settings(agent.config, agent.image_size)
    return save_checkpoint(path, {"agent": agent}, extra={SETTINGS_KEY: settings})


def load_agent(bundle_or_checkpoint: PathLike, device: torch.device | str | None = None) -> RLI2ITAgent:
    """Rebuild an agent from an agent file (or a bundle's ``models/model.pt``), in eval mode.

    Args:
        bundle_or_checkpoint: bundle folder or agent file.
        device: ``None`` picks CUDA when available, else CPU.

    Raises:
        Medi2iInputError: a missing file (with a hint to train first) or a file that is not an agent file.
    """
    path, payload = read_model_file(
        bundle_or_checkpoint,
        required=("agent", SETTINGS_KEY),
        kind="registration agent",
        model="registration model",
        train_command="python -m monai.bundle run --config_file "
        "\"['bundles/rl_i2it/train.json','bundles/rl_i2it/demo_cpu.json']\"",
    )
    settings = payload[SETTINGS_KEY]
    if not isinstance(settings, dict):
        raise Medi2iInputError("agent settings are not a record", path=path, field=SETTINGS_KEY)
    config = config_from_settings(settings["config"])
    agent = RLI2ITAgent(config, settings["image_size"])
    load_checkpoint(path, {"agent": agent})
    return agent.to(resolve_device(device)).eval()


class AgentSaver(BestModelSaver):
    """Ignite handler writing the agent file of a training run.

    Without a ``score_function`` the file is written when training completes. With one, it is written at
    every ``event`` (e.g. after each validation) whose score beats the best so far (higher is better), and at
    completion only if no score was ever recorded.

    Args:
        path: agent file (e.g. ``bundles/rl_i2it/models/model.pt``).
        agent: the agent being trained (``trainer.learner.agent``).
        score_function: ``engine -> float | None`` (e.g. the validation Dice).
        event: ignite event for the score check (default ``ITERATION_COMPLETED``).
    """

    def __init__(
        self,
        path: PathLike,
        agent: RLI2ITAgent,
        score_function: Callable[[Engine], float | None] | None = None,
        event: Any = None,
    ) -> None:
        super().__init__(path, score_function, "max", event)
        self.agent = agent

    def save(self) -> Path:
        return save_agent(self.path, self.agent)
