"""ENAS (Pham et al., ICML 2018) as AutoDL runs it on NAS-Bench-201 (FAMILY.md "Sampling: ENAS";
`D-X-Y/AutoDL-Projects:exps/NAS-Bench-201-algos/ENAS.py`, `xautodl/models/cell_searchs/search_model_enas*.py`).

An LSTM controller (isdarts.search.enas_controller) samples cells; the shared weights and the controller take
turns per epoch:
(a) every batch of the train half trains the weights on a fresh controller sample run as a single path
    (`isdarts.spaces.mixing.SampledPath`: the other ops never run), SGD with clipping; the valid batch the
    search loop pairs with it is unused. The learning rate is AutoDL's cosine with T_max = `lr_period` epochs
    and no restart logic: a wave of period 2·lr_period (0: one cosine over the whole search).
(b) at the epoch's end (`end_epoch`), `controller_steps` Adam steps of REINFORCE, each over
    `controller_aggregate` samples; a sample's reward is r = acc + w·H, with acc the sampled cell's top-1 on
    the next valid batch (train augmentation, shared weights in eval mode) and H the sample's entropy.
    `baseline_mode` autodl (AutoDL's code): the baseline b_e is frozen for the epoch, each sample uses
    b = b_e - (1 - decay)(b_e - r) (b = acc in the first epoch, so the advantage is w·H exactly), the entropy
    keeps its gradient, and b_{e+1} is the epoch's last b. running_ema (the TF original, as recalled in the
    spec): b moves after every sample, b ← b - (1 - decay)(b - r), starting from the first acc, and H in the
    reward is detached.
(c) then a selection: the best of `monitor_samples` controller samples (`final_samples` after the last epoch),
    each on one valid batch; `genotype` is that cell (before the first selection, the controller's greedy one).

Where the spec leaves a choice: the controller runs on the CPU whatever the device (it is tiny, and its
samples are host-side indices anyway), with its own sampling generator, checkpointed. Valid batches come
in shuffled passes of the valid half, a new pass per phase, as AutoDL's fresh `iter(valid_loader)`; their
size is the search's batch size (AutoDL's one `batch_size`). After the last epoch AutoDL logs a
`monitor_samples` selection and then reports a `final_samples` one; we run the final one only. The
controller's Adam is the `arch` option group (lr, betas, weight decay) plus `controller_eps`. The history's
op weights are the controller's exact per-edge marginals (every cell enumerated).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from isdarts.config.search import SearchConfig
from isdarts.search.base import Batches, set_lr
from isdarts.search.enas_controller import Controller
from isdarts.search.setn import BatchStream, best_of, check_per_edge_space, enumerate_cells, fixed_path
from isdarts.spaces.space import Genotype, Space


def wave_lr(epoch: int, period: int, lr: float, lr_min: float) -> float:
    """AutoDL's per-epoch cosine with T_max = `period` and no restarts: lr at epoch 0, lr_min at `period`,
    back to lr at 2·period, and so on."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / period)) / 2


def reinforce_terms(
    acc: float, entropy: torch.Tensor, weight: float, baseline: float | None, decay: float
) -> tuple[torch.Tensor, float]:
    """AutoDL's (r - b, b) for one sample: r = acc + weight·H (H keeps its gradient) and b from the epoch's frozen
    `baseline` as b = baseline - (1 - decay)(baseline - r), or b = acc when there is none yet (the first epoch)."""
    if baseline is None:
        return weight * entropy, acc  # r - acc, without the rounding of adding and removing acc
    reward = acc + weight * entropy
    b = baseline - (1 - decay) * (baseline - reward)
    return reward - b, b.item()


