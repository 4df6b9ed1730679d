"""Rollouts and updates of RL-I2IT in one checkpointable object (digest section 3.4, cadence D13).

:meth:`RLI2ITLearner.run_episode` plays one batched episode on a batch of pairs: each step samples a plan,
executes the clamped action, stores the transitions that pass the Dice filter (D20) and, after the warm-up
episodes, calls :func:`~medi2i.registration.sac.update` every ``update_every`` global env steps (with the
planner and alpha every ``planner_every``). Nothing is read back to the host inside the episode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from medi2i.registration.config import AuxTarget, RLI2ITConfig
from medi2i.registration.env import RegistrationEnv
from medi2i.registration.replay import ReplayBuffer
from medi2i.registration.sac import AuxLoss, Keys, RLI2ITAgent, make_optimizers, update


class RLI2ITLearner:
    """Agent + optimisers + replay buffer + environment + counters.

    Args:
        config: hyperparameters.
        image_size: spatial shape of the pairs.
        device: where the agent and the environment live (default: CUDA when available, else CPU).

    Example:
        >>> from medi2i.registration.config import smoke_config
        >>> learner = RLI2ITLearner(smoke_config(reward_labels="kmeans", warmup_episodes=1), (32, 32), "cpu")
        >>> pair = torch.rand(2, 1, 1, 32, 32)
        >>> logs = learner.run_episode(pair[0], pair[1])
        >>> learner.global_step, learner.episode, "charts/episodic_return" in logs
        (5, 1, True)
    """

    def __init__(self, config: RLI2ITConfig, image_size: Sequence[int], device: torch.device | str | None = None):
        self.config = config
        self.device = (
            torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.agent = RLI2ITAgent(config, image_size).to(self.device)
        self.optimizers = make_optimizers(self.agent, config)
        self.aux = AuxLoss(config).to(self.device)
        buffer_device = config.buffer_device if config.buffer_device is not None else self.device
        self.buffer = ReplayBuffer(config.buffer_capacity, buffer_device, config.buffer_dtype, seed=config.seed)
        self.env = RegistrationEnv(config)
        self.global_step = 0
        self.episode = 0

    def run_episode(
        self,
        fixed: torch.Tensor,
        moving: torch.Tensor,
        fixed_label: torch.Tensor | None = None,
        moving_label: torch.Tensor | None = None,
        fixed_mask: torch.Tensor | None = None,
        moving_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Play ``train_steps`` steps on pairs ``(B, 1, *spatial)``; return episode charts + last update logs.

        The optional foreground masks are only used by the masked K-means reward (``kmeans_mask``)."""
        cfg, agent = self.config, self.agent
        to = dict(device=self.device)
        state = self.env.reset(
            fixed.to(**to),
            moving.to(**to),
            None if fixed_label is None else fixed_label.to(**to),
            None if moving_label is None else moving_label.to(**to),
            None if fixed_mask is None else fixed_mask.to(**to),
            None if moving_mask is None else moving_mask.to(**to),
        )
        self.episode += 1
        episodic_return = torch.zeros(fixed.shape[0], device=self.device)
        logs: dict[str, torch.Tensor] = {}
        learning = self.episode > cfg.warmup_episodes
        agent.train()
        # the step limit is not terminal: the critic bootstraps through it (code)
        for _ in range(cfg.train_steps):
            previous_field = self.env.field
            action, plan = agent.act(state, deterministic=False, clamp=cfg.train_clamp)
            result = self.env.step(action)
            transition = {
                "state": state,
                "plan": plan,
                "reward": result.reward,
                "next_state": result.state,
                "done": result.done,
            }
            if cfg.aux_target == AuxTarget.ACCUMULATED:
                transition["moving"] = self.env.moving
                transition["field"] = previous_field
            self.buffer.push(transition, result.store)
            episodic_return = episodic_return + result.reward
            state = result.state
            self.global_step += 1
            if learning and self.global_step % cfg.update_every == 0:
                batch = self.buffer.sample(cfg.batch_size, self.device)
                logs = update(agent, self.optimizers, self.aux, batch, self.global_step % cfg.planner_every == 0)
        logs = dict(logs)
        logs[Keys.RETURN] = episodic_return.mean()
        logs[Keys.DICE] = self.env.score.mean()
        logs[Keys.DICE_GAIN] = (self.env.score - self.env.initial_score).mean()
        logs[Keys.BUFFER] = self.buffer.count.float()
        logs[Keys.ALPHA] = agent.alpha().detach()
        return logs

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (agent, optimisers, buffer with its RNG, counters)."""
        return {
            "agent": self.agent.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "buffer": self.buffer.state_dict(),
            "global_step": self.global_step,
            "episode": self.episode,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        self.buffer.load_state_dict(state["buffer"])
        self.global_step = int(state["global_step"])
        self.episode = int(state["episode"])