class Enas:
    """ENAS on a one-op-per-edge space: single-path shared weights, an LSTM controller trained by REINFORCE."""

    bilevel = True  # the weights train on the train half, the controller on the valid half

    def __init__(
        self, model: nn.Module, space: Space, cfg: SearchConfig, generator: torch.Generator | None = None
    ) -> None:
        check_per_edge_space(space, "ENAS")
        self.model, self.space, self.cfg = model, space, cfg
        self.kind = space.kinds[0]
        self.schedule: list[int] = []
        self.epochs, self.lr, self.lr_min, self.grad_clip = cfg.epochs, cfg.lr, cfg.lr_min, cfg.grad_clip
        opt = cfg.option
        self.lr_period = opt("lr_period") or cfg.epochs
        self.entropy_weight, self.decay = opt("entropy_weight"), opt("baseline_decay")
        self.baseline_mode = opt("baseline_mode")
        self.steps, self.aggregate = opt("controller_steps"), opt("controller_aggregate")
        self.controller_clip = opt("controller_grad_clip")
        self.monitor_samples, self.final_samples = opt("monitor_samples"), opt("final_samples")
        if self.decay > 1:
            raise ValueError(f"ENAS option baseline_decay = {self.decay}: it must be in [0, 1] (AutoDL: 0.99)")
        for name in ("controller_aggregate", "monitor_samples", "final_samples"):
            if opt(name) < 1:
                raise ValueError(f"ENAS option {name} = {opt(name)}: it must be at least 1")
        init = generator if generator is not None else torch.Generator().manual_seed(0)
        if init.device.type != "cpu":
            raise ValueError(f"ENAS draws its controller on the CPU; got a generator on {init.device}")
        self.controller = Controller(
            space.num_edges, space.num_ops, hidden=opt("controller_hidden"), layers=opt("controller_layers"),
            temperature=opt("temperature"), tanh_constant=opt("tanh_constant"), generator=init,
        )
        # The controller's samples: their own stream, seeded from the init generator and checkpointed.
        self.sampler = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (), generator=init)))
        self.weights = list(model.parameters())
        self.w_optimizer = torch.optim.SGD(
            self.weights, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
        arch = cfg.arch
        self.c_optimizer = torch.optim.Adam(
            self.controller.parameters(), lr=arch.lr, betas=arch.betas, eps=opt("controller_eps"),
            weight_decay=arch.weight_decay,
        )
        self.criterion = nn.CrossEntropyLoss()
        self.baseline: float | None = None
        self.selected: tuple[int, ...] | None = None
        self.cells = enumerate_cells(space.num_edges, space.num_ops)
        self.images: Any = None
        self.data_generator: torch.Generator | None = None

    def attach_data(self, images: Any, generator: torch.Generator) -> None:
        """The valid half the controller trains and selects on, and the (checkpointed) generator that draws it."""
        self.images, self.data_generator = images, generator

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    def path(self, cell: tuple[int, ...]) -> dict[str, Any]:
        return {self.kind: fixed_path(cell, self.space.num_ops, self.device)}

    # ------------------------------------------------------------------ (a) shared weights
    def set_epoch(self, epoch: int) -> float:
        return set_lr(self.w_optimizer, wave_lr(epoch, self.lr_period, self.lr, self.lr_min))

    def train_step(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_valid: torch.Tensor, y_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One weight step on a controller sample (drawn without gradient); the valid batch is unused."""
        self.model.train()
        with torch.no_grad():
            cell = self.controller(1, self.sampler)[2][0]
        self.w_optimizer.zero_grad(set_to_none=True)
        _, logits = self.model(x_train, weights=self.path(cell))
        loss = self.criterion(logits, y_train)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.weights, self.grad_clip)
        self.w_optimizer.step()
        return loss.detach(), (logits.detach().argmax(1) == y_train).sum()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The current cell's single path (evaluation)."""
        return self.model(x, weights=self.path(self.current_cell()))[1]

    # ------------------------------------------------------------------ (b) controller
    def _stream(self) -> BatchStream:
        if self.images is None:
            raise RuntimeError("ENAS trains its controller on the valid half: call attach_data(images, generator)")
        return BatchStream(self.images, self.cfg.batch_size, True, self.data_generator)

    @torch.no_grad()
    def _accuracies(self, cells: list[tuple[int, ...]], stream: BatchStream) -> list[float]:
        """Top-1 of each cell on the stream's next batch, as fractions (shared weights in eval mode; one host
        sync for them all)."""
        hits = []
        for cell in cells:
            x, y = stream.next()
            logits = self.model(x, weights=self.path(cell))[1]
            hits.append((logits.argmax(1) == y).double().mean())
        return torch.stack(hits).tolist()

    def train_controller(self) -> dict[str, float]:
        """`controller_steps` REINFORCE steps of `controller_aggregate` samples each; the phase's means."""
        stream = self._stream()
        training = self.model.training
        self.model.eval()
        self.controller.train()
        self.c_optimizer.zero_grad(set_to_none=True)
        sums = {"controller_loss": 0.0, "reward": 0.0, "baseline_mean": 0.0, "entropy": 0.0, "sampled_acc": 0.0}
        frozen, last = self.baseline, self.baseline
        try:
            for _ in range(self.steps):
                # The step's samples side by side: the controller does not change between them, so this is
                # AutoDL's one-by-one sampling and gradient accumulation in one LSTM pass and one backward.
                log_probs, entropies, cells = self.controller(self.aggregate, self.sampler)
                losses = []
                accs = self._accuracies(cells, stream)
                for log_prob, entropy, acc in zip(log_probs, entropies, accs, strict=True):
                    reward = acc + self.entropy_weight * entropy.item()
                    if self.baseline_mode == "autodl":
                        adv, last = reinforce_terms(acc, entropy, self.entropy_weight, frozen, self.decay)
                    else:  # running_ema: the TF original's per-sample baseline, entropy without gradient
                        last = acc if last is None else last - (1 - self.decay) * (last - reward)
                        adv = torch.tensor(reward - last)
                    losses.append(-log_prob * adv)
                    for key, value in (("controller_loss", losses[-1].item()), ("reward", reward),
                                       ("baseline_mean", last), ("entropy", entropy.item()),
                                       ("sampled_acc", 100.0 * acc)):
                        sums[key] += value
                (torch.stack(losses).sum() / self.aggregate).backward()
                if self.controller_clip > 0:
                    nn.utils.clip_grad_norm_(self.controller.parameters(), self.controller_clip)
                self.c_optimizer.step()
                self.c_optimizer.zero_grad(set_to_none=True)
        finally:
            self.model.train(training)
        self.baseline = last
        n = max(self.steps * self.aggregate, 1)
        return {key: value / n for key, value in sums.items()}

    # ------------------------------------------------------------------ (c) selection
    def select(self, samples: int) -> tuple[tuple[int, ...], float]:
        """AutoDL's `get_best_arch`: the best of `samples` controller samples on one valid batch each; (the cell,
        its accuracy in percent)."""
        stream = self._stream()
        self.controller.eval()
        with torch.no_grad():
            cells = self.controller(samples, self.sampler)[2]
        best, acc = best_of(self.model, self.kind, [self.path(c)[self.kind] for c in cells], stream)
        return cells[best], acc

    def current_cell(self) -> tuple[int, ...]:
        """The latest selection, or the controller's greedy cell before the first."""
        return self.selected if self.selected is not None else self.controller.greedy()

    def genotype(self) -> Genotype:
        mask = torch.zeros(self.space.num_edges, self.space.num_ops)
        mask[torch.arange(self.space.num_edges), torch.tensor(self.current_cell())] = 1.0
        return self.space.genotype_from_masks({self.kind: mask})

    def arch_weights(self) -> dict[str, torch.Tensor]:
        """The controller's marginal probability of each op on each edge (the history's op weights)."""
        with torch.no_grad():
            probs = self.controller.log_probs(self.cells).double().exp()
        table = torch.stack([
            torch.bincount(self.cells[:, e], weights=probs, minlength=self.space.num_ops)
            for e in range(self.space.num_edges)
        ])
        return {self.kind: table}

    def end_epoch(self, epochs_done: int, iim_batches: Callable[[], Batches] | None) -> dict[str, Any]:
        """The controller's phase and the epoch's selection; their numbers for the history."""
        means = self.train_controller()
        last = epochs_done >= self.epochs
        self.selected, acc = self.select(self.final_samples if last else self.monitor_samples)
        return {
            "iim": None,
            "shrink_step": None,
            "pruned": self.space.record({self.kind: []}),
            "arch_loss": means.pop("controller_loss"),
            **means,
            "baseline": self.baseline,  # the next epoch's b_e
            "selected_valid_acc": acc,
        }

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "controller": self.controller.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "c_optimizer": self.c_optimizer.state_dict(),
            "sampler": self.sampler.get_state(),
            "baseline": self.baseline,
            "selected": None if self.selected is None else list(self.selected),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.controller.load_state_dict(state["controller"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.c_optimizer.load_state_dict(state["c_optimizer"])
        self.sampler.set_state(state["sampler"])
        self.baseline = state["baseline"]
        self.selected = None if state["selected"] is None else tuple(int(i) for i in state["selected"])
